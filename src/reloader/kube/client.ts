import type { Agent as HttpAgent } from 'node:http';
import type { Agent as HttpsAgent } from 'node:https';
import type { IncomingMessage } from 'node:http';
import { ApiError, parseStatus } from './api-error.ts';
import type { ClusterAccess } from './cluster-access.ts';

// getBuiltinModule, not an import: see src/reloader/delivery.ts.
const http = process.getBuiltinModule('node:http');
const https = process.getBuiltinModule('node:https');

/** Largest JSON body read into memory (a Secret is at most 1 MiB, 1.4 MB in base64). */
const MAX_BODY_BYTES = 32 * 1024 * 1024;
const MAX_ERROR_BODY_BYTES = 64 * 1024;
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

export interface RequestOptions {
  signal?: AbortSignal;
  /** Socket idle time after which the request fails; for a watch, longer than its timeoutSeconds. */
  idleTimeoutMs?: number;
}

interface SendOptions extends RequestOptions {
  method?: 'GET' | 'POST';
  body?: string;
}

function readBody(res: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    res.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) res.destroy(new Error(`response body larger than ${limit} bytes`));
      else chunks.push(chunk);
    });
    res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.on('error', reject);
    res.on('close', () => {
      if (!res.complete) reject(new Error('the connection closed before the response ended'));
    });
  });
}

/**
 * A minimal Kubernetes API client on node:https: GET a JSON document, open a watch stream, POST an Event. One
 * keep-alive agent holds the TLS settings; the bearer token is added per request so that a rotated token
 * file takes effect without a restart.
 */
export class KubeClient {
  private readonly access: ClusterAccess;
  private readonly agent: HttpAgent | HttpsAgent;
  private readonly secure: boolean;

  constructor(access: ClusterAccess) {
    this.access = access;
    this.secure = access.server.protocol === 'https:';
    this.agent = this.secure
      ? new https.Agent({
          keepAlive: true,
          ca: access.tls.ca,
          cert: access.tls.cert,
          key: access.tls.key,
          rejectUnauthorized: access.tls.rejectUnauthorized,
          servername: access.tls.servername,
        })
      : new http.Agent({ keepAlive: true });
  }

  /** GETs `path` and parses the JSON body; a non-2xx answer becomes an ApiError carrying the Status. */
  async getJson<T>(path: string, opts: RequestOptions = {}): Promise<T> {
    const res = await this.open(path, { idleTimeoutMs: DEFAULT_REQUEST_TIMEOUT_MS, ...opts });
    return JSON.parse(await readBody(res, MAX_BODY_BYTES)) as T;
  }

  /**
   * POSTs a JSON document (an Event) and reads the answer's body only to end it; a non-2xx answer becomes an
   * ApiError carrying the Status. Used for one small object at a time: the body is sent whole.
   */
  async postJson(path: string, body: unknown, opts: RequestOptions = {}): Promise<void> {
    const res = await this.open(path, {
      idleTimeoutMs: DEFAULT_REQUEST_TIMEOUT_MS,
      ...opts,
      method: 'POST',
      body: JSON.stringify(body),
    });
    await readBody(res, MAX_ERROR_BODY_BYTES);
  }

  /** Opens a streaming GET (a watch) and resolves once the API server answered 200; the caller reads the body. */
  stream(path: string, opts: RequestOptions = {}): Promise<IncomingMessage> {
    return this.open(path, opts);
  }

  /** Closes idle and open connections so that the process can exit. */
  destroy(): void {
    this.agent.destroy();
  }

  private async open(path: string, opts: SendOptions): Promise<IncomingMessage> {
    const res = await this.send(path, opts);
    if (res.statusCode === 401 && this.access.token?.rotates) {
      // A bound token may have just been rotated: read the file again and try once more.
      res.resume();
      this.access.token.invalidate();
      return this.checked(await this.send(path, opts), path, opts.method);
    }
    return this.checked(res, path, opts.method);
  }

  private async checked(res: IncomingMessage, path: string, method = 'GET'): Promise<IncomingMessage> {
    const code = res.statusCode ?? 0;
    if (code >= 200 && code < 300) return res;
    const body = await readBody(res, MAX_ERROR_BODY_BYTES).catch(() => '');
    if (code === 401) this.access.token?.invalidate();
    throw new ApiError(code, parseStatus(body), `${method} ${path.split('?')[0]}`);
  }

  private send(path: string, opts: SendOptions): Promise<IncomingMessage> {
    // Appended, not resolved, so that a server URL with a path prefix (a proxy) keeps it.
    const url = new URL(this.access.server.href.replace(/\/+$/, '') + path);
    const headers: Record<string, string> = {
      accept: 'application/json',
      'user-agent': 'config-reloader-injector-reloader',
    };
    const token = this.access.token?.get();
    if (token) headers.authorization = `Bearer ${token}`;
    if (opts.body !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(Buffer.byteLength(opts.body));
    }
    return new Promise((resolve, reject) => {
      let response: IncomingMessage | undefined;
      const req = (this.secure ? https.request : http.request)(
        url,
        { agent: this.agent, headers, signal: opts.signal, method: opts.method ?? 'GET' },
        (res) => {
          response = res;
          resolve(res);
        },
      );
      if (opts.idleTimeoutMs !== undefined) {
        const ms = opts.idleTimeoutMs;
        req.setTimeout(ms, () => {
          const err = Object.assign(new Error(`no data from the API server for ${ms} ms`), {
            code: 'ETIMEDOUT',
          });
          // Fail the body stream itself when it exists, so its reader sees why.
          if (response) response.destroy(err);
          req.destroy(err);
        });
      }
      req.on('error', reject);
      req.end(opts.body);
    });
  }
}
