import { request } from 'node:https';
import { isIP } from 'node:net';

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Maps a Service to where it is reached, as the real server's service resolver does (a ClusterIP there). */
export type ServiceResolver = (
  namespace: string,
  name: string,
  port: number,
) => { host: string; port: number } | undefined;

/** The answer of a webhook, checked as the real dispatcher checks it. */
export interface WebhookResponse {
  allowed: boolean;
  status?: { code?: number; message?: string; reason?: string };
  patch?: unknown[];
  warnings: string[];
}

/** A failure to get a usable answer: handled per failurePolicy. */
export class WebhookCallError extends Error {}

const MAX_RESPONSE = 3 * 1024 * 1024;

/**
 * POSTs the AdmissionReview to the webhook named by `clientConfig` over HTTPS, trusting only `caBundle` and
 * checking the certificate for the Service's `NAME.NAMESPACE.svc` name (or the URL's host), with the timeout
 * as a query parameter and a deadline, like the real server.
 */
export async function callWebhook(
  clientConfig: unknown,
  timeoutSeconds: number,
  review: Obj,
  resolver: ServiceResolver | undefined,
): Promise<WebhookResponse> {
  const cc = isObj(clientConfig) ? clientConfig : {};
  let url: URL;
  let connect: { host: string; port: number };
  if (typeof cc.url === 'string') {
    url = new URL(cc.url);
    connect = { host: url.hostname.replace(/^\[(.*)\]$/, '$1'), port: Number(url.port || 443) };
  } else if (isObj(cc.service)) {
    const svc = cc.service;
    const port = typeof svc.port === 'number' ? svc.port : 443;
    const path = typeof svc.path === 'string' ? svc.path : '/';
    url = new URL(`https://${String(svc.name)}.${String(svc.namespace)}.svc:${port}${path}`);
    const target = resolver?.(String(svc.namespace), String(svc.name), port);
    if (!target)
      throw new WebhookCallError(
        `failed to call webhook: service "${String(svc.namespace)}/${String(svc.name)}" cannot be resolved (the test API server has no serviceResolver for it)`,
      );
    connect = target;
  } else throw new WebhookCallError('failed to call webhook: clientConfig has neither url nor service');
  url.searchParams.set('timeout', `${timeoutSeconds}s`);
  // Go keeps an explicit :443 in the URL it prints; WHATWG URL drops the default port.
  const shown =
    isObj(cc.service) && url.port === '' ? url.href.replace(url.host, `${url.host}:443`) : url.href;
  const postUrl = `Post "${shown}"`;
  const ca =
    typeof cc.caBundle === 'string' && cc.caBundle !== ''
      ? Buffer.from(cc.caBundle, 'base64').toString('utf8')
      : undefined;
  const body = JSON.stringify(review);

  const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
    const req = request(
      {
        host: connect.host,
        port: connect.port,
        path: url.pathname + url.search,
        method: 'POST',
        // SNI carries names only; the certificate is still checked against an IP address.
        ...(isIP(url.hostname.replace(/^\[(.*)\]$/, '$1')) ? {} : { servername: url.hostname }),
        ...(ca !== undefined ? { ca } : {}),
        agent: false,
        headers: {
          'Content-Type': 'application/json',
          Accept: 'application/json, */*',
          'Content-Length': Buffer.byteLength(body),
          'User-Agent': 'kube-apiserver-admission',
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_RESPONSE) req.destroy(new Error('response body too large'));
          else chunks.push(c);
        });
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }),
        );
        res.on('error', reject);
      },
    );
    const deadline = setTimeout(
      () => req.destroy(new Error('context deadline exceeded')),
      timeoutSeconds * 1000,
    );
    req.on('close', () => clearTimeout(deadline));
    req.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(deadline);
      reject(
        new Error(
          err.code === 'ECONNREFUSED'
            ? `dial tcp ${connect.host}:${connect.port}: connect: connection refused`
            : err.message,
        ),
      );
    });
    req.end(body);
  }).catch((err: unknown) => {
    throw new WebhookCallError(`failed to call webhook: ${postUrl}: ${(err as Error).message}`);
  });

  if (status < 200 || status >= 300)
    throw new WebhookCallError(
      `failed to call webhook: an error on the server ("${text.slice(0, 200)}") has prevented the request from succeeding (HTTP ${status})`,
    );
  return decodeResponse(text, (review.request as Obj).uid as string);
}

function invalid(why: string): WebhookCallError {
  return new WebhookCallError(`received invalid webhook response: ${why}`);
}

function decodeResponse(text: string, uid: string): WebhookResponse {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw invalid('the body is not JSON');
  }
  if (!isObj(parsed)) throw invalid('the body is not a JSON object');
  if (parsed.apiVersion !== 'admission.k8s.io/v1' || parsed.kind !== 'AdmissionReview')
    throw invalid(
      `expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got ${String(parsed.apiVersion)}, Kind=${String(parsed.kind)}`,
    );
  const r = parsed.response;
  if (!isObj(r)) throw invalid('response was absent');
  if (r.uid !== uid) throw invalid(`expected response.uid="${uid}", got "${String(r.uid)}"`);
  const result: WebhookResponse = {
    allowed: r.allowed === true,
    warnings: Array.isArray(r.warnings) ? r.warnings.filter((w) => typeof w === 'string') : [],
  };
  if (isObj(r.status)) result.status = r.status as WebhookResponse['status'];
  if (r.patch !== undefined && r.patch !== null && r.patch !== '') {
    if (r.patchType !== 'JSONPatch')
      throw invalid(`expected patchType JSONPatch, got ${JSON.stringify(r.patchType)}`);
    let ops: unknown;
    try {
      ops = JSON.parse(Buffer.from(String(r.patch), 'base64').toString('utf8'));
    } catch {
      throw new WebhookCallError('JSON patch could not be decoded');
    }
    if (!Array.isArray(ops)) throw new WebhookCallError('JSON patch is not an array');
    result.patch = ops;
  } else if (r.patchType !== undefined && r.patchType !== null && r.patchType !== '') {
    throw invalid('webhook returned patchType without patch');
  }
  return result;
}
