import type { Logger } from '../shared/log.ts';
import type { SourceSpec } from '../shared/source-spec.ts';
import { backoffDelay, DEFAULT_BACKOFF, sleep, type BackoffPolicy } from './backoff.ts';
import { ApiError, describeError, describeForbidden, isGone, type KubeStatus } from './kube/api-error.ts';
import type { KubeClient } from './kube/client.ts';
import { readWatchStream } from './kube/watch-stream.ts';
import type { ApiHealth } from './health.ts';
import { LARGE_OBJECT_BYTES, LARGE_OBJECT_KEYS, releaseMemorySoon } from './memory.ts';
import type { ReloaderMetrics } from './metrics.ts';
import { projectObject, ProjectionError, type KubeObject } from './projection.ts';
import type { AtomicWriter } from './writer.ts';

const RESOURCES = { secret: 'secrets', configmap: 'configmaps' } as const;
/** A watch that ends without an event sooner than this counts as a failed attempt (no tight reconnect loop). */
const MIN_HEALTHY_WATCH_MS = 1000;
/** How long after its timeoutSeconds a silent watch connection is considered dead, at the latest. */
const WATCH_IDLE_MARGIN_MS = 30_000;
/** The default silence after which a watch is reopened: API servers send a bookmark about every minute. */
export const DEFAULT_WATCH_IDLE_MS = 120_000;
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
  /** Called after every write that changed the directory; `initial` for the startup write into an empty one (no reload). */
  onChange: (initial: boolean) => void;
  resyncMs: number;
  backoff?: BackoffPolicy;
  /** The watch's server-side timeout; random 5-10 min by default, as client-go does, so pods reconnect at different times. */
  watchTimeoutSeconds?: () => number;
  /** A watch silent (no event, no bookmark) for this long is dropped and reopened: it may be dead without a FIN. */
  watchIdleMs?: number;
}

interface ListResult {
  object: KubeObject | undefined;
  resourceVersion: string;
}

export function sourceId(spec: SourceSpec, namespace: string): string {
  return `${spec.kind}/${namespace}/${spec.name}`;
}

/**
 * Keeps one Secret or ConfigMap's directory in step with the API server: list by name, then watch from
 * that resourceVersion with bookmarks. 410 Gone lists again; a closed or broken watch reconnects at once,
 * and only attempts that keep failing back off. Objects are written in arrival order with the newest
 * winning when writes queue up; a deleted object keeps its files.
 */
export class SourceWatcher {
  readonly id: string;
  readonly spec: SourceSpec;
  private readonly opts: SourceOptions;
  private readonly log: Logger;
  private readonly listPath: string;
  private readonly abort = new AbortController();
  private rv: string | undefined;
  private present = false;
  private absenceLogged = false;
  private synced = false;
  /** Bumped by every list or watch event, so a resync list that raced an event is dropped as stale. */
  private generation = 0;
  private pending: { object: KubeObject; receivedAt: bigint | undefined } | undefined;
  private draining = false;
  private drained: Promise<void> = Promise.resolve();
  private lastError: string | undefined;
  private running: Promise<void> | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;

  constructor(opts: SourceOptions) {
    this.opts = opts;
    this.spec = opts.spec;
    this.id = sourceId(opts.spec, opts.namespace);
    this.log = opts.log;
    const selector = encodeURIComponent(`metadata.name=${opts.spec.name}`);
    this.listPath = `/api/v1/namespaces/${opts.namespace}/${RESOURCES[opts.spec.kind]}?fieldSelector=${selector}`;
  }

  /** Readiness: written once (or, when optional, confirmed absent). */
  get isSynced(): boolean {
    return this.synced;
  }

  start(): void {
    this.running ??= this.loop();
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
    for (let failures = 1; !signal.aborted; failures++) {
      const delay = backoffDelay(failures, this.backoff);
      try {
        const { object } = await this.list(signal);
        this.observe(object, undefined);
        await this.idle();
        if (this.synced) return;
        if (!object) this.lastError = `${this.spec.kind} ${this.opts.namespace}/${this.spec.name} not found`;
      } catch (err) {
        if (signal.aborted) break;
        this.lastError = this.reportFailure(err, delay);
      }
      await sleep(delay, signal).done;
    }
    throw new Error(this.lastError ?? 'no answer from the API server');
  }

  private get backoff(): BackoffPolicy {
    return this.opts.backoff ?? DEFAULT_BACKOFF;
  }

