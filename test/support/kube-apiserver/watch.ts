import type { ServerResponse } from 'node:http';
import type { ResourceDef } from './resources.ts';
import { groupVersion } from './resources.ts';
import type { FieldSelector, LabelSelector } from './selectors.ts';
import { matchesFields, matchesLabels } from './selectors.ts';
import type { StatusBody } from './status.ts';
import { KubeError } from './status.ts';
import type { Store, StoredEvent } from './store.ts';
import type { KubeObject, WatchEventType } from './types.ts';

export interface WatchParams {
  def: ResourceDef;
  namespace?: string;
  labels: LabelSelector;
  fields: FieldSelector;
  /** null: absent from the query. */
  resourceVersion: string | null;
  bookmarks: boolean;
  timeoutSeconds?: number;
  /** sendInitialEvents=true: the initial ADDED events end with a BOOKMARK annotated k8s.io/initial-events-end. */
  sendInitialEvents?: boolean;
  /** Shapes each object on the wire (a Table row for kubectl, else the object itself). */
  render: (obj: KubeObject) => unknown;
}

export interface WatchHooks {
  bookmarkIntervalMs: number;
  /** Called right after each event is handed to the socket. */
  onWrite: (type: WatchEventType, object: KubeObject | StatusBody, sentAt: bigint) => void;
  onClose: (w: ActiveWatch) => void;
}

/**
 * One open watch: replays what the client missed since its resourceVersion (or the current objects when it
 * gave none), then streams live changes as newline-delimited JSON, one chunk per event.
 */
export class ActiveWatch {
  readonly #res: ServerResponse;
  readonly #params: WatchParams;
  readonly #hooks: WatchHooks;
  readonly #store: Store;
  #unsubscribe: (() => void) | undefined;
  #timers: NodeJS.Timeout[] = [];
  #closed = false;

  constructor(store: Store, res: ServerResponse, params: WatchParams, hooks: WatchHooks) {
    this.#store = store;
    this.#res = res;
    this.#params = params;
    this.#hooks = hooks;
  }

  /** Writes the headers and the backlog, then follows the store. The caller has already validated the parameters. */
  start(): void {
    const { resourceVersion: rv, def } = this.#params;
    const res = this.#res;
    res.writeHead(200, {
      'Content-Type': 'application/json',
      'Cache-Control': 'no-cache, private',
      'Transfer-Encoding': 'chunked',
    });
    res.flushHeaders();
    res.on('close', () => this.#cleanup());

    let backlog: StoredEvent[] = [];
    const initial = rv === null || rv === '' || rv === '0' || this.#params.sendInitialEvents === true;
    try {
      if (!initial) backlog = this.#store.eventsSince(Number(rv));
    } catch (err) {
      if (!(err instanceof KubeError)) throw err;
      this.#write('ERROR', err.status);
      res.end();
      return;
    }
    // Subscribing and replaying happen in one synchronous step, so no change can fall between them.
    this.#unsubscribe = this.#store.subscribe((ev) => this.#deliver(ev));
    if (initial) {
      for (const obj of this.#store.list(def, this.#params.namespace))
        if (this.#matches(obj)) this.#write('ADDED', obj);
      if (this.#params.sendInitialEvents) this.#bookmark(true);
    }
    for (const ev of backlog) this.#deliver(ev);

    if (this.#params.bookmarks) {
      const t = setInterval(() => this.#bookmark(false), this.#hooks.bookmarkIntervalMs);
      t.unref();
      this.#timers.push(t);
    }
    if (this.#params.timeoutSeconds !== undefined) {
      const t = setTimeout(() => res.end(), this.#params.timeoutSeconds * 1000);
      t.unref();
      this.#timers.push(t);
    }
  }

  /** Kills the connection without a clean end, as a crashed API server or a broken network does. */
  destroy(): void {
    const finished = this.#res.writableFinished;
    this.#cleanup();
    // A stream that already ended cleanly leaves its socket to keep-alive reuse: not ours to kill.
    if (!finished) this.#res.socket?.destroy();
  }

  #cleanup(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const t of this.#timers) clearTimeout(t);
    this.#timers = [];
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    this.#hooks.onClose(this);
  }

  #matches(obj: KubeObject | undefined): boolean {
    if (!obj) return false;
    const p = this.#params;
    if (p.namespace !== undefined && obj.metadata.namespace !== p.namespace) return false;
    return matchesLabels(p.labels, obj) && matchesFields(p.fields, obj);
  }

  /** The watch cache's rule: an object entering the selection is ADDED, one leaving it is DELETED. */
  #deliver(ev: StoredEvent): void {
    if (ev.def !== this.#params.def) return;
    const now = this.#matches(ev.type === 'DELETED' ? undefined : ev.object);
    const before = this.#matches(ev.prev);
    if (ev.type === 'DELETED') {
      if (before) this.#write('DELETED', ev.object);
    } else if (now) this.#write(before ? 'MODIFIED' : 'ADDED', ev.object);
    else if (before) {
      const gone = structuredClone(ev.prev as KubeObject);
      gone.metadata.resourceVersion = String(ev.rv);
      this.#write('DELETED', gone);
    }
  }

  #bookmark(initialEnd: boolean): void {
    const metadata: Record<string, unknown> = { resourceVersion: String(this.#store.rv) };
    if (initialEnd) metadata.annotations = { 'k8s.io/initial-events-end': 'true' };
    const { def } = this.#params;
    this.#write(
      'BOOKMARK',
      { kind: def.kind, apiVersion: groupVersion(def), metadata } as unknown as KubeObject,
      true,
    );
  }

  #write(type: WatchEventType, object: KubeObject | StatusBody, raw = false): void {
    const res = this.#res;
    if (res.writableEnded || res.destroyed) return;
    const wire = raw || type === 'ERROR' ? object : this.#params.render(object as KubeObject);
    res.write(`${JSON.stringify({ type, object: wire })}\n`);
    this.#hooks.onWrite(type, object, process.hrtime.bigint());
  }
}
