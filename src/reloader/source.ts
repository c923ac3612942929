import type { Logger } from '../shared/log.ts';
import type { SourceSpec } from '../shared/source-spec.ts';
import { backoffDelay, DEFAULT_BACKOFF, sleep, type BackoffPolicy } from './backoff.ts';
import { describeError } from './kube/api-error.ts';
import type { KubeClient } from './kube/client.ts';
import type { ApiHealth } from './health.ts';
import { ListWatch, resourceVersionOf } from './list-watch.ts';
import { LARGE_OBJECT_BYTES, LARGE_OBJECT_KEYS, releaseMemorySoon } from './memory.ts';
import type { ReloaderMetrics } from './metrics.ts';
import { projectObject, ProjectionError, type KubeObject } from './projection.ts';
import type { AtomicWriter } from './writer.ts';

export { DEFAULT_WATCH_IDLE_MS } from './list-watch.ts';
/** How many file names a "files written" log line lists (it always gives the count). */
const LOGGED_FILES = 20;

export interface SourceOptions {
  spec: SourceSpec;
  namespace: string;
  client: KubeClient;
  writer: AtomicWriter;
  health: ApiHealth;
  metrics: ReloaderMetrics;
  log: Logger;
  /**
   * Called after every write that changed the directory; `initial` for the startup write into an empty one (no
   * reload); `receivedAt` (hrtime) when the watch event that brought the change arrived (undefined: a list or a
   * resync), for the change-to-applied time.
   */
  onChange: (initial: boolean, receivedAt: bigint | undefined) => void;
  /** Called once, when the source first synced (written, or confirmed absent when optional). */
  onSynced?: () => void;
  resyncMs: number;
  backoff?: BackoffPolicy;
  /** The watch's server-side timeout; random 5-10 min by default, as client-go does, so pods reconnect at different times. */
  watchTimeoutSeconds?: () => number;
  /** A watch silent (no event, no bookmark) for this long is dropped and reopened: it may be dead without a FIN. */
  watchIdleMs?: number;
}

interface WriteJob {
  object: KubeObject;
  /** When its watch event arrived (for the event-to-write histogram); undefined for a list or a resync. */
  receivedAt: bigint | undefined;
  /** A resync's check: compare with the files on disk rather than with what was last written. */
  recheck: boolean;
}

export function sourceId(spec: SourceSpec, namespace: string): string {
  return `${spec.kind}/${namespace}/${spec.name}`;
}

/**
 * Keeps one Secret or ConfigMap's directory in step with the API server. The list/watch protocol is ListWatch's
 * (list-watch.ts); here, what it delivers becomes files: objects are written in arrival order with the newest
 * winning when writes queue up, a deleted object keeps its files, and readiness follows the first sync.
 */
export class SourceWatcher {
  readonly id: string;
  readonly spec: SourceSpec;
  private readonly opts: SourceOptions;
  private readonly log: Logger;
  private readonly lw: ListWatch;
  private readonly abort = new AbortController();
  private present = false;
  private absenceLogged = false;
  private synced = false;
  /** The newest state of the object the list/watch delivered (undefined: absent, or not known yet). */
  private latest: KubeObject | undefined;
  private pending: WriteJob | undefined;
  private draining = false;
  private drained: Promise<void> = Promise.resolve();
  private lastError: string | undefined;
  /** Why the newest object is not on disk, while it is not (for /readyz). */
  private failing: string | undefined;
  /** Cuts the wait before a failed write's retry short (a newer object, or stop). */
  private wakeRetry: (() => void) | undefined;
  private running: Promise<void> | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;

  constructor(opts: SourceOptions) {
    this.opts = opts;
    this.spec = opts.spec;
    this.id = sourceId(opts.spec, opts.namespace);
    this.log = opts.log;
    this.lw = new ListWatch({
      target: { kind: opts.spec.kind, namespace: opts.namespace, name: opts.spec.name },
      id: this.id,
      client: opts.client,
      health: opts.health,
      metrics: opts.metrics,
      log: opts.log,
      backoff: opts.backoff,
      watchTimeoutSeconds: opts.watchTimeoutSeconds,
      watchIdleMs: opts.watchIdleMs,
    });
  }

  /** Readiness: written once (or, when optional, confirmed absent). */
  get isSynced(): boolean {
    return this.synced;
  }

  /** Why the newest content of the object is not on disk, while a write of it is failing; else undefined. */
  get failure(): string | undefined {
    return this.failing;
  }

