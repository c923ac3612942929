import { createHash } from 'node:crypto';
import type { Logger } from '../shared/log.ts';
import type { BackoffPolicy } from './backoff.ts';
import { CoalescingLoop, failureKey, type AttemptOutcome } from './coalesce.ts';
import type { RestartConfig } from './config.ts';
import type { SignalSender } from './delivery.ts';
import type { EventSink } from './events.ts';
import type { ApiHealth } from './health.ts';
import type { KubeClient } from './kube/client.ts';
import { ListWatch } from './list-watch.ts';
import type { ReloaderMetrics } from './metrics.ts';
import { signalContainer } from './processes.ts';
import type { KubeObject } from './projection.ts';
import { sourceId } from './source.ts';

interface RestartOptions {
  restarts: RestartConfig[];
  namespace: string;
  client: KubeClient;
  health: ApiHealth;
  metrics: ReloaderMetrics;
  log: Logger;
  backoff?: BackoffPolicy;
  events?: EventSink;
  watchIdleMs?: number;
  /** signalContainer unless a test stands in. */
  send?: SignalSender;
}

/**
 * The digest of what a container reads of the object through env: its data and binaryData (keys and values),
 * nothing of its metadata. Values are hashed as the API sent them; never kept, never logged.
 */
function dataDigest(object: KubeObject): string {
  const h = createHash('sha256');
  for (const [tag, values] of [
    ['d', object.data],
    ['b', object.binaryData],
  ] as const) {
    if (typeof values !== 'object' || values === null) continue;
    const map = values as Record<string, unknown>;
    for (const key of Object.keys(map).sort()) {
      const v = map[key];
      h.update(`${tag}\0${key}\0${typeof v === 'string' ? v : JSON.stringify(v)}\n`);
    }
  }
  return h.digest('hex');
}

/** One watched object: a list/watch and a digest, no files. */
class WatchedObject {
  readonly id: string;
  readonly lw: ListWatch;
  /** undefined: not seen yet (the first sync sets it and restarts nothing); null: absent at the first sync. */
  private known: string | null | undefined;
  private readonly onChange: (id: string) => void;
  private readonly log: Logger;

  constructor(lw: ListWatch, id: string, log: Logger, onChange: (id: string) => void) {
    this.lw = lw;
    this.id = id;
    this.log = log;
    this.onChange = onChange;
  }

  observe(object: KubeObject | undefined): void {
    if (!object) {
      // A deleted object changes nothing in a running container's env; the kubelet could not even restart it.
      if (this.known === undefined) this.known = null;
      else if (this.known !== null) this.log.info('the object was deleted: no restart (its data is unknown)');
      return;
    }
    const digest = dataDigest(object);
    if (this.known === undefined) {
      this.known = digest;
      this.log.debug('first sync: the data the containers started with');
      return;
    }
    if (digest === this.known) return;
    this.known = digest;
    this.onChange(this.id);
  }
}

/** One --restart-on-change container: SIGTERM to its main process, one at a time, coalesced, retried. */
class ContainerRestarter {
  readonly container: string;
  private readonly opts: RestartOptions;
  private readonly log: Logger;
  readonly loop: CoalescingLoop;
  private readonly changed = new Set<string>();
  private lastFailure: string | undefined;

  constructor(container: string, opts: RestartOptions) {
    this.container = container;
    this.opts = opts;
    this.log = opts.log.child({ container });
    this.loop = new CoalescingLoop((failures) => this.attempt(failures), opts.backoff);
  }

  request(objectId: string): void {
    this.changed.add(objectId);
    this.log.info(
      { object: objectId },
      'the data of an object this container reads through env changed: restarting it',
    );
    this.loop.request();
  }

  private async attempt(failures: number): Promise<AttemptOutcome> {
    const { metrics, events } = this.opts;
    const send = this.opts.send ?? signalContainer;
    const objects = [...this.changed];
    const container = this.container;
    try {
      // Checked again right before kill(): nothing is sent once stop() closed the loop.
      const { pid, command } = await send(container, 'SIGTERM', { signal: this.loop.signal });
      this.changed.clear();
      this.lastFailure = undefined;
      metrics.restarts.inc({ container, result: 'success' });
      this.log.info(
        { pid, command, objects, ...(failures > 0 ? { afterFailedAttempts: failures } : {}) },
        'SIGTERM sent to the main process: the kubelet restarts the container, which reads its env again',
      );
      events?.record(
        'ContainerRestarted',
        'Normal',
        `Sent SIGTERM to container ${container} (pid ${pid}): ${objects.join(', ')} changed; the kubelet restarts it with the new env.`,
      );
      return 'done';
    } catch (err) {
      if (this.loop.closed) return 'failed';
      const reason = err instanceof Error ? err.message : String(err);
      metrics.restarts.inc({ container, result: 'failure' });
      if (failureKey(reason) === this.lastFailure)
        this.log.debug({ error: reason }, 'restart not sent again, same reason: retrying');
      else
        this.log.warn(
          { error: reason, objects },
          `cannot restart container ${container}: ${reason}; retrying with backoff (repeats of this failure are logged at debug level)`,
        );
      this.lastFailure = failureKey(reason);
      return 'failed';
    }
  }
}

/**
 * --restart-on-change: watches each named object once (list/watch as a source, no files), and when one's data
 * changes after the first sync, restarts every container that reads it through env by sending SIGTERM to the
 * container's main process (the kubelet restarts that container alone, resolving its env again).
 */
export class RestartManager {
  private readonly objects: WatchedObject[] = [];
  private readonly restarters: ContainerRestarter[] = [];
  private readonly abort = new AbortController();
  private running: Array<Promise<void>> = [];

  constructor(opts: RestartOptions) {
    const byObject = new Map<string, ContainerRestarter[]>();
    for (const r of opts.restarts) {
      const restarter = new ContainerRestarter(r.container, opts);
      this.restarters.push(restarter);
      for (const o of r.objects) {
        const id = sourceId({ kind: o.kind, name: o.name, dir: '' }, opts.namespace);
        let list = byObject.get(id);
        if (!list) {
          list = [];
          byObject.set(id, list);
          const log = opts.log.child({ restartOnChange: id });
          const lw = new ListWatch({
            target: { kind: o.kind, namespace: opts.namespace, name: o.name },
            // Its own metrics label: the same object may also be a --source, watched apart.
            id: `restart:${id}`,
            client: opts.client,
            health: opts.health,
            metrics: opts.metrics,
            log,
            backoff: opts.backoff,
            watchIdleMs: opts.watchIdleMs,
          });
          const targets = list;
          this.objects.push(
            new WatchedObject(lw, id, log, (changed) => targets.forEach((t) => t.request(changed))),
          );
        }
        list.push(restarter);
      }
    }
  }

  start(): void {
    this.running = this.objects.map((watched) =>
      watched.lw.run(this.abort.signal, {
        listed: (object) => watched.observe(object),
        changed: (object) => watched.observe(object),
      }),
    );
  }

  /** Stops the watches and any restart waiting or in flight, at once. */
  async stop(): Promise<void> {
    this.abort.abort();
    for (const r of this.restarters) r.loop.close();
    await Promise.all(this.running);
    await Promise.all(this.restarters.map((r) => r.loop.idle()));
  }
}
