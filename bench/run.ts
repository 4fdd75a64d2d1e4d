import { cpus, release, totalmem } from 'node:os';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { latencyChart, pausesChart } from './charts.js';
import Table from 'cli-table3';
import { extensionRoundTrips } from './extension-roundtrip.js';
import { hookLatency } from './hook-latency.js';
import { lvmExtensionRoundTrips } from './lvm-extension.js';
import { mailboxPollCost } from './mailbox-poll.js';
import { coldRequestRoundTrip, mailboxRoundTrip } from './mailbox-roundtrip.js';
import { SEED_2011, TIDELINE, TIDELINE_DOORBELL, VDSM_4_5, type MailboxPolicy } from './policies.js';
import { realGuestRun } from './real-guest.js';
import { criticalWriteRate, type CriticalRate } from './critical-rate.js';
import { blockLayerCriticalRate } from './block-layer-rate.js';
import { agentScale } from './agent-scale.js';
import { libvirtAgentIdle } from './libvirt-agent-idle.js';
import { wakeCostCpuPercent, type WakeCostMode } from './wake-cost.js';
import { spmScale, type SpmScaleOutcome } from './spm-scale.js';
import { MiB } from '../src/util/sizes.js';
import { formatMs, type Summary } from './stats.js';

/**
 * `npm run bench`: every figure for tideline and for its baselines in the same
 * run, on the same storage; the table shows the ratio to the first baseline of
 * each figure. `--quick` runs a reduced version (the tests run it so it cannot
 * rot; its numbers are not judged).
 */
const quick = process.argv.includes('--quick');

interface Row {
  figure: string;
  subject: string;
  summary: Summary;
  baseline?: { name: string; summary: Summary };
  target?: { text: string; met: (summary: Summary) => boolean };
}

const rows: Row[] = [];
const note = (text: string) => process.stderr.write(`bench: ${text}\n`);

async function figure(name: string, baselines: Array<[string, () => Promise<Summary>]>, tideline: () => Promise<Summary>, target?: Row['target']): Promise<void> {
  const measured: Array<[string, Summary]> = [];
  for (const [subject, measure] of baselines) {
    note(`${name}: ${subject}`);
    measured.push([subject, await measure()]);
  }
  note(`${name}: tideline`);
  const summary = await tideline();
  for (const [subject, baseline] of measured) rows.push({ figure: name, subject, summary: baseline });
  rows.push({ figure: name, subject: 'tideline', summary, ...(measured[0] ? { baseline: { name: measured[0][0], summary: measured[0][1] } } : {}), ...(target ? { target } : {}) });
}

const n = (full: number, reduced: number) => (quick ? reduced : full);
const under = (p50: number, p99: number) => ({ text: `p50 < ${p50} ms, p99 < ${p99} ms`, met: (summary: Summary) => summary.p50 < p50 && summary.p99 < p99 });

