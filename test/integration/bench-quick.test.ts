import assert from 'node:assert/strict';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { XMLValidator } from 'fast-xml-parser';

/** The benchmark's quick mode runs in the test suite so it cannot rot; speeds are not judged here. */
describe('npm run bench -- --quick', function () {
  this.timeout(720_000);

  it('measures every figure for tideline and its baselines and prints one table', async () => {
    const result = await execa('node', ['--import', 'tsx', 'bench/run.ts', '--quick'], { reject: false, timeout: 710_000 });
    assert.equal(result.exitCode, 0, result.stderr);
    const rows = result.stdout.split('\n').filter((line) => line.startsWith('│'));
    const row = (figure: string, subject: string) => rows.find((line) => line.includes(figure) && line.includes(`│ ${subject} `));
    for (const [figure, subjects] of [
      ['1. extension round trip', ['vdsm-4.5', 'seed-2011', 'tideline']],
      ['4. forced ENOSPC', ['vdsm-4.5', 'tideline']],
      ['mailbox round trip, 1 host', ['vdsm-4.5', 'tideline']],
      ['mailbox round trip, 50 hosts', ['vdsm-4.5', "tideline, 50 readers on the SPM's cores", 'tideline']],
      ['6. SPM poll', ['page cache (stale on shared storage)', 'tideline: direct I/O']],
      ['7. hook, event handed to the agent', ['bare node start', 'tideline hook (shell, spool)']],
      ['7. hook, prepare refreshing one volume', ['tideline hook, no agent (node does it)', 'agent, reached by node (control socket)', 'agent, reached by the shell (spool)']],
      ['7. command start-up', ['tideline --version', 'tideline policy show (libvirtd socket)', 'tideline policy show via virsh (test driver)', 'tideline status']],
      ['mailbox round trip, cold', ['vdsm-4.5', 'tideline']],
      ['8. extension on real LVM', ['vdsm-4.5', 'tideline']],
    ] as const) {
      for (const subject of subjects) {
        const line = row(figure, subject);
        assert.ok(line, `no row for ${subject} in "${figure}":\n${result.stdout}`);
        assert.match(line, /│ \d+ +│ [\d.]+ ms/, `row without figures: ${line}`);
      }
      assert.match(row(figure, subjects[subjects.length - 1]!)!, /x (faster|slower) than/);
    }
    assert.match(result.stdout, /5\. agent, 20 drives \(5 writing\) +│ safety poll every 5 s \(default\) +│ [\d.]+ % +│ [\d.]+ % +│ [\d.]+ % +│ \d+ MiB +│ [1-9]\d* /, 'the agent-scale row (first minute, steady, writing) is missing or saw no extensions');
    assert.match(result.stdout, /5\. agent under libvirt, 2 domains, [^│]+│ virsh for every question \(--no-libvirt-socket\) +│ [\d.]+ % +│ [\d.]+ % /, 'the libvirt agent row through virsh is missing');
    assert.match(result.stdout, /5\. agent under libvirt, 2 domains, [^│]+│ tideline: libvirtd socket \(default\) +│ [\d.]+ % +│ [\d.]+ % +│ >?[\d.]+x less agent CPU than virsh/, 'the libvirt agent row through the socket is missing');
    assert.match(result.stdout, /6\. SPM, 50 hosts x 2 requests +│ tideline +│ \d+ +│ [\d.]+ % +│ [\d.]+ % +│ \d+ KiB\/s +│ [\d.]+x the throughput of vdsm-4\.5/, 'the SPM-scale row is missing');
    assert.match(result.stdout, /3\. critical write rate, real guest, 32 MiB chunks +│ tideline +│ [>\d][^│]* +│ 16:\d+( full:\d+)? /, 'the real-guest critical-rate row is missing or did not run the throttled rung');
    assert.match(result.stdout, /3\. critical write rate, qemu-io in QEMU, 8 MiB chunks +│ tideline +│ [>\d][^│]* +│ 64:\d+ /, 'the qemu-io critical-rate row is missing');
    for (const subject of ['vdsm-4.5', 'tideline']) {
      assert.match(row('2. real guest at full speed, 256 MiB chunks', subject) ?? '', /│ \d+ +│ [\d.]+ s +│ \d+ MiB\/s +│ yes /, `no verified real-guest row for ${subject}:\n${result.stdout}`);
    }

    // The charts: figure 1's distributions and figure 3's pauses per rate, as SVG a browser opens.
    const charts = [...result.stderr.matchAll(/chart written to (\S+\.svg)/g)].map((match) => match[1]!);
    try {
      assert.deepEqual(charts.map((file) => path.basename(file)), ['figure-1-extension-latency.svg', 'figure-3-pauses-per-rate-real-guest.svg', 'figure-3-pauses-per-rate-qemu-io.svg']);
      for (const file of charts) {
        const svg = await readFile(file, 'utf8');
        assert.equal(XMLValidator.validate(svg), true, file);
        assert.match(svg, /<path d="M[\d.]+,[\d.]+/, `${file} draws no line`);
      }
      assert.match(await readFile(charts[0]!, 'utf8'), /<title>tideline<\/title>/);
    } finally {
      if (charts[0]) await rm(path.dirname(charts[0]), { recursive: true, force: true });
    }
  });
});
