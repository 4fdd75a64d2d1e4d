export { LvmPlugin, encodeTag, decodeTags, mergeSettings, renderSettings, DEFAULT_EXTENT_BYTES, type LvmPluginOptions, type LvmRole, type LvmSettings } from './lvm-plugin.js';