await figure(
  '1. extension round trip (threshold -> new size visible)',
  [
    [VDSM_4_5.name, () => extensionRoundTrips(VDSM_4_5, n(30, 3), 'threshold')],
    [SEED_2011.name, () => extensionRoundTrips(SEED_2011, n(10, 2), 'threshold')],
  ],
  () => extensionRoundTrips(TIDELINE, n(200, 20), 'threshold'),
  under(50, 200),
);
await figure('4. forced ENOSPC: pause -> resume', [[VDSM_4_5.name, () => extensionRoundTrips(VDSM_4_5, n(20, 3), 'enospc')]], () => extensionRoundTrips(TIDELINE, n(100, 10), 'enospc'), {
  text: 'p50, p99 < 300 ms',
  met: (summary) => summary.p99 < 300,
});
await figure('mailbox round trip, 1 host', [[VDSM_4_5.name, () => mailboxRoundTrip(VDSM_4_5, 1, n(30, 3))]], () => mailboxRoundTrip(TIDELINE, 1, n(200, 20)), under(50, 200));
const coldFigure = 'mailbox round trip, cold: the SPM quiet past its back-off';
await figure(coldFigure, [[VDSM_4_5.name, () => coldRequestRoundTrip(VDSM_4_5, n(10, 2))]], () => coldRequestRoundTrip(TIDELINE, n(20, 3)), under(30, 60));
note(`${coldFigure}: ${TIDELINE_DOORBELL.name}`);
const coldBaseline = rows.find((row) => row.figure === coldFigure && row.subject === VDSM_4_5.name)!.summary;
rows.push({ figure: coldFigure, subject: TIDELINE_DOORBELL.name, summary: await coldRequestRoundTrip(TIDELINE_DOORBELL, n(20, 3)), baseline: { name: VDSM_4_5.name, summary: coldBaseline }, target: under(30, 60) });
// The simulated hosts read their replies through one reader, as hosts on machines of their own would cost the SPM
// nothing; the last row has each of them reading on the bench's 2 cores beside the SPM (bench/cluster.ts).
const fiftyHosts = 'mailbox round trip, 50 hosts';
await figure(fiftyHosts, [[VDSM_4_5.name, () => mailboxRoundTrip(VDSM_4_5, 50, n(4, 1), { sharedReplyReads: true })]], () => mailboxRoundTrip(TIDELINE, 50, n(8, 2), { sharedReplyReads: true }), under(50, 200));
note(`${fiftyHosts}: tideline, every host reading on the bench's cores`);
rows.push({ figure: fiftyHosts, subject: "tideline, 50 readers on the SPM's cores", summary: await mailboxRoundTrip(TIDELINE, 50, n(8, 2)) });

const guestRows: string[][] = [];
for (const chunkMib of quick ? [256] : [128, 256]) {
  for (const policy of quick ? [VDSM_4_5, TIDELINE] : [VDSM_4_5, SEED_2011, TIDELINE]) {
    note(`2. real guest, ${chunkMib} MiB chunks: ${policy.name}`);
    const outcome = await realGuestRun(policy, chunkMib * MiB, n(1024, 256));
    guestRows.push([`2. real guest at full speed, ${chunkMib} MiB chunks`, policy.name, String(outcome.pauses), `${(outcome.pausedMs / 1000).toFixed(1)} s`, `${Math.round(outcome.writeMibPerSecond)} MiB/s`, outcome.verified ? 'yes' : 'NO', policy === TIDELINE ? (outcome.pauses === 0 ? 'yes' : 'NO') : '']);
  }
}

const criticalRows: string[][] = [];
/** Figure 3's ladders, for its chart: pauses at each write rate, per policy. */
const criticalLadders: Array<{ figure: string; subject: string; rungs: CriticalRate['rungs'] }> = [];
const criticalRuns: Array<[string, MailboxPolicy, boolean]> = [[VDSM_4_5.name, VDSM_4_5, false], [SEED_2011.name, SEED_2011, false], [TIDELINE.name, TIDELINE, false], [`${TIDELINE.name} adaptive`, TIDELINE, true]];
function criticalRow(figureName: string, subject: string, outcome: CriticalRate, baseline: number | undefined, writer: string): string[] {
  const ladder = outcome.rungs.map((rung) => `${rung.throttleMibPerSecond ?? 'full'}:${rung.outcome.pauses}`).join(' ');
  const critical = outcome.criticalMibPerSecond === undefined ? `> ${Math.round(outcome.fastestMibPerSecond)} (no pause up to the ${writer}'s full speed)` : `${Math.round(outcome.criticalMibPerSecond)}`;
  const ratio = subject.startsWith(TIDELINE.name) && baseline !== undefined ? `${outcome.criticalMibPerSecond === undefined ? 'more than ' : ''}${((outcome.criticalMibPerSecond ?? outcome.fastestMibPerSecond) / baseline).toFixed(1)}x vdsm-4.5` : '';
  return [figureName, subject, critical, ladder, ratio];
}

