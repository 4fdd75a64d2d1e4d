export { LvmPlugin, encodeTag, decodeTags, mergeSettings, renderSettings, type LvmPluginOptions, type LvmRole, type LvmSettings } from './lvm-plugin.js';
