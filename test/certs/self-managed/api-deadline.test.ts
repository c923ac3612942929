import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, request, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { generateCertBundle, serviceHosts } from '../../../src/certs/generate.ts';
import { createLogger } from '../../../src/shared/log.ts';
import { CertApiTimeoutError, createCertApi, type CertApi } from '../../../src/certs/self-managed/api.ts';
import { startSelfManagedCerts, type SelfManagedCerts } from '../../../src/certs/self-managed/rotation.ts';
import { kubeconfigYaml } from '../../support/kube-apiserver/kubeconfig.ts';
import { TestApiServer, type KubeObject } from '../../support/kube-apiserver/index.ts';
import { waitFor } from '../../support/wait.ts';

const NS = 'crinj-deadline';
const SECRET = 'config-reloader-injector-certs';
const WEBHOOK_CONFIG = 'config-reloader-injector';
const HOSTS = serviceHosts('config-reloader-injector', NS);
const TIMEOUT_MS = 300;
/** Far above TIMEOUT_MS and far below undici's own 300 s headers timeout: a call still pending then is hanging. */
const HANG_MS = 4000;
const log = createLogger({ name: 'cert-api-deadline-test', level: 'silent' });

type Stall = 'no-answer' | 'mid-body';

/**
 * HTTPS on 127.0.0.1 in front of the test API server: it forwards each request, except those whose
 * `METHOD path` matches the stall rule, which it reads and then never answers (`no-answer`) or answers with the
 * headers and half the body, then nothing (`mid-body`): a request on a connection that went dead.
 */
class StallingProxy {
  url = '';
  readonly caCert: string;
  #rule: { match: RegExp; mode: Stall } | undefined;
  readonly #server: Server;
  readonly #held: ServerResponse[] = [];
  readonly #sockets = new Set<Socket>();
  stalled = 0;

  private constructor(certs: { cert: string; key: string; caCert: string }, upstream: TestApiServer) {
    this.caCert = certs.caCert;
    this.#server = createServer({ cert: certs.cert, key: certs.key }, (req, res) =>
      this.handle(req, res, upstream),
    );
    this.#server.on('connection', (s: Socket) => {
      this.#sockets.add(s);
      s.on('close', () => this.#sockets.delete(s));
    });
  }

  static async start(upstream: TestApiServer): Promise<StallingProxy> {
    const proxy = new StallingProxy(await generateCertBundle({ hosts: ['127.0.0.1'] }), upstream);
    await new Promise<void>((r) => proxy.#server.listen(0, '127.0.0.1', r));
    const address = proxy.#server.address();
    proxy.url = `https://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
    return proxy;
  }

  stall(match: RegExp, mode: Stall = 'no-answer'): void {
    this.#rule = { match, mode };
  }

  /** New requests are forwarded again; those already held stay unanswered. */
  resume(): void {
    this.#rule = undefined;
  }

  private handle(req: IncomingMessage, res: ServerResponse, upstream: TestApiServer): void {
    const rule = this.#rule;
    const stalls = rule !== undefined && rule.match.test(`${req.method} ${req.url}`);
    if (stalls && rule.mode === 'no-answer') {
      this.stalled++;
      req.resume();
      this.#held.push(res);
      return;
    }
    const { host: _host, ...headers } = req.headers;
    const out = request(
      `${upstream.url}${req.url}`,
      { method: req.method, headers, ca: upstream.caCert, agent: false },
      (answer) => {
        if (!stalls) {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
          return;
        }
        // mid-body: the status, the headers (with the full Content-Length) and half the body, then nothing.
        const chunks: Buffer[] = [];
        answer.on('data', (c: Buffer) => chunks.push(c));
        answer.on('end', () => {
          const body = Buffer.concat(chunks);
          this.stalled++;
          res.writeHead(answer.statusCode ?? 502, {
            'content-type': answer.headers['content-type'] ?? 'application/json',
            'content-length': String(body.length),
          });
          res.write(body.subarray(0, Math.floor(body.length / 2)));
          this.#held.push(res);
        });
      },
    );
    out.on('error', () => res.destroy());
    req.pipe(out);
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((r) => this.#server.close(() => r()));
  }
}

/** Resolves with the call's outcome, or rejects when it is still pending after HANG_MS. */
async function settlesWithin<T>(
  what: string,
  call: Promise<T>,
): Promise<{ value?: T; error?: unknown; ms: number }> {
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${what} still pending after ${HANG_MS} ms: no deadline`)),
      HANG_MS,
    );
  });
  try {
    const value = await Promise.race([call, hang]);
    return { value, ms: Date.now() - started };
  } catch (error) {
    if ((error as Error).message.endsWith('no deadline')) throw error;
    return { error, ms: Date.now() - started };
  } finally {
    clearTimeout(timer);
  }
}

