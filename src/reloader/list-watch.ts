import type { Logger } from '../shared/log.ts';
import type { SourceKind } from '../shared/source-spec.ts';
import { backoffDelay, DEFAULT_BACKOFF, sleep, type BackoffPolicy } from './backoff.ts';
import type { ApiHealth } from './health.ts';
import { ApiError, describeError, describeForbidden, isGone, type KubeStatus } from './kube/api-error.ts';
import type { KubeClient } from './kube/client.ts';
import { readWatchStream } from './kube/watch-stream.ts';
import type { ReloaderMetrics } from './metrics.ts';
import type { KubeObject } from './projection.ts';

export const RESOURCES = { secret: 'secrets', configmap: 'configmaps' } as const;
/** A watch that ends without an event sooner than this counts as a failed attempt (no tight reconnect loop). */
const MIN_HEALTHY_WATCH_MS = 1000;
/** How long after its timeoutSeconds a silent watch connection is considered dead, at the latest. */
const WATCH_IDLE_MARGIN_MS = 30_000;
/** The default silence after which a watch is reopened: API servers send a bookmark about every minute. */
export const DEFAULT_WATCH_IDLE_MS = 120_000;

/** The one object a list/watch follows. */
export interface WatchTarget {
  kind: SourceKind;
  namespace: string;
  name: string;
}

export interface ListResult {
  object: KubeObject | undefined;
  resourceVersion: string;
}

/** What the protocol hands over, in the order the API server established it. */
export interface ListWatchHandler {
  /** A list answered: the object as it is now, or undefined when it does not exist. */
  listed(object: KubeObject | undefined, resourceVersion: string): void;
  /** A watch event: the object's new state, or undefined when it was deleted. */
  changed(object: KubeObject | undefined, receivedAt: bigint): void;
}

export interface ListWatchOptions {
  target: WatchTarget;
  /** `kind/namespace/name`, the `source` label of the metrics. */
  id: string;
  client: KubeClient;
  health: ApiHealth;
  metrics: ReloaderMetrics;
  log: Logger;
  backoff?: BackoffPolicy;
  /** The watch's server-side timeout; random 5-10 min by default, as client-go does, so pods reconnect at different times. */
  watchTimeoutSeconds?: () => number;
  /** A watch silent (no event, no bookmark) for this long is dropped and reopened: it may be dead without a FIN. */
  watchIdleMs?: number;
}

/**
 * An object's resourceVersion when it is one (a string): a server that does not conform may put anything in
 * metadata, and nothing of an object but its strings is logged or sent back.
 */
export function resourceVersionOf(object: KubeObject | undefined): string | undefined {
  const rv: unknown = object?.metadata?.resourceVersion;
  return typeof rv === 'string' && rv !== '' ? rv : undefined;
}

type WatchOutcome =
  | { outcome: 'closed' | 'gone'; progressed: boolean }
  /** The server failed the watch with an ERROR event other than 410. */
  | { outcome: 'failed'; error: ApiError };

/**
 * The list/watch protocol for one object: list it by name, then watch from that resourceVersion with bookmarks.
 * A closed or broken watch reconnects at once from the newest resourceVersion seen, and only attempts that keep
 * failing back off; a watch silent for too long is reopened; 410 Gone (or a watch the server failed) lists again,
 * not older than what was seen. resourceVersions are opaque strings: never compared, only handed back.
 */
export class ListWatch {
  readonly id: string;
  private readonly opts: ListWatchOptions;
  private readonly log: Logger;
  private readonly listPath: string;
  private rv: string | undefined;

  constructor(opts: ListWatchOptions) {
    this.opts = opts;
    this.id = opts.id;
    this.log = opts.log;
    const { kind, namespace, name } = opts.target;
    const selector = encodeURIComponent(`metadata.name=${name}`);
    this.listPath = `/api/v1/namespaces/${namespace}/${RESOURCES[kind]}?fieldSelector=${selector}`;
  }

  /** The resourceVersion the next watch starts from; undefined until listed, and after a 410. */
  get resourceVersion(): string | undefined {
    return this.rv;
  }

  private get backoff(): BackoffPolicy {
    return this.opts.backoff ?? DEFAULT_BACKOFF;
  }