  private async loop(): Promise<void> {
    const signal = this.abort.signal;
    const { metrics } = this.opts;
    let failures = 0;
    while (!signal.aborted) {
      let delay = 0;
      try {
        const listed = this.rv === undefined;
        if (listed) await this.relist(signal);
        const { outcome, progressed } = await this.watch(signal);
        if (signal.aborted) break;
        metrics.watchRestarts.inc({ source: this.id, reason: outcome });
        if (outcome === 'gone') {
          this.rv = undefined;
          // Relist at once, unless a watch from a fresh list expired right away again.
          failures = listed && !progressed ? failures + 1 : 0;
          this.log.info('the watch expired (410 Gone): listing again');
        } else {
          failures = progressed ? 0 : failures + 1;
        }
        if (failures > 0) delay = backoffDelay(failures, this.backoff);
      } catch (err) {
        if (signal.aborted) break;
        failures++;
        metrics.watchRestarts.inc({ source: this.id, reason: 'error' });
        metrics.apiErrors.inc({ source: this.id, code: String(err instanceof ApiError ? err.code : 0) });
        delay = backoffDelay(failures, this.backoff);
        this.reportFailure(err, delay);
      }
      if (delay > 0) await sleep(delay, signal).done;
    }
  }

  private async list(signal: AbortSignal): Promise<ListResult> {
    const list = await this.opts.client.getJson<{
      metadata?: { resourceVersion?: string };
      items?: KubeObject[];
    }>(this.listPath, { signal });
    this.opts.health.contact();
    const resourceVersion = list.metadata?.resourceVersion;
    if (!resourceVersion) throw new Error('the list answer has no resourceVersion');
    return { object: list.items?.find((o) => o.metadata?.name === this.spec.name), resourceVersion };
  }

  private async relist(signal: AbortSignal): Promise<void> {
    const { object, resourceVersion } = await this.list(signal);
    this.rv = resourceVersion;
    this.generation++;
    this.log.debug({ resourceVersion, found: object !== undefined }, 'listed');
    this.observe(object, undefined);
  }

  private async watch(signal: AbortSignal): Promise<{ outcome: 'closed' | 'gone'; progressed: boolean }> {
    const { client, health, metrics } = this.opts;
    const timeoutSeconds = this.opts.watchTimeoutSeconds?.() ?? 300 + Math.floor(Math.random() * 300);
    const path = `${this.listPath}&watch=true&allowWatchBookmarks=true&resourceVersion=${encodeURIComponent(this.rv ?? '')}&timeoutSeconds=${timeoutSeconds}`;
    let res;
    try {
      res = await client.stream(path, {
        signal,
        idleTimeoutMs: Math.min(
          timeoutSeconds * 1000 + WATCH_IDLE_MARGIN_MS,
          this.opts.watchIdleMs ?? DEFAULT_WATCH_IDLE_MS,
        ),
      });
    } catch (err) {
      if (isGone(err)) return { outcome: 'gone', progressed: false }; // some API servers answer 410 before streaming
      throw err;
    }
    health.watchOpened();
    metrics.watchesOpen.set(health.openWatches);
    this.log.debug({ resourceVersion: this.rv, timeoutSeconds }, 'watch open');
    const started = Date.now();
    let outcome: 'closed' | 'gone' = 'closed';
    let events = 0;
    try {
      await readWatchStream(res, (event, receivedAt) => {
        health.contact();
        metrics.events.inc({ source: this.id, type: event.type });
        if (event.type === 'ERROR') {
          const status = event.object as KubeStatus;
          if (status.code === 410 || status.reason === 'Expired' || status.reason === 'Gone') {
            outcome = 'gone';
            return false;
          }
          throw new ApiError(status.code ?? 500, status, 'watch ERROR event');
        }
        events++;
        const object = event.object as KubeObject;
        const rv = object.metadata?.resourceVersion;
        if (rv) this.rv = rv;
        this.log.trace({ type: event.type, resourceVersion: rv }, 'watch event');
        if (event.type === 'BOOKMARK') return true;
        this.generation++;
        this.observe(event.type === 'DELETED' ? undefined : object, receivedAt);
        return true;
      });
    } catch (err) {
      // A connection that broke after it was open is a normal end: reconnect at once from the last version.
      if (err instanceof ApiError || signal.aborted) throw err;
      this.log.info({ error: describeError(err) }, 'the watch connection broke: reconnecting');
    } finally {
      health.watchClosed();
      metrics.watchesOpen.set(health.openWatches);
    }
    return { outcome, progressed: events > 0 || Date.now() - started >= MIN_HEALTHY_WATCH_MS };
  }

