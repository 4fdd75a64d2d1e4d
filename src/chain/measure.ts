import { stat } from 'node:fs/promises';
import type { Runner } from '../util/runner.js';

/** qemu-img reads only the header and the tables: quick even for a large layer. */
const MEASURE_TIMEOUT_MS = 60_000;

/**
 * What one layer of a chain brings into a merge: the size of a qcow2 image
 * holding just the clusters this layer allocated (its own data, not its
 * backing chain's), as `qemu-img measure` reports it for the layer opened
 * with no backing file. A block commit writes at most that into its base,
 * whatever size the layer's volume has grown to (oVirt extends by the top's
 * allocation for the same reason, vdsm issue 134). `-U`: the running VM has
 * the layer open.
 */
export async function layerMergeBytes(run: Runner, devicePath: string): Promise<number> {
  const driver = (await stat(devicePath)).isBlockDevice() ? 'host_device' : 'file';
  const image = `json:${JSON.stringify({ driver: 'qcow2', backing: null, file: { driver, filename: devicePath } })}`;
  const { stdout } = await run('qemu-img', ['measure', '--output=json', '-O', 'qcow2', '-U', image], { timeoutMs: MEASURE_TIMEOUT_MS });
  const required = (JSON.parse(stdout) as { required?: unknown }).required;
  if (typeof required !== 'number' || !Number.isSafeInteger(required) || required < 0) throw new Error(`qemu-img measure of ${devicePath} reported no required size`);
  return required;
}