  /**
   * Lists and watches until `signal` aborts; failures are logged and retried, never thrown. The informer's
   * discipline: one list, then watches, each from the newest resourceVersion seen (an event's or a bookmark's),
   * for as long as the API server can resume them. Only a 410 Gone or a watch the server failed (an ERROR event)
   * lists again, and that list asks for a state not older than the newest resourceVersion seen
   * (resourceVersionMatch=NotOlderThan), so it can never hand over an older object than the watch did. Nothing
   * else lists: a quiet source costs the API server one watch request per `timeoutSeconds` (5-10 min).
   */
  async run(signal: AbortSignal, handler: ListWatchHandler): Promise<void> {
    const { metrics } = this.opts;
    let failures = 0;
    /** List before the next watch: at start, after a 410 and after a watch the server failed. */
    let relist = true;
    /**
     * The next list is a consistent read (no resourceVersion): at start, and after a server could not serve one
     * not older than `rv` (410 or 504: it lags behind, or no longer knows `rv`). A consistent read is never
     * older than anything the watch delivered either.
     */
    let consistent = true;
    while (!signal.aborted) {
      let delay = 0;
      let step: 'list' | 'watch' = 'watch';
      try {
        const listed = relist;
        if (relist) {
          step = 'list';
          const minimum = consistent ? undefined : this.rv;
          const { object, resourceVersion } = await this.list(signal, minimum);
          this.rv = resourceVersion;
          relist = false;
          consistent = false;
          this.log.debug({ resourceVersion, notOlderThan: minimum, found: object !== undefined }, 'listed');
          handler.listed(object, resourceVersion);
          step = 'watch';
        }
        const result = await this.watch(signal, handler);
        if (signal.aborted) break;
        if (result.outcome === 'failed') {
          // The server failed the watch: its position is not to be trusted. List (not older than it) again.
          relist = true;
          failures++;
          metrics.watchRestarts.inc({ source: this.id, reason: 'error' });
          metrics.apiErrors.inc({ source: this.id, code: String(result.error.code) });
          delay = backoffDelay(failures, this.backoff);
          this.report(result.error, delay);
        } else {
          metrics.watchRestarts.inc({ source: this.id, reason: result.outcome });
          if (result.outcome === 'gone') {
            relist = true;
            // Relist at once, unless a watch from a fresh list expired right away again.
            failures = listed && !result.progressed ? failures + 1 : 0;
            this.log.info('the watch expired (410 Gone): listing again');
          } else {
            failures = result.progressed ? 0 : failures + 1;
          }
          if (failures > 0) delay = backoffDelay(failures, this.backoff);
        }
      } catch (err) {
        if (signal.aborted) break;
        failures++;
        // A watch that cannot be opened (5xx, 403, no answer) is retried from the same resourceVersion: if the
        // server no longer has it, it answers 410 and the loop lists again.
        if (step === 'list' && err instanceof ApiError && (err.code === 410 || err.code === 504))
          consistent = true;
        metrics.watchRestarts.inc({ source: this.id, reason: 'error' });
        metrics.apiErrors.inc({ source: this.id, code: String(err instanceof ApiError ? err.code : 0) });
        delay = backoffDelay(failures, this.backoff);
        this.report(err, delay);
      }
      if (delay > 0) await sleep(delay, signal).done;
    }
  }

  /**
   * One list by name: the object (undefined when absent) and the list's resourceVersion. With `notOlderThan`,
   * the API server answers with a state at least that new (resourceVersionMatch=NotOlderThan); without, with the
   * newest (a consistent read).
   */
  async list(signal: AbortSignal, notOlderThan?: string): Promise<ListResult> {
    const path =
      notOlderThan === undefined
        ? this.listPath
        : `${this.listPath}&resourceVersion=${encodeURIComponent(notOlderThan)}&resourceVersionMatch=NotOlderThan`;
    const list = await this.opts.client.getJson<{
      metadata?: { resourceVersion?: string };
      items?: KubeObject[];
    }>(path, { signal });
    this.opts.health.contact();
    const resourceVersion: unknown = list.metadata?.resourceVersion;
    if (typeof resourceVersion !== 'string' || resourceVersion === '')
      throw new Error('the list answer has no resourceVersion');
    if (list.items !== undefined && list.items !== null && !Array.isArray(list.items))
      throw new Error('the list answer has no list of items');
    const name = this.opts.target.name;
    const object = list.items?.find((o) => typeof o === 'object' && o !== null && o.metadata?.name === name);
    return { object, resourceVersion };
  }

  private async watch(signal: AbortSignal, handler: ListWatchHandler): Promise<WatchOutcome> {
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
    let failure: ApiError | undefined;
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
          failure = new ApiError(status.code ?? 500, status, 'watch ERROR event');
          return false;
        }
        events++;
        const object = event.object as KubeObject;
        const rv = resourceVersionOf(object);
        if (rv) this.rv = rv;
        this.log.trace({ type: event.type, resourceVersion: rv }, 'watch event');
        if (event.type === 'BOOKMARK') return true;
        handler.changed(event.type === 'DELETED' ? undefined : object, receivedAt);
        return true;
      });
    } catch (err) {
      // A connection that broke after it was open is a normal end: reconnect at once from the last version.
      if (signal.aborted) throw err;
      this.log.info({ error: describeError(err) }, 'the watch connection broke: reconnecting');
    } finally {
      health.watchClosed();
      metrics.watchesOpen.set(health.openWatches);
    }
    if (failure) return { outcome: 'failed', error: failure };
    return { outcome, progressed: events > 0 || Date.now() - started >= MIN_HEALTHY_WATCH_MS };
  }

  /** Logs why a list or watch failed, once per attempt, and returns the reason (for --once). */
  report(err: unknown, retryInMs: number): string {
    const fields = { retryInMs, code: err instanceof ApiError ? err.code : undefined };
    const { kind, name, namespace } = this.opts.target;
    if (err instanceof ApiError && err.code === 403) {
      const line = describeForbidden(err, RESOURCES[kind], name, namespace);
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
}