  start(): void {
    this.running ??= this.lw.run(this.abort.signal, {
      listed: (object) => this.observe(object, undefined),
      changed: (object, receivedAt) => this.observe(object, receivedAt),
    });
    this.scheduleResync();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    clearTimeout(this.resyncTimer);
    await this.running;
    await this.idle();
  }

  /** Resolves when every queued write is done. */
  async idle(): Promise<void> {
    while (this.draining) await this.drained;
  }

  /** --once: list and write until it worked or `signal` aborts; then throws with the last reason. */
  async syncOnce(signal: AbortSignal): Promise<void> {
    // A write being retried gives up when --once does.
    signal.addEventListener('abort', () => this.abort.abort(), { once: true });
    for (let failures = 1; !signal.aborted; failures++) {
      const delay = backoffDelay(failures, this.backoff);
      try {
        const { object } = await this.lw.list(signal);
        this.observe(object, undefined);
        await this.idle();
        if (this.synced) return;
        if (!object) this.lastError = `${this.spec.kind} ${this.opts.namespace}/${this.spec.name} not found`;
      } catch (err) {
        if (signal.aborted) break;
        this.lastError = this.lw.report(err, delay);
      }
      await sleep(delay, signal).done;
    }
    throw new Error(this.lastError ?? 'no answer from the API server');
  }

  private get backoff(): BackoffPolicy {
    return this.opts.backoff ?? DEFAULT_BACKOFF;
  }

  /** The object's latest known state: present (write it) or absent (keep the files). */
  private observe(object: KubeObject | undefined, receivedAt: bigint | undefined): void {
    this.latest = object;
    // Absent, there is nothing to write: the files kept are all there is (a failing write is moot).
    if (!object) this.failing = undefined;
    if (object) {
      if (!this.present && (this.absenceLogged || this.synced))
        this.log.info('the object exists again: syncing');
      this.present = true;
      this.absenceLogged = false;
      this.enqueue({ object, receivedAt, recheck: false });
      return;
    }
    if (this.present) {
      this.present = false;
      this.absenceLogged = true;
      this.opts.metrics.deletions.inc({ source: this.id });
      this.log.warn(
        { dir: this.spec.dir },
        'the object was deleted: keeping its last files, waiting for it to come back',
      );
    } else if (!this.absenceLogged) {
      this.absenceLogged = true;
      if (this.spec.optional)
        this.log.info('optional object not found: nothing to write until it is created');
      else this.log.warn('object not found: waiting for it to be created');
    }
    if (this.spec.optional) this.markSynced();
  }

  private enqueue(job: WriteJob): void {
    // The newest object wins; a resync's check of the disk carries over to it.
    this.pending = { ...job, recheck: job.recheck || (this.pending?.recheck ?? false) };
    // A write waiting to be retried is superseded: the newer object is written at once.
    this.wakeRetry?.();
    if (!this.draining) {
      this.draining = true;
      this.drained = this.drain();
    }
  }