const criticalRunsHere = quick ? criticalRuns.filter(([subject]) => subject === TIDELINE.name) : criticalRuns;
const GUEST_CRITICAL_CHUNK_MIB = 32;
let baselineRate: number | undefined;
for (const [subject, policy, adaptive] of criticalRunsHere) {
  note(`3. critical write rate, real guest, ${GUEST_CRITICAL_CHUNK_MIB} MiB chunks: ${subject}`);
  const outcome = await criticalWriteRate(policy, GUEST_CRITICAL_CHUNK_MIB * MiB, quick ? [16] : [4, 8, 16, 32, 64], quick ? 48 : 96, { adaptive });
  if (policy === VDSM_4_5) baselineRate = outcome.criticalMibPerSecond;
  criticalRows.push(criticalRow(`3. critical write rate, real guest, ${GUEST_CRITICAL_CHUNK_MIB} MiB chunks`, subject, outcome, baselineRate, 'guest'));
  criticalLadders.push({ figure: 'real guest', subject, rungs: outcome.rungs });
}

// Past what a TCG guest can write: QEMU's block layer driven by qemu-io, smaller chunks so that tideline's limit is within reach.
const BLOCK_CRITICAL_CHUNK_MIB = 8;
baselineRate = undefined;
for (const [subject, policy, adaptive] of criticalRunsHere) {
  note(`3. critical write rate, qemu-io, ${BLOCK_CRITICAL_CHUNK_MIB} MiB chunks: ${subject}`);
  const outcome = await blockLayerCriticalRate(policy, BLOCK_CRITICAL_CHUNK_MIB * MiB, quick ? [64] : [8, 16, 32, 64, 128, 256, 512, 1024], quick ? 1 : 3, { adaptive, throughAllRates: adaptive });
  if (policy === VDSM_4_5) baselineRate = outcome.criticalMibPerSecond;
  criticalRows.push(criticalRow(`3. critical write rate, qemu-io in QEMU, ${BLOCK_CRITICAL_CHUNK_MIB} MiB chunks`, subject, outcome, baselineRate, 'writer'));
  criticalLadders.push({ figure: 'qemu-io', subject, rungs: outcome.rungs });
}

const scaleRows: string[][] = [];
for (const pollSeconds of [5, 2]) {
  note(`5. agent scale, ${pollSeconds} s safety poll`);
  const scale = await agentScale(n(200, 20), n(50, 5), n(30, 3), pollSeconds, n(60, 2));
  const met = scale.idleCpuPercent < 1 && scale.rssMib < 100;
  scaleRows.push([`5. agent, ${n(200, 20)} drives (${n(50, 5)} writing)`, `safety poll every ${pollSeconds} s${pollSeconds === 5 ? ' (default)' : ", VDSM's interval"}`, `${scale.firstMinuteCpuPercent.toFixed(2)} %`, `${scale.idleCpuPercent.toFixed(2)} %`, `${scale.writingCpuPercent.toFixed(2)} %`, `${Math.round(scale.rssMib)} MiB`, String(scale.extensions), met ? 'yes' : 'NO']);
}

// Figure 5 under libvirt: the same agent at its defaults, asking libvirtd about each domain at every poll.
const libvirtRows: string[][] = [];
const libvirtDomains = n(10, 2);
const libvirtFigure = `5. agent under libvirt, ${libvirtDomains} domains, nothing written, 5 s poll (default)`;
note(libvirtFigure);
const libvirtSampleSeconds = n(30, 4);
const throughVirsh = await libvirtAgentIdle({ domains: libvirtDomains, settleSeconds: n(20, 2), sampleSeconds: libvirtSampleSeconds, socket: false });
const throughSocket = await libvirtAgentIdle({ domains: libvirtDomains, settleSeconds: n(20, 2), sampleSeconds: libvirtSampleSeconds, socket: true });
const percent = (value: number) => `${value.toFixed(2)} %`;
libvirtRows.push([libvirtFigure, 'virsh for every question (--no-libvirt-socket)', percent(throughVirsh.agentPercent), percent(throughVirsh.libvirtdPercent), '', '', '']);
libvirtRows.push([libvirtFigure, 'tideline: libvirtd socket (default)', percent(throughSocket.agentPercent), percent(throughSocket.libvirtdPercent), lessCpuThan(throughVirsh.agentPercent, throughSocket.agentPercent, libvirtSampleSeconds), 'agent < 1 % (as figure 5)', throughSocket.agentPercent < 1 ? 'yes' : 'NO']);