  /** The object's latest known state: present (write it) or absent (keep the files). */
  private observe(object: KubeObject | undefined, receivedAt: bigint | undefined): void {
    if (object) {
      if (!this.present && (this.absenceLogged || this.synced))
        this.log.info('the object exists again: syncing');
      this.present = true;
      this.absenceLogged = false;
      this.enqueue(object, receivedAt);
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

  private enqueue(object: KubeObject, receivedAt: bigint | undefined): void {
    this.pending = { object, receivedAt };
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
   */
  private async drain(): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    while (this.pending) {
      const { object, receivedAt } = this.pending;
      this.pending = undefined;
      await this.apply(object, receivedAt);
    }
    this.draining = false;
  }

  private async apply(object: KubeObject, receivedAt: bigint | undefined): Promise<void> {
    const { writer, metrics } = this.opts;
    try {
      const payload = projectObject(this.spec, object);
      const result = await writer.write(payload);
      if (result.changed) {
        if (receivedAt !== undefined)
          metrics.eventToWrite.observe(Number(process.hrtime.bigint() - receivedAt) / 1e9, {
            source: this.id,
          });
        metrics.writes.inc({ source: this.id });
        // The reload request goes out first; the log line would only delay it.
        // The first write into an empty directory before the first sync is the app's startup content, not a change.
        this.opts.onChange(result.initial && !this.synced);
        this.log.info(
          {
            dir: this.spec.dir,
            // The first names only: a Secret of 10,000 keys would make every such line a 200 KB string.
            files:
              payload.size > LOGGED_FILES ? [...payload.keys()].slice(0, LOGGED_FILES) : [...payload.keys()],
            fileCount: payload.size,
            resourceVersion: object.metadata?.resourceVersion,
            initial: result.initial,
          },
          'content changed: files written',
        );
      } else {
        this.log.debug(
          { resourceVersion: object.metadata?.resourceVersion },
          'content unchanged: nothing written',
        );
      }
      this.lastError = undefined;
      this.markSynced();
    } catch (err) {
      metrics.writeErrors.inc({ source: this.id });
      const reason = err instanceof ProjectionError ? err.message : describeError(err);
      this.lastError = reason;
      this.log.error(
        { dir: this.spec.dir, error: reason },
        `cannot write the object's files (${reason}): keeping the previous ones`,
      );
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
  }

  /** Logs why a list or watch failed, once per attempt, and returns the reason (for --once). */
  private reportFailure(err: unknown, retryInMs: number): string {
    const fields = { retryInMs, code: err instanceof ApiError ? err.code : undefined };
    if (err instanceof ApiError && err.code === 403) {
      const line = describeForbidden(err, RESOURCES[this.spec.kind], this.spec.name, this.opts.namespace);
      this.log.error({ ...fields, apiMessage: err.status?.message }, line);
      return line;
    }
    const reason =
      err instanceof ApiError
        ? err.code === 401
          ? 'the API server rejected the credentials (401 Unauthorized)'
          : err.message
        : `cannot reach the API server: ${describeError(err)}`;
    this.log.warn({ ...fields, error: reason }, `list/watch failed: ${reason}`);
    return reason;
  }

  private scheduleResync(): void {
    if (this.opts.resyncMs <= 0 || this.abort.signal.aborted) return;
    const delay = Math.round(this.opts.resyncMs * (0.9 + Math.random() * 0.2));
    this.resyncTimer = setTimeout(() => void this.resync().finally(() => this.scheduleResync()), delay);
  }

  /** The safety net: list again and write if the watch missed something. */
  private async resync(): Promise<void> {
    if (this.rv === undefined) return; // the loop is listing anyway
    const generation = this.generation;
    try {
      const { object } = await this.list(this.abort.signal);
      if (generation !== this.generation) return; // an event arrived meanwhile and is at least as new
      this.log.debug({ found: object !== undefined }, 'resync');
      this.observe(object, undefined);
    } catch (err) {
      if (!this.abort.signal.aborted)
        this.log.debug({ error: describeError(err) }, 'resync list failed; the watch goes on');
    }
  }
}

/** Whether handling this object leaves enough garbage behind to collect it (see memory.ts). */
function isLarge(object: KubeObject): boolean {
  let keys = 0;
  let bytes = 0;
  for (const values of [object.data, object.binaryData]) {
    for (const key in values ?? {}) {
      keys++;
      bytes += (values as Record<string, string>)[key]?.length ?? 0;
    }
  }
  return keys >= LARGE_OBJECT_KEYS || bytes >= LARGE_OBJECT_BYTES;
}
