import { mkdtemp, open, rm } from 'node:fs/promises';
import path from 'node:path';
import { BLOCK_BYTES } from '../src/mailbox/format.js';
import { Mailbox } from '../src/mailbox/mailbox.js';
import { summarize, type Summary } from './stats.js';

/**
 * What one SPM poll of the whole mailbox costs: reading every host's request
 * slot with direct I/O (as the SPM does, so other hosts' writes are seen) and,
 * as the baseline, the same bytes through the page cache (what a naive reader
 * would do, and would read stale data with on shared storage).
 */
export async function mailboxPollCost(hosts: number, polls: number): Promise<{ direct: Summary; cached: Summary; bytes: number }> {
  const dir = await mkdtemp('/var/tmp/tideline-bench-poll-');
  try {
    const file = path.join(dir, 'mailbox');
    await Mailbox.init(file, { maxHosts: hosts });
    const mailbox = await Mailbox.open(file);
    const direct: number[] = [];
    for (let poll = 0; poll < polls; poll += 1) {
      const started = performance.now();
      await mailbox.readAllRequests();
      direct.push(performance.now() - started);
    }
    await mailbox.close();
    const handle = await open(file, 'r');
    const buffer = Buffer.alloc(hosts * BLOCK_BYTES);
    const cached: number[] = [];
    for (let poll = 0; poll < polls; poll += 1) {
      const started = performance.now();
      await handle.read(buffer, 0, buffer.length, BLOCK_BYTES);
      cached.push(performance.now() - started);
    }
    await handle.close();
    return { direct: summarize(direct), cached: summarize(cached), bytes: hosts * BLOCK_BYTES };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