const spmRows: string[][] = [];
const spmOutcomes = new Map<string, SpmScaleOutcome>();
for (const policy of [VDSM_4_5, TIDELINE, TIDELINE_DOORBELL]) {
  note(`6. SPM scale: ${policy.name}`);
  spmOutcomes.set(policy.name, await spmScale(policy, n(250, 50), n(4, 2), n(20, 2), quick));
}
for (const [name, outcome] of spmOutcomes) {
  const baseline = spmOutcomes.get(VDSM_4_5.name)!;
  const isTideline = name !== VDSM_4_5.name;
  spmRows.push([
    `6. SPM, ${n(250, 50)} hosts x ${n(4, 2)} requests`,
    name,
    `${Math.round(outcome.requestsPerSecond)}`,
    `${outcome.idleCpuPercent.toFixed(2)} %`,
    `${outcome.backedOffCpuPercent.toFixed(2)} %`,
    `${Math.round(outcome.backedOffReadKibPerSecond)} KiB/s`,
    isTideline ? `${(outcome.requestsPerSecond / baseline.requestsPerSecond).toFixed(1)}x the throughput of vdsm-4.5` : '',
    isTideline ? (outcome.requestsPerSecond >= 1000 && outcome.idleCpuPercent < baseline.idleCpuPercent && outcome.backedOffCpuPercent < baseline.backedOffCpuPercent && outcome.backedOffReadKibPerSecond <= 500 ? 'yes' : 'NO') : '',
  ]);
}

// What the quiet SPM's way of noticing requests costs by itself, each in a process of its own: can a look fast enough
// for the cold-request target cost less than the model's scans here at all?
note('6. SPM looks alone');
const lookHosts = n(250, 50);
const looksAlone: Array<[string, WakeCostMode, number]> = [
  [`vdsm-4.5 model's reads alone: every slot every 0.5 s`, 'model-scans', 0],
  [`tideline's looks alone: the wake-up block every ${TIDELINE.spmWakePollMs} ms`, 'tideline-looks', TIDELINE.spmWakePollMs],
  [`tideline's looks with a doorbell: the wake-up block every ${TIDELINE_DOORBELL.spmWakePollMs} ms on the event loop, the socket idle`, 'doorbell-looks', TIDELINE_DOORBELL.spmWakePollMs],
  [`a thread waking every ${TIDELINE.spmWakePollMs} ms, reading nothing (the floor of any look that often)`, 'wake-only', TIDELINE.spmWakePollMs],
];
for (const [subject, mode, intervalMs] of looksAlone) {
  const cpuPercent = await wakeCostCpuPercent(mode, intervalMs, lookHosts, n(10, 2), quick);
  spmRows.push([`6. SPM, ${lookHosts} hosts: the looks alone (a process each)`, subject, '', `${cpuPercent.toFixed(2)} %`, '(one measurement)', '', '', '']);
}

note('6. SPM poll of the whole mailbox');
const poll = await mailboxPollCost(250, n(500, 50));
const pollFigure = `6. SPM poll of the whole mailbox (250 hosts, ${poll.bytes / 1024} KiB)`;
rows.push({ figure: pollFigure, subject: 'page cache (stale on shared storage)', summary: poll.cached });
rows.push({ figure: pollFigure, subject: 'tideline: direct I/O', summary: poll.direct, baseline: { name: 'page cache', summary: poll.cached } });

