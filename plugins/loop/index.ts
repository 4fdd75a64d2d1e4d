export { LoopPlugin, initLoopDomain, growLoopDomain, DEFAULT_LOOP_EXTENT_BYTES, type LoopDomainSettings } from './loop-plugin.js';
export { detachLoopsUnder, listLoopDevices } from './loop-devices.js';
