import assert from 'node:assert/strict';

/** What the check reads of an SPM candidate: its log lines with a given message (TidelineProcess.logged). */
export interface LoggingCandidate {
  logged(message: string): Array<Record<string, unknown>>;
}

/**
 * On the merged timeline of SPM candidates' logs, every request is served by
 * the one that acquired the lease last: a candidate serves only between its
 * own "acting as SPM" and another's next one. A lease that lapsed on a loaded
 * machine and was taken over passes; two serving at once does not.
 */
export function assertOneServerAtATime(candidates: Record<string, LoggingCandidate>): void {
  const timeline = Object.entries(candidates)
    .flatMap(([name, candidate]) => [
      ...candidate.logged('acting as SPM').map((event) => ({ name, kind: 'acquired', time: Number(event.time), volume: undefined as unknown })),
      ...candidate.logged('request served').map((event) => ({ name, kind: 'served', time: Number(event.time), volume: event.volume })),
    ])
    .sort((left, right) => left.time - right.time || (left.kind === 'acquired' ? -1 : 1));
  let holder: string | undefined;
  for (const event of timeline) {
    if (event.kind === 'acquired') holder = event.name;
    else assert.equal(event.name, holder, `${event.name} served ${String(event.volume)} at ${new Date(event.time).toISOString()} while ${holder ?? 'nobody'} held the lease`);
  }
}