note('7. hook latency');
const hook = await hookLatency(n(100, 5));
rows.push({ figure: '7. hook, event handed to the agent', subject: 'bare node start', summary: hook.node });
rows.push({ figure: '7. hook, event handed to the agent', subject: 'tideline hook (shell, spool)', summary: hook.event, baseline: { name: 'bare node start', summary: hook.node }, target: { text: 'p99 < 50 ms', met: (summary) => summary.p99 < 50 } });
rows.push({ figure: '7. hook, prepare, no thin disk', subject: 'tideline hook (shell decides)', summary: hook.prepareNothing, baseline: { name: 'bare node start', summary: hook.node }, target: { text: 'p99 below a bare node start (p50): node not started', met: (summary) => summary.p99 < hook.node.p50 } });
rows.push({ figure: '7. hook, prepare refreshing one volume', subject: 'tideline hook, no agent (node does it)', summary: hook.prepareRefresh, baseline: { name: 'bare node start', summary: hook.node } });
rows.push({ figure: '7. hook, prepare refreshing one volume', subject: 'agent, reached by node (control socket)', summary: hook.prepareViaAgent, baseline: { name: 'bare node start', summary: hook.node } });
rows.push({ figure: '7. hook, prepare refreshing one volume', subject: 'agent, reached by the shell (spool)', summary: hook.prepareViaSpool, baseline: { name: 'bare node start', summary: hook.node }, target: { text: 'p99 < 80 ms', met: (summary) => summary.p99 < 80 } });
const withinTwiceNode = { text: 'p50 within 2x a bare node start', met: (summary: Summary) => summary.p50 < 2 * hook.node.p50 };
rows.push({ figure: '7. command start-up', subject: 'tideline --version', summary: hook.cliVersion, baseline: { name: 'bare node start', summary: hook.node }, target: withinTwiceNode });
rows.push({ figure: '7. command start-up', subject: 'tideline status', summary: hook.cliStatus, baseline: { name: 'bare node start', summary: hook.node }, target: withinTwiceNode });
rows.push({ figure: '7. command start-up', subject: 'tideline policy show (libvirtd socket)', summary: hook.cliPolicyShow, baseline: { name: 'bare node start', summary: hook.node }, target: withinTwiceNode });
rows.push({ figure: '7. command start-up', subject: 'tideline policy show via virsh (test driver)', summary: hook.cliPolicyShowViaVirsh, baseline: { name: 'bare node start', summary: hook.node } });
rows.push({ figure: '7. command start-up', subject: 'node running virsh metadata, nothing else (floor of the virsh way)', summary: hook.nodeRunningVirsh, baseline: { name: 'bare node start', summary: hook.node } });

const lvmFigure = '8. extension on real LVM: lvextend on host A, refresh on host B (TCG guests)';
note(lvmFigure);
const lvm = await lvmExtensionRoundTrips([
  { policy: VDSM_4_5, count: n(15, 1) },
  { policy: TIDELINE, count: n(40, 2) },
]);
rows.push({ figure: lvmFigure, subject: VDSM_4_5.name, summary: lvm.get(VDSM_4_5.name)! });
rows.push({ figure: lvmFigure, subject: 'tideline', summary: lvm.get(TIDELINE.name)!, baseline: { name: VDSM_4_5.name, summary: lvm.get(VDSM_4_5.name)! } });

