import type { Clock, TimerHandle } from '../../src/util/clock.js';

/** A clock that only moves when the test says so. */
export class FakeClock implements Clock {
  private current = 0;
  private timers: Array<{ at: number; callback: () => void; id: number }> = [];
  private nextId = 0;

  now(): number {
    return this.current;
  }

  setTimeout(callback: () => void, delayMs: number): TimerHandle {
    const timer = { at: this.current + delayMs, callback, id: this.nextId++ };
    this.timers.push(timer);
    return { cancel: () => (this.timers = this.timers.filter((candidate) => candidate !== timer)) };
  }

  /** Moves time forward, firing due timers in order and letting their promises settle. */
  async advance(ms: number): Promise<void> {
    const end = this.current + ms;
    for (;;) {
      await settle();
      const due = this.timers.filter((timer) => timer.at <= end).sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (!due) break;
      this.timers = this.timers.filter((timer) => timer !== due);
      this.current = due.at;
      due.callback();
    }
    this.current = end;
    await settle();
  }

  /**
   * Time passes while this process runs nothing (SIGSTOP, a frozen VM): no
   * timer fires during it; every one that fell due fires at once afterwards,
   * seeing the time after the stall.
   */
  async stall(ms: number): Promise<void> {
    this.current += ms;
    for (const timer of this.timers) timer.at = Math.max(timer.at, this.current);
    await this.advance(0);
  }

  get pendingTimers(): number {
    return this.timers.length;
  }
}

/** Lets queued promise callbacks run (several hops of async code). */
export async function settle(): Promise<void> {
  for (let index = 0; index < 20; index += 1) await new Promise((resolve) => setImmediate(resolve));
}
