export { LvmPlugin, encodeTag, decodeTags, type LvmPluginOptions } from './lvm-plugin.js';