const table = new Table({ head: ['figure', 'subject', 'samples', 'p50', 'p99', 'max', 'p50 vs baseline', 'target', 'met'], style: { head: [], border: [] } });
for (const row of rows) {
  const ratio = row.baseline ? `${describeRatio(row.baseline.summary.p50 / row.summary.p50)} than ${row.baseline.name}` : '';
  table.push([row.figure, row.subject, String(row.summary.count), formatMs(row.summary.p50), formatMs(row.summary.p99), formatMs(row.summary.max), ratio, row.target?.text ?? '', row.target ? (row.target.met(row.summary) ? 'yes' : 'NO') : '']);
}
const guestTable = new Table({ head: ['figure', 'subject', 'pauses', 'paused', 'guest write rate', 'data verified', 'target (0 pauses) met'], style: { head: [], border: [] } });
for (const row of guestRows) guestTable.push(row);
const criticalTable = new Table({ head: ['figure', 'subject', 'first pause at (MiB/s)', 'rate MiB/s : pauses', 'vs baseline'], style: { head: [], border: [] } });
for (const row of criticalRows) criticalTable.push(row);
const scaleTable = new Table({ head: ['figure', 'subject', 'idle CPU, first minute after attaching (one core)', 'idle CPU, steady (the 30 s after)', 'CPU while writing', 'RSS', 'extensions', 'target (steady idle < 1 %, RSS < 100 MiB) met'], style: { head: [], border: [] } });
for (const row of scaleRows) scaleTable.push(row);
const libvirtTable = new Table({ head: ['figure', 'subject', 'agent CPU, idle (one core; with the virsh it runs)', 'libvirtd CPU', 'vs baseline', 'target', 'met'], style: { head: [], border: [] } });
for (const row of libvirtRows) libvirtTable.push(row);
const spmTable = new Table({ head: ['figure', 'subject', 'requests/s', 'idle CPU before backing off, from 8.5 s after the traffic (one core; median of ten 2 s windows)', 'idle CPU, backed off (the same)', 'idle SAN reads, backed off', 'vs baseline', "target (>= 1000/s; idle CPU below vdsm-4.5's in both phases; idle reads <= 500 KiB/s) met"], style: { head: [], border: [] } });
for (const row of spmRows) spmTable.push(row);
const text = `${table.toString()}\n${guestTable.toString()}\n${criticalTable.toString()}\n${scaleTable.toString()}\n${libvirtTable.toString()}\n${spmTable.toString()}`;
process.stdout.write(`${text}\n`);

// The pictures: beside results.md in a full run; in a quick run into a temporary directory, so that drawing them cannot rot either.
const chartDir = quick ? await mkdtemp(path.join(tmpdir(), 'tideline-bench-charts-')) : 'bench';
const charts: Array<[string, string]> = [
  ['figure-1-extension-latency.svg', latencyChart('Figure 1: extension round trip, threshold to new size visible', rows.filter((row) => row.figure.startsWith('1.')))],
];
for (const writer of ['real guest', 'qemu-io']) {
  const ladders = criticalLadders.filter((ladder) => ladder.figure === writer);
  if (ladders.length) charts.push([`figure-3-pauses-per-rate-${writer.replace(' ', '-')}.svg`, pausesChart(`Figure 3: pauses per write rate (${writer})`, ladders)]);
}
for (const [name, svg] of charts) {
  await writeFile(path.join(chartDir, name), svg);
  note(`chart written to ${path.join(chartDir, name)}`);
}

if (!quick) {
  const machine = `${cpus().length} x ${cpus()[0]?.model ?? 'unknown CPU'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Linux ${release()}, Node ${process.version}`;
  const markdown = [
    '# Benchmark results',
    '',
    `Date: ${new Date().toISOString()}`,
    `Machine: ${machine}`,
    '',
    'Baselines are tideline components run with the timings of the named design (bench/policies.ts); the VM in figures 1 and 4 is simulated (bench/extension-roundtrip.ts).',
    '',
    '```',
    text.replace(/\u001b\[[0-9;]*m/g, ''),
    '```',
    '',
    ...charts.flatMap(([name]) => [`![${name.replace(/\.svg$/, '').replaceAll('-', ' ')}](${name})`, '']),
  ].join('\n');
  await writeFile('bench/results.md', markdown);
  note('table written to bench/results.md');
}

/** "12.3x less agent CPU than virsh"; below one clock tick over the sample the ratio is a lower bound (">"). */
function lessCpuThan(baselinePercent: number, percent: number, sampleSeconds: number): string {
  const tickPercent = 100 / 100 / sampleSeconds;
  const ratio = baselinePercent / Math.max(percent, tickPercent);
  return `${percent < tickPercent ? '>' : ''}${ratio.toFixed(1)}x less agent CPU than virsh`;
}

function describeRatio(speedup: number): string {
  return speedup >= 1 ? `${speedup.toFixed(1)}x faster` : `${(1 / speedup).toFixed(1)}x slower`;
}
