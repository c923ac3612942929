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
  /** Bookmarks also when nothing was written since the watch started (the real watch cache sends none then). */
  idleBookmarks: boolean;
  /** Called right after each event is handed to the socket. */
  onWrite: (type: WatchEventType, object: KubeObject | StatusBody, sentAt: bigint) => void;
  onClose: (w: ActiveWatch) => void;
}

/** How long before a watch's timeoutSeconds the real watch cache sends its last bookmark. */
const PRE_TIMEOUT_BOOKMARK_MS = 2000;

interface QueuedEvent {
  type: WatchEventType;
  object: KubeObject | StatusBody;
  line: Buffer;
}

/**
 * One open watch: replays what the client missed since its resourceVersion (or the current objects when it
 * gave none), then streams live changes as newline-delimited JSON, one chunk per event (or per batch of events
 * that queued behind a write in flight).
 */
export class ActiveWatch {
  readonly #res: ServerResponse;
  readonly #params: WatchParams;
  readonly #hooks: WatchHooks;
  readonly #store: Store;
  #unsubscribe: (() => void) | undefined;
  #timers: NodeJS.Timeout[] = [];
  #closed = false;
  /** Events made while a write is in flight: they leave together, in one chunk, when it completes. */
  #queued: QueuedEvent[] = [];
  #writing = false;
  /** The revision the watch started from: the watch cache sends a bookmark only when it has seen a newer one. */
  #startRv = 0;

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
    this.#startRv = initial ? this.#store.rv : Number(rv);
    try {
      if (!initial) backlog = this.#store.eventsSince(Number(rv));
    } catch (err) {
      if (!(err instanceof KubeError)) throw err;
      this.#write('ERROR', err.status);
      this.#end();
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
      const timeoutMs = this.#params.timeoutSeconds * 1000;
      // The watch cache also sends a bookmark 2 s before the deadline (when that is later than now), so that the
      // client resumes from the newest resourceVersion.
      if (this.#params.bookmarks && timeoutMs > PRE_TIMEOUT_BOOKMARK_MS) {
        const b = setTimeout(() => this.#bookmark(false), timeoutMs - PRE_TIMEOUT_BOOKMARK_MS);
        b.unref();
        this.#timers.push(b);
      }
      const t = setTimeout(() => this.#end(), timeoutMs);
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
    // The real watch cache's process loop drops a bookmark that is not newer than where the watch started (the
    // initial-events-end one excepted): on a server where nothing was written since, no bookmark comes.
    if (!initialEnd && !this.#hooks.idleBookmarks && this.#store.rv <= this.#startRv) return;
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
    this.#queued.push({ type, object, line: Buffer.from(`${JSON.stringify({ type, object: wire })}\n`) });
    if (!this.#writing) this.#flush();
  }

  /**
   * Hands the queued events to the socket now and stamps them, as the real server's watch loop sends each event
   * when it is made (it flushes whenever nothing else is queued). Left to Node, events made by busy code (100
   * updates in one tick) would stay in this process until that code ends, yet be stamped as sent: the response
   * corks its socket until the next tick after a write, and a TLS write in flight keeps later ones in the
   * stream's buffer until its completion comes back through the event loop. So one write is in flight at a
   * time, and what queued behind it leaves in one write when it completes, stamped then.
   */
  #flush(): void {
    const res = this.#res;
    const batch = this.#queued;
    if (batch.length === 0 || res.writableEnded || res.destroyed) return;
    this.#queued = [];
    this.#writing = true;
    // Stamped as the hand-off begins: the bytes of a large batch may leave a little later, never earlier.
    const sentAt = process.hrtime.bigint();
    for (const e of batch) this.#hooks.onWrite(e.type, e.object, sentAt);
    const data =
      batch.length === 1 ? (batch[0] as QueuedEvent).line : Buffer.concat(batch.map((e) => e.line));
    res.write(data, () => {
      this.#writing = false;
      this.#flush();
    });
    if (res.socket?.writableCorked) res.socket.uncork();
  }

  /** Ends the stream after whatever is still queued (Node keeps the order of writes already in its buffer). */
  #end(): void {
    this.#writing = false;
    this.#flush();
    this.#res.end();
  }
}
