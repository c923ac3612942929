import { Agent, request as httpsRequest, type RequestOptions } from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';
import { ListItemSplitter } from './list-items.ts';

/**
 * A small JSON client on node:https for the missed-injection scan, with the credentials of a KubeConfig (its CA,
 * client certificate, token and auth plugins, applied per request so a rotated token file is picked up). It
 * exists so that the scan can set its own Accept header (PartialObjectMetadataList: metadata only), put a deadline
 * on each call from the request to the last byte of the answer, and cap what it reads: the client library would
 * turn every answer into class instances first.
 */

/** Every call gets an answer within this or fails (as the webhook's other API calls, see cert-api.ts). */
export const KUBE_REQUEST_TIMEOUT_MS = 15_000;
/** A larger answer is refused: a page of 500 pods' metadata is a few MiB at most (and read item by item). */
export const MAX_RESPONSE_BYTES = 64 * 1024 * 1024;

export interface KubeResponse {
  status: number;
  /** The parsed JSON answer; undefined when the body is empty or not JSON. */
  body: unknown;
}

export interface KubeRequest {
  /** Path and query, e.g. `/api/v1/pods?limit=500`. */
  path: string;
  method?: 'GET' | 'POST' | 'PUT';
  body?: unknown;
  accept?: string;
  timeoutMs?: number;
  signal?: AbortSignal;
  /**
   * For a list: each element of a 200 answer's `items` is parsed on its own as it arrives and handed here, and
   * `body` is the list without them (ListItemSplitter), so the answer is never held or parsed whole.
   */
  onItem?: (item: unknown) => void;
}

export interface KubeHttp {
  request(req: KubeRequest): Promise<KubeResponse>;
  /** Closes idle connections. */
  close(): void;
}

/** A failed call: no answer (refused, reset, timed out) or an answer that could not be read. */
export class KubeHttpError extends Error {
  readonly code: string | undefined;
  constructor(message: string, code?: string) {
    super(message);
    this.code = code;
    this.name = 'KubeHttpError';
  }
}

/** The Status message of an answer, for a log line (never the body itself). */
export function statusMessage(res: KubeResponse): string {
  const message = (res.body as { message?: unknown } | undefined)?.message;
  return typeof message === 'string' ? message : `HTTP ${res.status}`;
}

export function kubeHttp(kubeConfig: KubeConfig, userAgent: string): KubeHttp {
  const cluster = kubeConfig.getCurrentCluster();
  if (!cluster) throw new Error('the kubeconfig names no current cluster');
  const base = new URL(cluster.server);
  // One connection, kept alive between the calls of a scan; the pool is per CA/certificate, so new credentials
  // from a rotated file get a new connection.
  const agent = new Agent({ keepAlive: true, maxSockets: 1, keepAliveMsecs: 30_000 });

  const request = async (req: KubeRequest): Promise<KubeResponse> => {
    const timeoutMs = req.timeoutMs ?? KUBE_REQUEST_TIMEOUT_MS;
    const payload = req.body === undefined ? undefined : Buffer.from(JSON.stringify(req.body));
    const opts: RequestOptions = {
      protocol: base.protocol,
      hostname: base.hostname.replace(/^\[|\]$/g, ''),
      port: base.port || 443,
      method: req.method ?? 'GET',
      path: `${base.pathname.replace(/\/$/, '')}${req.path}`,
      headers: {
        Accept: req.accept ?? 'application/json',
        'User-Agent': userAgent,
        ...(payload ? { 'Content-Type': 'application/json', 'Content-Length': payload.length } : {}),
      },
      agent,
    };
    await kubeConfig.applyToHTTPSOptions(opts);
    // applyToHTTPSOptions may set its own agent options; ours keeps the connection.
    opts.agent = agent;
    return new Promise<KubeResponse>((resolve, reject) => {
      let settled = false;
      const fail = (err: KubeHttpError): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        req.signal?.removeEventListener('abort', onAbort);
        call.destroy();
        reject(err);
      };
      const onAbort = (): void => fail(new KubeHttpError('aborted', 'ABORTED'));
      const timer = setTimeout(
        () => fail(new KubeHttpError(`no answer within ${timeoutMs} ms`, 'ETIMEDOUT')),
        timeoutMs,
      );
      const call = httpsRequest(opts, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        const splitter = res.statusCode === 200 && req.onItem ? new ListItemSplitter(req.onItem) : undefined;
        res.on('data', (chunk: Buffer) => {
          if (settled) return;
          size += chunk.length;
          if (size > MAX_RESPONSE_BYTES) {
            fail(new KubeHttpError(`answer larger than ${MAX_RESPONSE_BYTES} bytes`, 'ETOOBIG'));
            return;
          }
          if (!splitter) {
            chunks.push(chunk);
            return;
          }
          try {
            splitter.write(chunk);
          } catch (err) {
            fail(new KubeHttpError(`cannot read the list: ${(err as Error).message}`, 'EBADLIST'));
          }
        });
        res.on('error', (err: NodeJS.ErrnoException) => fail(new KubeHttpError(err.message, err.code)));
        res.on('aborted', () => fail(new KubeHttpError('the answer was cut short', 'ECONNRESET')));
        res.on('end', () => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          req.signal?.removeEventListener('abort', onAbort);
          let body: unknown;
          if (splitter) {
            try {
              body = splitter.end();
            } catch (err) {
              reject(new KubeHttpError(`cannot read the list: ${(err as Error).message}`, 'EBADLIST'));
              return;
            }
          } else {
            const text = Buffer.concat(chunks).toString('utf8');
            try {
              body = text ? JSON.parse(text) : undefined;
            } catch {
              body = undefined;
            }
          }
          resolve({ status: res.statusCode ?? 0, body });
        });
      });
      call.on('error', (err: NodeJS.ErrnoException) => fail(new KubeHttpError(err.message, err.code)));
      if (req.signal?.aborted) {
        onAbort();
        return;
      }
      req.signal?.addEventListener('abort', onAbort, { once: true });
      call.end(payload);
    });
  };

  return { request, close: () => agent.destroy() };
}
