import assert from 'node:assert/strict';
import type { LvmPlugin } from '../../plugins/lvm/index.js';
import { LvmWorld } from '../../src/lab/lvm-world.js';
import type { StorageHost } from '../../src/lab/storage-host.js';
import { silentLogger } from '../../src/log/logger.js';
import { createThinVolume, deleteThinVolume } from '../../src/spm/volume-lifecycle.js';
import { GiB, MiB } from '../../src/util/sizes.js';

/**
 * The long variant of test/integration/lvm-data-path.test.ts (`npm run soak:lvm`,
 * several minutes): a qcow2 image on a real LV is written 16 MiB at a time,
 * every round with its own pattern, by whichever host runs the "VM" now. A write
 * that meets the end of this host's device-mapper table fails with ENOSPC; the
 * SPM (host A) extends, the writing host refreshes, the write is retried. Every
 * few rounds the writer moves to the other host (deactivate, activate there),
 * as a VM moves. At the end every round's data is read back on both hosts.
 */
const VG = 'tideline_soak';
const VOLUME = 'soak-vda';
const ROUNDS = 40;
const UNIT_MIB = 16;
const CHUNK = 64 * MiB;
const MOVE_EVERY = 8;

describe('soak: real LVM data path, many extensions and moves between two hosts', function () {
  this.timeout(30 * 60_000);
  let world: LvmWorld;

  before(async () => {
    world = await LvmWorld.start({ prefix: 'tideline-lvm-soak-', hosts: ['a', 'b'], lunBytes: 4 * GiB, vg: VG, extentBytes: 4 * MiB, logger: silentLogger, timeoutMs: 40 * 60_000 });
    await world.createDomain('a');
  });
  after(async () => {
    await world?.dispose();
  });

  it(`writes ${ROUNDS} units through ENOSPC, extension and refresh, moving between hosts, and reads everything back`, async () => {
    const spm = await world.plugin('a', 'spm');
    const plugins: Record<string, LvmPlugin> = { a: await world.plugin('a', 'host'), b: await world.plugin('b', 'host') };
    await createThinVolume(spm, world.host('a').run, VOLUME, CHUNK, 2 * GiB);
    let writer = 'b';
    let device = await plugins[writer]!.activate(VOLUME);
    let enospc = 0;
    let extensions = 0;
    const refreshMs: number[] = [];
    const extendMs: number[] = [];
    for (let round = 0; round < ROUNDS; round += 1) {
      if (round > 0 && round % MOVE_EVERY === 0) {
        await plugins[writer]!.deactivate(VOLUME);
        writer = writer === 'a' ? 'b' : 'a';
        device = await plugins[writer]!.activate(VOLUME);
      }
      const command = `write -P ${pattern(round)} ${round * UNIT_MIB}M ${UNIT_MIB}M`;
      for (let attempt = 0; ; attempt += 1) {
        assert.ok(attempt < 3, `round ${round}: still no space after ${attempt} extensions`);
        const output = await qemuIo(world.host(writer), device, [command]);
        if (!/No space left on device/.test(output)) {
          assert.match(output, /wrote \d+\/\d+ bytes/, output);
          break;
        }
        enospc += 1;
        const size = (await spm.describe(VOLUME)).sizeBytes;
        let started = performance.now();
        await spm.extend(VOLUME, size + CHUNK);
        extendMs.push(performance.now() - started);
        extensions += 1;
        started = performance.now();
        assert.equal(await plugins[writer]!.refresh(VOLUME), size + CHUNK);
        refreshMs.push(performance.now() - started);
      }
    }
    for (const host of ['a', 'b']) {
      const other = await plugins[host]!.activate(VOLUME);
      for (let first = 0; first < ROUNDS; first += 10) {
        const reads = Array.from({ length: Math.min(10, ROUNDS - first) }, (_, index) => `read -P ${pattern(first + index)} ${(first + index) * UNIT_MIB}M ${UNIT_MIB}M`);
        const output = await qemuIo(world.host(host), other, reads, { readOnly: true });
        assert.doesNotMatch(output, /Pattern verification failed|failed/i, `${host}: ${output}`);
      }
      if (host !== writer) await plugins[host]!.deactivate(VOLUME);
    }
    await plugins[writer]!.deactivate(VOLUME);
    const check = await world.host('a').run('qemu-img', ['check', '-f', 'qcow2', await spm.activate(VOLUME)], { acceptExitCodes: [3] });
    assert.ok(check.exitCode === 0 || check.exitCode === 3, check.stdout);
    await spm.deactivate(VOLUME);
    await deleteThinVolume(spm, world.host('a').run, VOLUME, { logger: silentLogger });
    const median = (values: number[]) => [...values].sort((x, y) => x - y)[Math.floor(values.length / 2)] ?? 0;
    process.stdout.write(`      ${ROUNDS} units, ${enospc} ENOSPC, ${extensions} extensions, ${Math.floor((ROUNDS - 1) / MOVE_EVERY)} moves; median lvextend ${Math.round(median(extendMs))} ms, median refresh ${Math.round(median(refreshMs))} ms (TCG)\n`);
  });
});

function pattern(round: number): string {
  return `0x${(0x11 + ((round * 7) % 0xee)).toString(16)}`;
}

async function qemuIo(host: StorageHost, device: string, commands: string[], options: { readOnly?: boolean } = {}): Promise<string> {
  const args = ['-f', 'qcow2', '-t', 'none', ...(options.readOnly ? ['-r'] : []), ...commands.flatMap((command) => ['-c', command]), device];
  const result = await host.run('qemu-io', args, { acceptExitCodes: [1], timeoutMs: 300_000 });
  return `${result.stdout}\n${result.stderr}`;
}
