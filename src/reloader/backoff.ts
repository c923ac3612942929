/** Jittered exponential backoff and an abortable sleep: the only timers on the reloader's error paths. */

export interface BackoffPolicy {
  baseMs: number;
  maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: 250, maxMs: 10_000 };

/**
 * The wait before retry number `failures` (1 = the first retry): base·2^(n-1), capped, then scaled by a
 * random factor in [0.5, 1) so that many pods retrying against one API server spread out.
 */
export function backoffDelay(
  failures: number,
  policy: BackoffPolicy = DEFAULT_BACKOFF,
  random = Math.random,
): number {
  const exp = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.max(0, Math.min(failures - 1, 30)));
  return Math.round(exp * (0.5 + random() / 2));
}

/** Resolves after `ms`, or early (without throwing) when `signal` aborts or `wake` is called. */
export function sleep(ms: number, signal?: AbortSignal): { done: Promise<void>; wake(): void } {
  let wake = (): void => {};
  const done = new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const finish = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', finish);
      resolve();
    };
    const timer = setTimeout(finish, ms);
    signal?.addEventListener('abort', finish, { once: true });
    wake = finish;
  });
  return { done, wake: () => wake() };
}
