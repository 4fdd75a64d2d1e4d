import assert from 'node:assert/strict';
import { assertOneServerAtATime, type LoggingCandidate } from '../integration/helpers/spm-timeline.js';

function candidate(events: Array<[number, 'acting as SPM' | 'request served']>): LoggingCandidate {
  return { logged: (message) => events.filter(([, msg]) => msg === message).map(([time, msg]) => ({ time, msg, volume: 'web-vda' })) };
}

describe('the one-SPM-at-a-time check of the cluster tests', () => {
  it('passes a takeover after a lapse, and a primary that took the lease back', () => {
    assertOneServerAtATime({
      primary: candidate([[100, 'acting as SPM'], [150, 'request served'], [900, 'acting as SPM'], [950, 'request served']]),
      standby: candidate([[400, 'acting as SPM'], [450, 'request served']]),
    });
  });

  it('fails a candidate serving after the other acquired, or before any acquisition', () => {
    assert.throws(
      () => assertOneServerAtATime({ primary: candidate([[100, 'acting as SPM'], [500, 'request served']]), standby: candidate([[400, 'acting as SPM'], [450, 'request served']]) }),
      /primary served web-vda at .* while standby held the lease/,
    );
    assert.throws(() => assertOneServerAtATime({ primary: candidate([[100, 'request served']]) }), /while nobody held the lease/);
  });
});
