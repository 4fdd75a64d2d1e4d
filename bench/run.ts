import { cpus, release, totalmem } from 'node:os';
import { mkdir, writeFile } from 'node:fs/promises';
import Table from 'cli-table3';
import { mailboxPollCost } from './mailbox-poll.js';
import { mailboxRoundTrip } from './mailbox-roundtrip.js';
import { TIDELINE, VDSM_4_5, type MailboxPolicy } from './policies.js';
import { formatMs, type Summary } from './stats.js';

/**
 * `npm run bench`: every figure for tideline and for the baseline in the same
 * run, on the same storage; the table shows their ratio. `--quick` runs a
 * reduced version (the tests run it so it cannot rot).
 */
const quick = process.argv.includes('--quick');

interface Row {
  figure: string;
  policy: string;
  summary: Summary;
  target?: string;
  baseline?: Summary;
  baselineName?: string;
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  const scenarios = quick
    ? [{ hosts: 1, tideline: 20, baseline: 3 }, { hosts: 50, tideline: 2, baseline: 1 }]
    : [{ hosts: 1, tideline: 200, baseline: 30 }, { hosts: 50, tideline: 8, baseline: 4 }];
  for (const scenario of scenarios) {
    const figure = `mailbox round trip, ${scenario.hosts} host${scenario.hosts > 1 ? 's' : ''}`;
    const runs: Array<[MailboxPolicy, number]> = [[VDSM_4_5, scenario.baseline], [TIDELINE, scenario.tideline]];
    const results = new Map<string, Summary>();
    for (const [policy, requests] of runs) {
      process.stderr.write(`bench: ${figure}, ${policy.name}, ${requests} requests per host\n`);
      results.set(policy.name, await mailboxRoundTrip(policy, scenario.hosts, requests));
    }
    rows.push({ figure, policy: VDSM_4_5.name, summary: results.get(VDSM_4_5.name)! });
    rows.push({ figure, policy: TIDELINE.name, summary: results.get(TIDELINE.name)!, target: 'p50 < 50 ms, p99 < 200 ms', baseline: results.get(VDSM_4_5.name)! });
  }

  const polls = quick ? 50 : 500;
  process.stderr.write(`bench: mailbox poll cost, 250 hosts, ${polls} polls\n`);
  const poll = await mailboxPollCost(250, polls);
  const pollFigure = `SPM poll of the whole mailbox (250 hosts, ${poll.bytes / 1024} KiB)`;
  rows.push({ figure: pollFigure, policy: 'page cache (stale on shared storage)', summary: poll.cached });
  rows.push({ figure: pollFigure, policy: 'tideline: direct I/O', summary: poll.direct, baseline: poll.cached, baselineName: 'page cache' });

  const table = new Table({ head: ['figure', 'policy', 'samples', 'p50', 'p99', 'max', 'p50 vs baseline', 'target', 'met'], style: { head: [], border: [] } });
  for (const row of rows) {
    const ratio = row.baseline ? `${describeRatio(row.baseline.p50 / row.summary.p50)} than ${row.baselineName ?? 'vdsm-4.5'}` : '';
    const met = row.target ? (row.summary.p50 < 50 && row.summary.p99 < 200 ? 'yes' : 'NO') : '';
    table.push([row.figure, row.policy, String(row.summary.count), formatMs(row.summary.p50), formatMs(row.summary.p99), formatMs(row.summary.max), ratio, row.target ?? '', met]);
  }
  const text = table.toString();
  process.stdout.write(`${text}\n`);

  const machine = `${cpus().length} x ${cpus()[0]?.model ?? 'unknown CPU'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Linux ${release()}, Node ${process.version}`;
  const markdown = [
    `# Benchmark results${quick ? ' (quick mode)' : ''}`,
    '',
    `Date: ${new Date().toISOString()}`,
    `Machine: ${machine}`,
    '',
    'Baselines are tideline components run with the timings of the named design (bench/policies.ts).',
    '',
    '```',
    text.replace(/\u001b\[[0-9;]*m/g, ''),
    '```',
    '',
  ].join('\n');
  if (!quick) {
    await mkdir('bench', { recursive: true });
    await writeFile('bench/results.md', markdown);
    process.stderr.write('bench: table written to bench/results.md\n');
  }
}

await main();

function describeRatio(speedup: number): string {
  return speedup >= 1 ? `${speedup.toFixed(1)}x faster` : `${(1 / speedup).toFixed(1)}x slower`;
}
