/** What the SPM needs from a lease backend (built-in storage lease, sanlock). */
export interface LeaseEvents {
  acquired: [];
  /** The lease can no longer be trusted: stop acting at once. */
  lost: [];
}

export interface Lease {
  /** True only while acting as the lease holder is safe; check before every action. */
  readonly held: boolean;
  acquire(signal?: AbortSignal): Promise<void>;
  release(): Promise<void>;
  /** Releases and lets go of the lease volume. */
  close(): Promise<void>;
  on<K extends keyof LeaseEvents>(event: K, listener: (...args: LeaseEvents[K]) => void): this;
}
