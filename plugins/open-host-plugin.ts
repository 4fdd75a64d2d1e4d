import type { HostConfig } from '../src/config/host-config.js';
import type { Runner } from '../src/util/runner.js';
import type { StoragePlugin } from './types.js';

/**
 * The storage domain /etc/tideline/tideline.conf names, as this host (not the
 * SPM) sees it: LVM read-only, or a loop domain through the host's own view.
 * The plugin modules load only once the file names one, so the hook and the
 * doctor start fast on hosts where tideline is not set up.
 */
export async function openHostPlugin(config: HostConfig, run: Runner): Promise<StoragePlugin> {
  if (config.vg) {
    const { LvmPlugin } = await import('./lvm/index.js');
    return LvmPlugin.open({ vg: config.vg, run, activation: true, role: 'host' });
  }
  const { LoopPlugin } = await import('./loop/index.js');
  return LoopPlugin.open(config['loop-domain']!, run, config['loop-view'] === undefined ? {} : { hostView: config['loop-view'] });
}