describe('every certificate API call has a deadline (a stalled connection to the API server)', () => {
  let api: TestApiServer;
  let proxy: StallingProxy;
  let certApi: CertApi;
  const closing: Array<{ close(): void }> = [];

  const kubeConfig = (): KubeConfig => {
    const kc = new KubeConfig();
    kc.loadFromString(kubeconfigYaml({ server: proxy.url, caCert: proxy.caCert, token: api.adminToken }));
    return kc;
  };
  const unb64 = (s: string | undefined): string => Buffer.from(s ?? '', 'base64').toString('utf8');
  const secret = (): KubeObject & { data?: Record<string, string> } =>
    api.get('secrets', NS, SECRET) as KubeObject & { data?: Record<string, string> };

  before(async () => {
    api = await TestApiServer.start();
    api.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
    const mwc = parseAllDocuments(
      await readFile(
        new URL('../../../deploy/base/mutatingwebhookconfiguration.yaml', import.meta.url),
        'utf8',
      ),
    )[0]?.toJS() as KubeObject;
    api.create(mwc);
    proxy = await StallingProxy.start(api);
    certApi = createCertApi(kubeConfig(), {
      namespace: NS,
      secretName: SECRET,
      webhookConfigName: WEBHOOK_CONFIG,
      requestTimeoutMs: TIMEOUT_MS,
    });
  });

  after(async () => {
    for (const c of closing) c.close();
    await proxy.close();
    await api.close();
  });

  it('a start while every call hangs retries, and serves once the API server answers again', async () => {
    proxy.stall(/./);
    const starting = startSelfManagedCerts({
      api: certApi,
      hosts: HOSTS,
      replica: 'replica-a',
      log,
      syncIntervalMs: 100,
      propagationDelayMs: 0,
    });
    await waitFor(() => proxy.stalled > 0, 'a first request to hang');
    await new Promise((r) => setTimeout(r, 800));
    proxy.resume();
    const { value: certs, error } = await settlesWithin('the start', starting);
    assert.equal(error, undefined);
    assert.ok(certs);
    closing.push(certs);
    assert.equal(
      new X509Certificate(certs.material.cert).fingerprint256,
      new X509Certificate(unb64(secret().data?.['tls.crt'])).fingerprint256,
    );
  });

  const calls: Array<[string, RegExp, (a: CertApi) => Promise<unknown>]> = [
    ['readSecret', /^GET .*\/secrets\//, (a) => a.readSecret()],
    [
      'createSecret',
      /^POST .*\/secrets/,
      (a) => a.createSecret({ data: {}, annotations: {} }), // never reaches the API server
    ],
    [
      'replaceSecret',
      /^PUT .*\/secrets\//,
      async (a) =>
        a.replaceSecret((await a.readSecret()) ?? {}, { data: secret().data ?? {}, annotations: {} }),
    ],
    [
      'patchSecretAnnotations',
      /^PATCH .*\/secrets\//,
      (a) => a.patchSecretAnnotations({ 'example.com/x': null }),
    ],
    ['readWebhookConfig', /^GET .*\/mutatingwebhookconfigurations\//, (a) => a.readWebhookConfig()],
    [
      'writeCaBundle',
      /^PATCH .*\/mutatingwebhookconfigurations\//,
      async (a) => a.writeCaBundle((await a.readWebhookConfig())!, 'eA==', 1),
    ],
  ];
  for (const [name, match, call] of calls) {
    it(`${name}: a request that is never answered fails after the deadline, naming the call`, async () => {
      proxy.stall(match);
      try {
        const { error, ms } = await settlesWithin(name, call(certApi));
        assert.ok(error instanceof CertApiTimeoutError, `a CertApiTimeoutError, got ${String(error)}`);
        assert.match(error.message, new RegExp(`no answer from the API server within ${TIMEOUT_MS} ms$`));
        assert.ok(ms >= TIMEOUT_MS - 20 && ms < TIMEOUT_MS + 1500, `failed after ${ms} ms`);
      } finally {
        proxy.resume();
      }
    });
  }

  it('readSecret: an answer whose body stalls half-way fails after the deadline too', async () => {
    proxy.stall(/^GET .*\/secrets\//, 'mid-body');
    try {
      const { error } = await settlesWithin('readSecret', certApi.readSecret());
      assert.ok(error instanceof CertApiTimeoutError, `a CertApiTimeoutError, got ${String(error)}`);
    } finally {
      proxy.resume();
    }
  });

  it('a sync that hangs fails and does not block the loop: the next sync after the stall serves a renewed certificate', async () => {
    const certs = (closing[0] as SelfManagedCerts | undefined)!;
    assert.ok(certs, 'the replica of the first test');
    proxy.stall(/./);
    const { error } = await settlesWithin('sync()', certs.sync());
    assert.ok(error instanceof CertApiTimeoutError, `a CertApiTimeoutError, got ${String(error)}`);
    // Meanwhile the serving certificate becomes due (one minute left of six): the next syncs renew it.
    const s = secret();
    const nearly = await generateCertBundle({
      hosts: HOSTS,
      ca: { cert: unb64(s.data?.['ca.crt']), key: unb64(s.data?.['ca.key']) },
      validDays: 6 / 1440,
    });
    api.update({
      ...s,
      data: {
        ...s.data,
        'tls.crt': Buffer.from(nearly.cert).toString('base64'),
        'tls.key': Buffer.from(nearly.key).toString('base64'),
      },
    });
    await new Promise((r) => setTimeout(r, 500));
    proxy.resume();
    const renewed = await waitFor(() => {
      const served = new X509Certificate(certs.material.cert);
      return new Date(served.validTo).getTime() - Date.now() > 86_400_000 &&
        served.fingerprint256 === new X509Certificate(unb64(secret().data?.['tls.crt'])).fingerprint256 &&
        served.fingerprint256 !== new X509Certificate(nearly.cert).fingerprint256
        ? served
        : undefined;
    }, 'the background loop to serve a renewed certificate');
    assert.ok(renewed);
    await settlesWithin('a sync after the stall', certs.sync());
  });
});