  /**
   * Writes the newest queued object, then any that came while it was written. The first write waits for the
   * rest of this event-loop turn: the watch stream hands over its events one decrypted chunk at a time, so a
   * burst already received is parsed whole first and only its newest state is written (once), where writing
   * in between would put one write per chunk before the reload of the newest. A lone event waits for nothing
   * (setImmediate runs right after this turn's I/O callbacks).
   *
   * A write that fails on the file system (disk full, EIO, permission) is retried with backoff until it works
   * or a newer object supersedes it; each retry reads the directory's state from disk again, whatever the
   * failed attempt left. An object that cannot be projected (a missing item key, bad gzip) is not retried: the
   * same object would fail the same way, so it waits for the next version.
   */
  private async drain(): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    const signal = this.abort.signal;
    let failures = 0;
    while (this.pending && !signal.aborted) {
      const job = this.pending;
      this.pending = undefined;
      const outcome = await this.apply(job, failures);
      if (outcome !== 'failed') {
        failures = 0;
        continue;
      }
      failures++;
      if (this.pending) continue; // superseded already: write the newer object now
      const wait = sleep(backoffDelay(failures, this.backoff), signal);
      this.wakeRetry = wait.wake;
      await wait.done;
      this.wakeRetry = undefined;
      // The newest object known, which is the same one unless a newer came; none if it was deleted meanwhile.
      if (!this.pending && this.latest)
        this.pending = { object: this.latest, receivedAt: undefined, recheck: true };
    }
    this.draining = false;
  }

  /** Writes one object: `written` (or unchanged), `rejected` (cannot be projected), or `failed` (retry it). */
  private async apply(
    { object, receivedAt, recheck }: WriteJob,
    failedAttempts: number,
  ): Promise<'written' | 'rejected' | 'failed'> {
    const { writer, metrics } = this.opts;
    try {
      const payload = projectObject(this.spec, object);
      // A resync or a retry compares with what is on disk now, not with what was last written.
      if (recheck) await writer.forget();
      const result = await writer.write(payload);
      if (result.changed) {
        if (receivedAt !== undefined)
          metrics.eventToWrite.observe(Number(process.hrtime.bigint() - receivedAt) / 1e9, {
            source: this.id,
          });
        metrics.writes.inc({ source: this.id });
        // The reload request goes out first; the log line would only delay it.
        // The first write into an empty directory before the first sync is the app's startup content, not a change.
        this.opts.onChange(result.initial && !this.synced, receivedAt);
        this.log.info(
          {
            dir: this.spec.dir,
            // The first names only: a Secret of 10,000 keys would make every such line a 200 KB string.
            files:
              payload.size > LOGGED_FILES ? [...payload.keys()].slice(0, LOGGED_FILES) : [...payload.keys()],
            fileCount: payload.size,
            resourceVersion: resourceVersionOf(object),
            initial: result.initial,
            ...(recheck && failedAttempts === 0 ? { resync: true } : {}),
            ...(failedAttempts > 0 ? { afterFailedAttempts: failedAttempts } : {}),
          },
          'content changed: files written',
        );
      } else {
        this.log.debug({ resourceVersion: resourceVersionOf(object) }, 'content unchanged: nothing written');
      }
      this.lastError = undefined;
      this.failing = undefined;
      this.markSynced();
      return 'written';
    } catch (err) {
      metrics.writeErrors.inc({ source: this.id });
      const rejected = err instanceof ProjectionError;
      const reason = rejected ? err.message : describeWriteError(err);
      const again = reason === this.failing;
      this.lastError = reason;
      this.failing = reason;
      if (rejected) {
        this.log.error(
          { dir: this.spec.dir, error: reason },
          `cannot write the object's files (${reason}): keeping the previous ones`,
        );
        return 'rejected';
      }
      // One error line per reason; the retries of the same failure only at debug level.
      const retryInfo = { dir: this.spec.dir, error: reason, attempt: failedAttempts + 1 };
      if (again) this.log.debug(retryInfo, 'writing the files failed again: retrying with backoff');
      else
        this.log.error(
          retryInfo,
          `cannot write the object's files (${reason}): keeping the previous ones, retrying with backoff`,
        );
      return 'failed';
    } finally {
      // After the write: a collection in the middle of it would find the object still in use.
      if (isLarge(object)) releaseMemorySoon();
    }
  }

  private markSynced(): void {
    if (this.synced) return;
    this.synced = true;
    this.opts.metrics.synced.set(1, { source: this.id });
    this.log.info('synced');
    this.opts.onSynced?.();
  }

  private scheduleResync(): void {
    if (this.opts.resyncMs <= 0 || this.abort.signal.aborted) return;
    const delay = Math.round(this.opts.resyncMs * (0.9 + Math.random() * 0.2));
    this.resyncTimer = setTimeout(() => {
      this.resync();
      this.scheduleResync();
    }, delay);
  }

  /**
   * The safety net, without a request to the API server: the files on disk are compared with the newest object
   * the list/watch delivered, and rewritten when something else changed or removed them. It cannot write older
   * content than what is on disk: it only ever writes the newest object known, as the watch does.
   */
  private resync(): void {
    if (!this.latest) {
      this.log.debug('resync: the object is not known to exist, nothing to check');
      return;
    }
    this.log.debug('resync: checking the files against the newest object');
    this.enqueue({ object: this.latest, receivedAt: undefined, recheck: true });
  }
}

/**
 * A failed write, for the log and /readyz: a file system error by its code and message (which names a path, never
 * content); anything else only by its kind, since its message might quote what was being written.
 */
function describeWriteError(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (typeof e?.code === 'string' && /^E[A-Z]+$/.test(e.code)) return describeError(err);
  return `unexpected ${err instanceof Error ? err.name : typeof err} while writing`;
}

/** Whether handling this object leaves enough garbage behind to collect it (see memory.ts). */
function isLarge(object: KubeObject): boolean {
  let keys = 0;
  let bytes = 0;
  for (const values of [object.data, object.binaryData]) {
    if (typeof values !== 'object' || values === null) continue;
    for (const key in values) {
      keys++;
      bytes += (values as Record<string, string>)[key]?.length ?? 0;
    }
  }
  return keys >= LARGE_OBJECT_KEYS || bytes >= LARGE_OBJECT_BYTES;
}
