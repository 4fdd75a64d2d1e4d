import assert from 'node:assert/strict';
import { readdir, readFile, rm } from 'node:fs/promises';
import { execa } from 'execa';
import { XMLValidator } from 'fast-xml-parser';
import { listLoopDevices } from '../../plugins/loop/index.js';
import { isAlive } from '../../src/util/process-alive.js';
import { until } from './helpers/watch.js';
import { builtCli } from './helpers/built-cli.js';

/** `tideline lab` as an admin runs it: the real command line, the real exit codes, nothing left behind. */
const CLI = [builtCli(), 'lab'];

async function tidelineLab(args: string[], timeoutMs: number) {
  const child = execa('node', [...CLI, ...args], { reject: false, timeout: timeoutMs });
  const pid = child.pid;
  return { ...(await child), pid };
}

async function leftoversOf(pid: number | undefined): Promise<{ dirs: string[]; loops: string[] }> {
  const prefix = `tideline-lab-${pid}-`;
  const dirs = (await readdir('/var/tmp')).filter((name) => name.startsWith(prefix));
  const loops = (await listLoopDevices()).filter((loop) => loop.backingFile.includes(prefix)).map((loop) => loop.device);
  return { dirs, loops };
}

describe('tideline lab (command line)', function () {
  this.timeout(4 * 60_000);

  it('passes: the volume grows under the guest and the data reads back intact', async () => {
    const result = await tidelineLab(['--write', '384M', '--chunk', '64M', '--free-target', '48M'], 180_000);
    assert.equal(result.exitCode, 0, `exit ${result.exitCode}\n${result.stdout}\n${result.stderr}`);
    assert.match(result.stdout, /PASSED: 384 MiB written and read back intact/);
    const extensions = Number(/in (\d+) extensions/.exec(result.stdout)?.[1]);
    assert.ok(extensions >= 4, `expected at least 4 extensions of 64 MiB, got ${extensions}\n${result.stdout}`);
    assert.match(result.stdout, /pauses: {2}0/);
    assert.deepEqual(await leftoversOf(result.pid), { dirs: [], loops: [] });
    // The summary ends with the chart of the run, which stays (it is the one thing the lab keeps).
    const chart = /^chart: {3}(\/var\/tmp\/tideline-lab-\S+\.svg) \(volume size and high-water over time\)$/m.exec(result.stdout)?.[1];
    assert.ok(chart, result.stdout);
    try {
      const svg = await readFile(chart, 'utf8');
      assert.equal(XMLValidator.validate(svg), true);
      assert.match(svg, /<title>volume size<\/title>/);
      assert.match(svg, /<title>high-water mark<\/title>/);
    } finally {
      await rm(chart, { force: true });
    }
  });

  it('--no-monitor shows the ENOSPC pause, fails with exit 3, and cleans up', async () => {
    const result = await tidelineLab(['--write', '256M', '--no-monitor', '--no-chart'], 120_000);
    assert.equal(result.exitCode, 3, `exit ${result.exitCode}\n${result.stdout}\n${result.stderr}`);
    assert.match(result.stdout, /FAILED \(stayed-paused\): the VM paused with ENOSPC on vda .* without the monitor nothing extends the volume/);
    assert.match(result.stdout, /volume: {2}128\.0 MiB -> 128\.0 MiB in 0 extensions/);
    assert.deepEqual(await leftoversOf(result.pid), { dirs: [], loops: [] });
  });

  it('on SIGINT stops the guest, exits 130 and removes everything it made', async () => {
    const child = execa('node', [...CLI, '--write', '1024M', '--extend-delay', '3000', '--no-chart'], { reject: false, timeout: 120_000 });
    let output = '';
    child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    await until(() => output.includes('extended vda'), 90_000, 'the first extension');
    const qemuPid = Number(/QEMU (\d+) started/.exec(output)?.[1]);
    child.kill('SIGINT');
    const result = await child;
    assert.equal(result.exitCode, 130, `exit ${result.exitCode}\n${output}\n${result.stderr}`);
    assert.match(output, /FAILED \(interrupted\)/);
    assert.ok(qemuPid > 0 && !isAlive(qemuPid), `QEMU ${qemuPid} still runs after the lab was interrupted`);
    assert.deepEqual(await leftoversOf(child.pid), { dirs: [], loops: [] });
  });

  it('rejects bad sizes before touching anything, naming the flag', async () => {
    const result = await tidelineLab(['--write', '100M', '--chunk', 'lots'], 30_000);
    assert.equal(result.exitCode, 2);
    assert.match(result.stderr, /--chunk: cannot read "lots" as a size/);
    assert.match(result.stderr, /\[invalid-config\]/);
    assert.deepEqual(await leftoversOf(result.pid), { dirs: [], loops: [] });
  });
});
