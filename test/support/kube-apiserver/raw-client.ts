import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { request } from 'node:https';

/** What a raw request needs of the server: where it is and which CA to trust. */
export interface Endpoint {
  url: string;
  caCert: string;
}

export interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

export interface RawRequestOptions {
  token?: string;
  /** An object is sent as JSON; a string or Buffer as is. */
  body?: unknown;
  contentType?: string;
  headers?: Record<string, string>;
}

function start(
  ep: Endpoint,
  method: string,
  path: string,
  opts: RawRequestOptions,
): Promise<IncomingMessage> {
  const headers: Record<string, string> = { Accept: 'application/json', ...opts.headers };
  if (opts.token) headers.Authorization = `Bearer ${opts.token}`;
  let payload: Buffer | undefined;
  if (opts.body !== undefined) {
    payload = Buffer.isBuffer(opts.body)
      ? opts.body
      : Buffer.from(typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body));
    headers['Content-Type'] = opts.contentType ?? 'application/json';
    // node:https sends a DELETE body without framing unless the length is given.
    headers['Content-Length'] = String(payload.length);
  }
  return new Promise((resolve, reject) => {
    const req = request(new URL(path, ep.url), { method, headers, ca: ep.caCert, agent: false }, resolve);
    req.on('error', reject);
    req.end(payload);
  });
}

/** One plain request (a fresh TLS connection, no client library): for protocol-level assertions. */
export async function rawRequest(
  ep: Endpoint,
  method: string,
  path: string,
  opts: RawRequestOptions = {},
): Promise<RawResponse> {
  const res = await start(ep, method, path, opts);
  const chunks: Buffer[] = [];
  for await (const c of res as AsyncIterable<Buffer>) chunks.push(c);
  return { status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') };
}

export interface RawWatchEvent {
  type: string;
  object: {
    kind?: string;
    apiVersion?: string;
    metadata?: Record<string, unknown>;
    code?: number;
    reason?: string;
    message?: string;
    [k: string]: unknown;
  };
}

/** An open watch stream, decoded line by line; `ended` tells how it finished: a clean end or a broken connection. */
export class RawWatch {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly events: RawWatchEvent[] = [];
  readonly ended: Promise<'end' | 'error'>;
  readonly #res: IncomingMessage;
  readonly #waiters = new Set<() => void>();
  #buffer = '';
  #finished = false;

  constructor(res: IncomingMessage) {
    this.#res = res;
    this.status = res.statusCode ?? 0;
    this.headers = res.headers;
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      this.#buffer += chunk;
      let nl: number;
      while ((nl = this.#buffer.indexOf('\n')) >= 0) {
        const line = this.#buffer.slice(0, nl);
        this.#buffer = this.#buffer.slice(nl + 1);
        if (line.trim()) this.events.push(JSON.parse(line) as RawWatchEvent);
      }
      this.#notify();
    });
    this.ended = new Promise((resolve) => {
      // 'aborted'/'error' mean the socket died without the terminating chunk; 'end' is a clean finish.
      res.on('end', () => resolve('end'));
      res.on('error', () => resolve('error'));
      res.on('aborted', () => resolve('error'));
      res.on('close', () => resolve(res.complete ? 'end' : 'error'));
    });
    void this.ended.then(() => {
      this.#finished = true;
      this.#notify();
    });
  }

  /** Resolves with the first event (in arrival order, from the start) matching the predicate. */
  async waitFor(predicate: (e: RawWatchEvent) => boolean, timeoutMs = 10_000): Promise<RawWatchEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.events.find(predicate);
      if (found) return found;
      const seen = this.events.map((e) => e.type).join(',') || 'none';
      if (this.#finished) throw new Error(`watch stream ended before the awaited event; events: ${seen}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`watch event not seen within ${timeoutMs} ms; events: ${seen}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.add(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  #notify(): void {
    const waiters = [...this.#waiters];
    this.#waiters.clear();
    for (const w of waiters) w();
  }

  close(): void {
    this.#res.destroy();
  }
}

/** Opens `path` (which must carry watch=true) and resolves once the response headers are in. */
export async function rawWatch(ep: Endpoint, path: string, token: string): Promise<RawWatch> {
  return new RawWatch(await start(ep, 'GET', path, { token }));
}
