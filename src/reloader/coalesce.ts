import { backoffDelay, DEFAULT_BACKOFF, sleep, type BackoffPolicy } from './backoff.ts';

/** What one attempt came to: done (success, or an answer that waits for the next request), or failed (retry). */
export type AttemptOutcome = 'done' | 'failed';

/**
 * The discipline of everything that tells an app something (a reload, a restart): at most one attempt runs; any
 * number of requests during it cause exactly one more attempt after it; a failed attempt is retried with
 * jittered backoff until one is done, and a newer request cuts the wait short; `close()` ends everything at once
 * (the wait, and through `signal`, the attempt in flight).
 */
export class CoalescingLoop {
  private readonly run: (failures: number) => Promise<AttemptOutcome>;
  private readonly backoff: BackoffPolicy;
  private dirty = false;
  private active = false;
  private done: Promise<void> = Promise.resolve();
  private wake: (() => void) | undefined;
  private readonly closing = new AbortController();

  /** `run(failures)`: one attempt; `failures` is how many attempts in a row failed before it. */
  constructor(run: (failures: number) => Promise<AttemptOutcome>, backoff: BackoffPolicy = DEFAULT_BACKOFF) {
    this.run = run;
    this.backoff = backoff;
  }

  /** Aborts when `close()` is called: attempts pass it on to what they wait for. */
  get signal(): AbortSignal {
    return this.closing.signal;
  }

  get closed(): boolean {
    return this.closing.signal.aborted;
  }

  /** A request came since the current attempt began (or absorbed them): another attempt follows this one. */
  get pending(): boolean {
    return this.dirty;
  }

  /** Make sure an attempt starts after now. */
  request(): void {
    if (this.closed) return;
    this.dirty = true;
    if (this.wake) this.wake();
    else if (!this.active) {
      this.active = true;
      this.done = this.loop();
    }
  }

  /**
   * Forgets the requests made so far during this attempt: it is about to act on the newest state (it waited
   * before acting, and what changed meanwhile is included).
   */
  absorb(): void {
    this.dirty = false;
  }

  /** Resolves when no attempt runs or is pending. */
  async idle(): Promise<void> {
    while (this.active) await this.done;
  }

  close(): void {
    this.closing.abort();
    this.wake?.();
  }

  private async loop(): Promise<void> {
    let failures = 0;
    while (this.dirty && !this.closed) {
      this.dirty = false;
      const outcome = await this.run(failures);
      if (this.closed) break;
      if (outcome === 'done') {
        failures = 0;
        continue;
      }
      failures++;
      if (!this.dirty) {
        const wait = sleep(backoffDelay(failures, this.backoff), this.closing.signal);
        this.wake = wait.wake;
        await wait.done;
        this.wake = undefined;
      }
      this.dirty = true; // retry, or act on the newer state (the loop ends here if closed meanwhile)
    }
    this.active = false;
  }
}

/**
 * What makes two failures "the same" for the log: their sentence with the numbers left out (a process count or a
 * PID changes from one attempt to the next; the problem does not). A repeat is logged at debug level only.
 */
export function failureKey(reason: string): string {
  return reason.replace(/\d+/g, '#');
}
