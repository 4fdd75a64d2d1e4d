import { DEFAULT_WAKE_POLL_MS, DOORBELL_WAKE_POLL_MS } from '../src/spm/spm-service.js';

/**
 * The mailbox timings of each compared policy, in one place.
 *
 * vdsm-4.5: oVirt VDSM 4.5 storage mailbox (vdsm/storage/mailbox.py and
 * config.py): the SPM checks the event block every 0.5 s and scans the whole
 * mailbox every 2 s; the host re-reads its replies every 0.5 s
 * (`mailbox_check_interval`... 0.5 s) and resends a request not served
 * within 2 s. The host writes the event block after each request, so the SPM
 * usually notices within 0.5 s: we model that as a 0.5 s SPM poll.
 *
 * seed-2011: the design in the seed — both sides check the mailbox every 2 s.
 */
export interface MailboxPolicy {
  name: string;
  /** How the host learns that a drive crossed its threshold: an event, or its own periodic poll. */
  detection: 'events' | 'poll';
  /** The host's drive poll (the only detection with 'poll'; a safety net with 'events'). */
  drivePollMs: number;
  spmPollFastMs: number;
  spmPollIdleMs: number;
  /** Where a long-idle SPM's polling backs off to (tideline); the idle interval where there is no back-off. */
  spmPollIdleMaxMs: number;
  hostPollMs: number;
  /** The host reads its reply slot every 2 ms for 50 ms after a request (tideline's MailboxExtender default), before falling back to hostPollMs. */
  hostEagerPoll: boolean;
  resendMs: number;
  /** A quiet SPM reads the wake-up block this often (tideline); 0: no wake-up block, every slot at the idle interval. */
  spmWakePollMs: number;
  /** Hosts ring the SPM's doorbell over UDP after each request (tideline with 'doorbell' and 'spm-doorbells' set). */
  doorbell: boolean;
}

export const TIDELINE: MailboxPolicy = { name: 'tideline', detection: 'events', drivePollMs: 2_000, spmPollFastMs: 5, spmPollIdleMs: 50, spmPollIdleMaxMs: 1_000, hostPollMs: 10, hostEagerPoll: true, resendMs: 3_000, spmWakePollMs: DEFAULT_WAKE_POLL_MS, doorbell: false };
/** tideline with the doorbell set up: the SPM looks at the wake-up block only as the net under a lost ring. */
export const TIDELINE_DOORBELL: MailboxPolicy = { ...TIDELINE, name: 'tideline with doorbell', spmWakePollMs: DOORBELL_WAKE_POLL_MS, doorbell: true };
export const VDSM_4_5: MailboxPolicy = { name: 'vdsm-4.5', detection: 'events', drivePollMs: 2_000, spmPollFastMs: 500, spmPollIdleMs: 500, spmPollIdleMaxMs: 500, hostPollMs: 500, hostEagerPoll: false, resendMs: 2_000, spmWakePollMs: 0, doorbell: false };
export const SEED_2011: MailboxPolicy = { name: 'seed-2011', detection: 'poll', drivePollMs: 2_000, spmPollFastMs: 2_000, spmPollIdleMs: 2_000, spmPollIdleMaxMs: 2_000, hostPollMs: 2_000, hostEagerPoll: false, resendMs: 2_000, spmWakePollMs: 0, doorbell: false };

export const POLICIES: readonly MailboxPolicy[] = [TIDELINE, TIDELINE_DOORBELL, VDSM_4_5, SEED_2011];
