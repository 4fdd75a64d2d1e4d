import assert from 'node:assert/strict';
import { spmPollInterval } from '../../src/spm/spm-service.js';

describe('SPM poll interval', () => {
  const timing = { pollFastMs: 5, pollIdleMs: 50, pollIdleMaxMs: 1_000, fastForMs: 2_000, backOffAfterQuietMs: 60_000 };

  /** The intervals a quiet SPM waits, poll after poll, starting `startQuietMs` after the last request. */
  function intervals(startQuietMs: number, polls: number): number[] {
    const seen: number[] = [];
    let quietMs = startQuietMs;
    let backedOffMs: number | undefined;
    for (let poll = 0; poll < polls; poll += 1) {
      const next = spmPollInterval(quietMs, backedOffMs, timing);
      seen.push(next.intervalMs);
      backedOffMs = next.backedOffMs;
      quietMs += next.intervalMs;
    }
    return seen;
  }

  it('polls fast while requests flow, then at the idle interval', () => {
    assert.deepEqual(intervals(0, 3), [5, 5, 5]);
    assert.deepEqual(intervals(1_996, 3), [5, 50, 50]);
  });

  it('backs off after a quiet minute, doubling up to the maximum and staying there', () => {
    assert.deepEqual(intervals(61_990, 8), [50, 100, 200, 400, 800, 1_000, 1_000, 1_000]);
  });

  it('is fast again as soon as a request was seen, and backs off from the idle interval next time', () => {
    const backedOff = spmPollInterval(120_000, 1_000, timing);
    assert.equal(backedOff.intervalMs, 1_000);
    assert.deepEqual(spmPollInterval(0, backedOff.backedOffMs, timing), { intervalMs: 5, backedOffMs: undefined });
    assert.deepEqual(intervals(62_001, 2), [100, 200]);
  });

  it('never backs off below the idle interval when the maximum is set lower', () => {
    assert.equal(spmPollInterval(120_000, undefined, { ...timing, pollIdleMaxMs: 20 }).intervalMs, 50);
    assert.equal(spmPollInterval(120_000, undefined, { pollIdleMs: 500 }).intervalMs, 1_000);
  });
});
