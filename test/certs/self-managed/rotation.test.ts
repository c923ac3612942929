import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'node:https';
import { connect } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { KubeConfig, Watch } from '@kubernetes/client-node';
import { generate } from 'selfsigned';
import { parseAllDocuments } from 'yaml';
import { generateCertBundle, hostProblem, serviceHosts } from '../../../src/certs/generate.ts';
import { DEFAULT_INJECTOR_CONFIG } from '../../../src/injection/config.ts';
import { UsageError } from '../../../src/shared/cli.ts';
import { createLogger } from '../../../src/shared/log.ts';
import { createCertApi } from '../../../src/certs/self-managed/api.ts';
import {
  selfManagedHosts,
  selfManagedSettingsFromFlags,
} from '../../../src/certs/self-managed/flags.ts';
import {
  ROTATION_ANNOTATIONS,
  certFingerprint,
  SERVED_PREFIX,
  splitPemCerts,
} from '../../../src/certs/self-managed/state.ts';
import { startSelfManagedCerts, type SelfManagedCerts } from '../../../src/certs/self-managed/rotation.ts';
import { startWebhookServer, type RunningServer } from '../../../src/webhook/server.ts';
import { runCli, startCli, type CliChild } from '../../support/cli.ts';
import { httpsRequest } from '../../support/https.ts';
import { kubeconfigYaml } from '../../support/kube-apiserver/kubeconfig.ts';
import { TestApiServer, type Grant, type KubeObject } from '../../support/kube-apiserver/index.ts';

const NS = 'crinj';
const SECRET = 'config-reloader-injector-certs';
const WEBHOOK_CONFIG = 'config-reloader-injector';
const HOSTS = serviceHosts('config-reloader-injector', NS);
const SERVER_NAME = `config-reloader-injector.${NS}.svc`;
const log = createLogger({ name: 'self-managed-certs-test', level: 'silent' });
const PROPAGATION_DELAY_MS = 300;
const DEPLOY = new URL('../../../deploy/', import.meta.url);

const ann = (o: KubeObject | undefined): Record<string, string> =>
  (o?.metadata.annotations ?? {}) as Record<string, string>;
const b64 = (s: string): string => Buffer.from(s).toString('base64');
const unb64 = (s: string | undefined): string => Buffer.from(s ?? '', 'base64').toString('utf8');

/** The shipped Role and ClusterRole of overlays/self-managed, as the test API server's grants. */
async function shippedGrants(): Promise<Grant[]> {
  const docs = parseAllDocuments(
    await readFile(new URL('overlays/self-managed/rbac.yaml', DEPLOY), 'utf8'),
  ).map((d) => d.toJS() as KubeObject);
  const grants: Grant[] = [];
  for (const doc of docs.filter((d) => d.kind === 'Role' || d.kind === 'ClusterRole')) {
    const rules = (
      doc as unknown as {
        rules: Array<{ apiGroups: string[]; resources: string[]; resourceNames?: string[]; verbs: string[] }>;
      }
    ).rules;
    for (const rule of rules) {
      for (const resource of rule.resources) {
        const grant: Grant = { verbs: rule.verbs, resource, group: rule.apiGroups[0] ?? '' };
        if (doc.kind === 'Role') grant.namespace = NS;
        if (rule.resourceNames) grant.names = rule.resourceNames;
        grants.push(grant);
      }
    }
  }
  return grants;
}

interface Replica {
  name: string;
  certs: SelfManagedCerts;
  server: RunningServer;
}

/** The certificate a fresh TLS connection gets, verified against `caPem` as the API server would. */
function servedCertificate(server: RunningServer, caPem: string): Promise<X509Certificate> {
  const { port } = new URL(server.url);
  return new Promise((resolve, reject) => {
    const socket = connect(
      { host: '127.0.0.1', port: Number(port), servername: SERVER_NAME, ca: caPem },
      () => {
        const raw = socket.getPeerX509Certificate();
        socket.destroy();
        if (raw) resolve(raw);
        else reject(new Error('no peer certificate'));
      },
    );
    socket.on('error', reject);
  });
}

/** POST over HTTPS to 127.0.0.1, verifying the certificate for `servername` (the Service name the API server uses). */
function postAs(
  url: string,
  path: string,
  servername: string,
  ca: string,
  body: string,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${url}${path}`,
      { method: 'POST', servername, ca, agent: false, headers: { 'content-type': 'application/json' } },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** GET over HTTPS to 127.0.0.1, verifying the certificate for `servername`; the body. */
function getAs(url: string, servername: string, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(url, { servername, ca, agent: false }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve(text));
    });
    req.on('error', reject);
    req.end();
  });
}

async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${lastError ? `: ${(lastError as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('self-managed certificates (real @kubernetes/client-node against the test API server)', () => {
  let api: TestApiServer;
  let token: string;
  const replicas: Replica[] = [];

  const secret = (): KubeObject & { data?: Record<string, string> } => {
    const s = api.get('secrets', NS, SECRET);
    assert.ok(s, 'the certificate Secret exists');
    return s as KubeObject & { data?: Record<string, string> };
  };
  const webhookCaBundles = (): string[] =>
    (
      api.get('mutatingwebhookconfigurations', undefined, WEBHOOK_CONFIG) as unknown as {
        webhooks: Array<{ clientConfig: { caBundle?: string } }>;
      }
    ).webhooks.map((w) => unb64(w.clientConfig.caBundle));
  const fingerprints = (pem: string): string[] => splitPemCerts(pem).map(certFingerprint).sort();
  const secretRequests = (method: string): number =>
    api.requests.filter((r) => r.method === method && r.path.startsWith(`/api/v1/namespaces/${NS}/secrets`))
      .length;

  const startReplica = async (name: string): Promise<Replica> => {
    const kc = new KubeConfig();
    kc.loadFromString(kubeconfigYaml({ server: api.url, caCert: api.caCert, token }));
    const certs = await startSelfManagedCerts({
      api: createCertApi(kc, { namespace: NS, secretName: SECRET, webhookConfigName: WEBHOOK_CONFIG }),
      hosts: HOSTS,
      replica: name,
      log,
      syncIntervalMs: 100,
      propagationDelayMs: PROPAGATION_DELAY_MS,
      ackRefreshMs: 60_000,
    });
    const server = await startWebhookServer({
      host: '127.0.0.1',
      port: 0,
      tls: certs,
      config: DEFAULT_INJECTOR_CONFIG,
      log,
    });
    const replica = { name, certs, server };
    replicas.push(replica);
    return replica;
  };

  /** Every replica serves the Secret's tls.crt, and a client trusting only the webhook configuration's caBundle accepts it. */
  const allServeTheSecret = async (): Promise<string | undefined> => {
    const wanted = new X509Certificate(unb64(secret().data?.['tls.crt'])).fingerprint256;
    const bundles = webhookCaBundles();
    for (const r of replicas) {
      for (const bundle of bundles) {
        if ((await servedCertificate(r.server, bundle)).fingerprint256 !== wanted) return undefined;
      }
    }
    return wanted;
  };

  before(async () => {
    api = await TestApiServer.start();
    api.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
    const mwc = parseAllDocuments(
      await readFile(new URL('base/mutatingwebhookconfiguration.yaml', DEPLOY), 'utf8'),
    )[0]?.toJS() as KubeObject;
    api.create(mwc);
    token = api.addServiceAccount(NS, 'config-reloader-injector', await shippedGrants());
  });

  after(async () => {
    for (const r of replicas) {
      r.certs.close();
      await r.server.close();
    }
    await api.close();
  });

  it('three replicas started at once create exactly one Secret and agree on one CA', async () => {
    await Promise.all(['replica-a', 'replica-b', 'replica-c'].map(startReplica));
    assert.equal(
      api.requests.filter(
        (r) => r.method === 'POST' && r.path === `/api/v1/namespaces/${NS}/secrets` && r.status === 201,
      ).length,
      1,
    );
    assert.equal(api.list('secrets', NS).filter((s) => s.metadata.name === SECRET).length, 1);
    const s = secret();
    assert.equal((s as { type?: string }).type, 'kubernetes.io/tls');
    const ca = unb64(s.data?.['ca.crt']);
    const bundle = unb64(s.data?.['ca-bundle.crt']);
    assert.deepEqual(fingerprints(bundle), fingerprints(ca), 'one CA in the bundle');
    for (const r of replicas) {
      assert.deepEqual(fingerprints(r.certs.caBundle), fingerprints(ca), `${r.name} trusts the Secret's CA`);
      assert.equal(
        certFingerprint(r.certs.material.cert),
        certFingerprint(unb64(s.data?.['tls.crt'])),
        `${r.name} serves the Secret's certificate`,
      );
    }
    const leaf = new X509Certificate(unb64(s.data?.['tls.crt']));
    for (const host of HOSTS) assert.ok(leaf.checkHost(host, { subject: 'never' }), `SAN ${host}`);
    assert.equal(leaf.publicKey.asymmetricKeyType, 'ec');
  });

  it('writes the CA into the caBundle of every webhook entry, and each replica serves a certificate it verifies', async () => {
    const bundles = webhookCaBundles();
    assert.equal(bundles.length, 2);
    for (const b of bundles)
      assert.deepEqual(fingerprints(b), fingerprints(unb64(secret().data?.['ca.crt'])));
    await waitFor('every replica to serve the Secret', allServeTheSecret);
    const annotations = ann(secret());
    for (const r of replicas)
      assert.ok(annotations[`${SERVED_PREFIX}${r.name}`], `${r.name} said which certificate it serves`);
  });

  it('the caBundle is written once, as the Secret holds it: a replica that read the Secret finds nothing to change', async () => {
    const patches = api.requests.filter(
      (r) =>
        r.method === 'PATCH' &&
        r.path.endsWith(`/mutatingwebhookconfigurations/${WEBHOOK_CONFIG}`) &&
        r.status === 200,
    );
    assert.equal(patches.length, 1, 'one caBundle write for one new CA');
    const stored = secret().data?.['ca-bundle.crt'];
    const mwc = api.get('mutatingwebhookconfigurations', undefined, WEBHOOK_CONFIG) as unknown as {
      webhooks: Array<{ clientConfig: { caBundle?: string } }>;
    };
    for (const w of mwc.webhooks) assert.equal(w.clientConfig.caBundle, stored, 'byte for byte');
    await Promise.all(replicas.map((r) => r.certs.sync()));
    assert.equal(
      api.requests.filter(
        (r) => r.method === 'PATCH' && r.path.endsWith(`/mutatingwebhookconfigurations/${WEBHOOK_CONFIG}`),
      ).length,
      patches.length,
      'another sync of every replica writes nothing',
    );
  });

  it('a replica that starts later reads the existing Secret and creates or replaces nothing', async () => {
    const posts = secretRequests('POST');
    const puts = secretRequests('PUT');
    const webhookPatches = (): number =>
      api.requests.filter((r) => r.method === 'PATCH' && r.path.includes('mutatingwebhookconfigurations'))
        .length;
    const patches = webhookPatches();
    const late = await startReplica('replica-late');
    assert.equal(secretRequests('POST'), posts);
    assert.equal(secretRequests('PUT'), puts);
    assert.equal(webhookPatches(), patches, 'nor the caBundle');
    assert.equal(
      certFingerprint(late.certs.material.cert),
      certFingerprint(unb64(secret().data?.['tls.crt'])),
    );
  });

  it('renews a serving certificate near expiry with the same CA, and every replica swaps to it live', async () => {
    const s = secret();
    const caBefore = unb64(s.data?.['ca.crt']);
    const caBundleBefore = webhookCaBundles();
    // Six minutes of life, one left: due for renewal (less than a third left).
    const nearly = await generateCertBundle({
      hosts: HOSTS,
      ca: { cert: caBefore, key: unb64(s.data?.['ca.key']) },
      validDays: 6 / 1440,
    });
    const nearlyFingerprint = new X509Certificate(nearly.cert).fingerprint256;
    api.update({ ...s, data: { ...s.data, 'tls.crt': b64(nearly.cert), 'tls.key': b64(nearly.key) } });

    const renewed = await waitFor('a renewed certificate served by every replica', async () => {
      const fp = await allServeTheSecret();
      return fp !== undefined && fp !== nearlyFingerprint ? fp : undefined;
    });
    const leaf = new X509Certificate(unb64(secret().data?.['tls.crt']));
    assert.equal(leaf.fingerprint256, renewed);
    assert.ok(new Date(leaf.validTo).getTime() - Date.now() > 300 * 86_400_000, 'a full lifetime again');
    assert.ok(leaf.checkIssued(new X509Certificate(caBefore)), 'signed by the same CA');
    const metrics = await getAs(`${replicas[0]?.server.url}/metrics`, SERVER_NAME, caBefore);
    assert.match(
      metrics,
      new RegExp(
        `^config_reloader_webhook_certificate_expiry_timestamp_seconds ${new Date(leaf.validTo).getTime() / 1000}$`,
        'm',
      ),
      'the expiry gauge shows the renewed certificate',
    );
    assert.equal(certFingerprint(unb64(secret().data?.['ca.crt'])), certFingerprint(caBefore));
    assert.deepEqual(
      webhookCaBundles().map(fingerprints),
      caBundleBefore.map(fingerprints),
      'caBundle unchanged',
    );
  });

  it('rotates a CA near expiry: the caBundle holds both CAs until every replica serves a certificate of the new one', async () => {
    // A CA at the end of its life: 100 days old, 10 left.
    const day = 86_400_000;
    const made = await generate([{ name: 'commonName', value: 'old webhook CA' }], {
      keyType: 'ec',
      curve: 'P-256',
      algorithm: 'sha256',
      notBeforeDate: new Date(Date.now() - 100 * day),
      notAfterDate: new Date(Date.now() + 10 * day),
      extensions: [
        { name: 'basicConstraints', cA: true, critical: true },
        { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
      ],
    });
    const oldCa = { cert: made.cert, key: made.private };
    const oldFp = certFingerprint(oldCa.cert);
    const serving = await generateCertBundle({ hosts: HOSTS, ca: oldCa, validDays: 5 });

    // Record every change of the Secret and of the webhook configuration, in resourceVersion order.
    const kc = new KubeConfig();
    kc.loadFromString(kubeconfigYaml({ server: api.url, caCert: api.caCert, token: api.adminToken }));
    const events: Array<{ rv: number; what: 'secret' | 'webhook'; obj: KubeObject }> = [];
    const record = (what: 'secret' | 'webhook') => (_type: string, obj: KubeObject) =>
      events.push({ rv: Number(obj.metadata.resourceVersion), what, obj });
    const from = api.resourceVersion;
    const watches = await Promise.all([
      new Watch(kc).watch(
        `/api/v1/namespaces/${NS}/secrets`,
        { resourceVersion: from },
        record('secret'),
        () => {},
      ),
      new Watch(kc).watch(
        '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations',
        { resourceVersion: from },
        record('webhook'),
        () => {},
      ),
    ]);
    try {
      const s = secret();
      const generation = Number(ann(s)[ROTATION_ANNOTATIONS.generation]) + 1;
      api.update({
        ...s,
        metadata: {
          ...s.metadata,
          annotations: { ...ann(s), [ROTATION_ANNOTATIONS.generation]: String(generation) },
        },
        data: {
          'ca.crt': b64(oldCa.cert),
          'ca.key': b64(oldCa.key),
          'tls.crt': b64(serving.cert),
          'tls.key': b64(serving.key),
          'ca-bundle.crt': b64(oldCa.cert),
        },
      });

      const newFp = await waitFor('the rotation to finish', () => {
        const s2 = secret();
        const ca = certFingerprint(unb64(s2.data?.['ca.crt']));
        const done = ca !== oldFp && ann(s2)[ROTATION_ANNOTATIONS.rotation] === undefined;
        return done && webhookCaBundles().every((b) => fingerprints(b).join() === ca) ? ca : undefined;
      });
      await waitFor('every replica to serve a certificate of the new CA', allServeTheSecret);
      await waitFor(
        'the watches to catch up',
        () => (events.at(-1)?.rv ?? 0) >= Number(api.resourceVersion) || undefined,
      );

      const bundleOf = (e: { obj: KubeObject }): string =>
        [
          ...new Set(
            (e.obj as unknown as { webhooks: Array<{ clientConfig: { caBundle?: string } }> }).webhooks.map(
              (w) => fingerprints(unb64(w.clientConfig.caBundle)).join(),
            ),
          ),
        ].join('|');
      const both = [oldFp, newFp].sort().join();
      const trustBoth = events.find((e) => e.what === 'webhook' && bundleOf(e) === both);
      assert.ok(trustBoth, 'the caBundle held the old and the new CA');
      const serveNew = events.find(
        (e) => e.what === 'secret' && ann(e.obj)[ROTATION_ANNOTATIONS.rotation] === 'serve-new',
      );
      assert.ok(serveNew, 'the Secret went through the serve-new phase');
      assert.ok(
        trustBoth.rv < serveNew.rv,
        'the API server trusted the new CA before any replica was given a certificate of it',
      );
      const trustPhase = events.find(
        (e) => e.what === 'secret' && ann(e.obj)[ROTATION_ANNOTATIONS.rotation] === 'trust-new',
      );
      const since = (e: { obj: KubeObject } | undefined): number =>
        Date.parse(ann(e?.obj)[ROTATION_ANNOTATIONS.rotationSince] ?? '');
      assert.ok(
        since(serveNew) - since(trustPhase) >= PROPAGATION_DELAY_MS,
        'the API servers were given the propagation delay to load the new caBundle',
      );
      const trustNew = events.find(
        (e) => e.what === 'webhook' && e.rv > trustBoth.rv && bundleOf(e) === newFp,
      );
      assert.ok(trustNew, 'the old CA left the caBundle at the end');
      const secretThen = events.filter((e) => e.what === 'secret' && e.rv < trustNew.rv).at(-1)?.obj as {
        data?: Record<string, string>;
      } & KubeObject;
      const servedThen = certFingerprint(unb64(secretThen.data?.['tls.crt']));
      const acks = Object.entries(ann(secretThen)).filter(([k]) => k.startsWith(SERVED_PREFIX));
      assert.equal(acks.length, replicas.length);
      for (const [k, v] of acks)
        assert.equal(
          v.split(' ')[0],
          servedThen,
          `${k} served the new certificate before the old CA was dropped`,
        );
      for (const e of events.filter((x) => x.what === 'webhook' && x.rv > trustBoth.rv && x.rv < trustNew.rv))
        assert.equal(bundleOf(e), both, 'no bundle in between drops a CA');
    } finally {
      for (const w of watches) w.abort();
    }
  });

  /**
   * Everything a reissue does, as the API server and a client see it: every change of the Secret and of the
   * webhook configuration (from watches, with the time each arrived) and, every 20 ms, the certificate each
   * replica presents to a new connection (with the time the connection was opened).
   */
  const observe = async (): Promise<{
    events: Array<{ rv: number; at: number; what: 'secret' | 'webhook'; obj: KubeObject }>;
    samples: Array<{ at: number; replica: string; leaf: X509Certificate }>;
    stop(): Promise<void>;
  }> => {
    const kc = new KubeConfig();
    kc.loadFromString(kubeconfigYaml({ server: api.url, caCert: api.caCert, token: api.adminToken }));
    const events: Array<{ rv: number; at: number; what: 'secret' | 'webhook'; obj: KubeObject }> = [];
    const record = (what: 'secret' | 'webhook') => (_type: string, obj: KubeObject) =>
      events.push({ rv: Number(obj.metadata.resourceVersion), at: Date.now(), what, obj });
    const from = api.resourceVersion;
    const watches = await Promise.all([
      new Watch(kc).watch(
        `/api/v1/namespaces/${NS}/secrets`,
        { resourceVersion: from },
        record('secret'),
        () => {},
      ),
      new Watch(kc).watch(
        '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations',
        { resourceVersion: from },
        record('webhook'),
        () => {},
      ),
    ]);
    const samples: Array<{ at: number; replica: string; leaf: X509Certificate }> = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        await Promise.all(
          replicas.map(async (r) => {
            const at = Date.now();
            const leaf = await new Promise<X509Certificate | undefined>((resolve) => {
              const { port } = new URL(r.server.url);
              const socket = connect(
                { host: '127.0.0.1', port: Number(port), servername: SERVER_NAME, rejectUnauthorized: false },
                () => {
                  resolve(socket.getPeerX509Certificate());
                  socket.destroy();
                },
              );
              socket.on('error', () => resolve(undefined));
            });
            if (leaf) samples.push({ at, replica: r.name, leaf });
          }),
        );
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    return {
      events,
      samples,
      stop: async () => {
        sampling = false;
        await sampler;
        await waitFor('the watches to catch up', () =>
          Math.max(0, ...events.map((e) => e.rv)) >= Number(api.resourceVersion) ? true : undefined,
        );
        for (const w of watches) w.abort();
      },
    };
  };

  /**
   * The order a CA change must keep, checked on what observe() saw while the CA `oldCa` was replaced by a
   * reissue: the caBundle gains the new CA next to the old one before any replica serves a certificate of the new
   * CA, and loses the old CA only after every replica serves a certificate of the new one.
   */
  /**
   * `startedDuring`: replicas started while the reissue ran. They never serve the old CA, so the rotation need not
   * wait for them, and whether their acknowledgement is in the Secret before the old CA leaves is a race.
   */
  const checkReissueOrder = async (
    seen: Awaited<ReturnType<typeof observe>>,
    oldCa: string,
    startedDuring: string[] = [],
  ): Promise<string> => {
    const oldFp = certFingerprint(oldCa);
    const newCa = unb64(secret().data?.['ca.crt']);
    const newFp = certFingerprint(newCa);
    assert.notEqual(newFp, oldFp, 'a new CA');
    const webhookEvents = seen.events.filter((e) => e.what === 'webhook');
    const cas = (e: { obj: KubeObject }): Set<string> =>
      new Set(
        (e.obj as unknown as { webhooks: Array<{ clientConfig: { caBundle?: string } }> }).webhooks.flatMap(
          (w) => splitPemCerts(unb64(w.clientConfig.caBundle)).map(certFingerprint),
        ),
      );
    const changed = webhookEvents.filter((e) => cas(e).has(newFp) || !cas(e).has(oldFp));
    assert.ok(changed.length > 0, 'the caBundle changed');
    assert.deepEqual(
      [...cas(changed[0]!)].sort(),
      [oldFp, newFp].sort(),
      'the first caBundle written after the reissue holds the old CA next to the new one',
    );
    const trusted = changed[0]!;
    const dropped = webhookEvents.find((e) => e.rv > trusted.rv && !cas(e).has(oldFp));
    assert.ok(dropped, 'the old CA left the caBundle in the end');
    for (const e of webhookEvents.filter((x) => x.rv > trusted.rv && x.rv < dropped.rv))
      assert.ok(cas(e).has(oldFp) && cas(e).has(newFp), 'no caBundle in between drops either CA');
    assert.deepEqual([...cas(dropped)], [newFp]);

    const ofNewCa = seen.samples.filter((x) => x.leaf.checkIssued(new X509Certificate(newCa)));
    assert.ok(ofNewCa.length > 0, 'the replicas were seen serving a certificate of the new CA');
    const firstNew = ofNewCa.reduce((m, x) => (x.at < m.at ? x : m));
    assert.ok(
      firstNew.at > trusted.at,
      `${firstNew.replica} served a certificate of the new CA ${trusted.at - firstNew.at} ms before the caBundle held it`,
    );
    for (const x of seen.samples.filter((y) => y.at > dropped.at))
      assert.ok(
        x.leaf.checkIssued(new X509Certificate(newCa)),
        `${x.replica} still served a certificate of the old CA when the old CA left the caBundle`,
      );
    // The Secret as it was when the old CA was dropped: every replica that was running before the reissue had said
    // it serves the new certificate (and any other acknowledgement there names it too).
    const secretThen = seen.events.filter((e) => e.what === 'secret' && e.rv < dropped.rv).at(-1)
      ?.obj as KubeObject & {
      data?: Record<string, string>;
    };
    const servedThen = certFingerprint(unb64(secretThen.data?.['tls.crt']));
    const acks = Object.entries(ann(secretThen)).filter(([k]) => k.startsWith(SERVED_PREFIX));
    const acked = acks.map(([k]) => k.slice(SERVED_PREFIX.length));
    assert.deepEqual(
      replicas
        .map((r) => r.name)
        .filter((name) => !startedDuring.includes(name) || acked.includes(name))
        .sort(),
      acked.sort(),
      'every replica running before the reissue had said what it serves',
    );
    for (const [k, v] of acks) assert.equal(v.split(' ')[0], servedThen, `${k} served the new certificate`);
    // The Secret went through trust-reissued for at least the propagation delay.
    const phases = seen.events.filter((e) => e.what === 'secret').map((e) => ann(e.obj));
    const reissued = phases.find((a) => a[ROTATION_ANNOTATIONS.rotation] === 'trust-reissued');
    const serveNew = phases.find((a) => a[ROTATION_ANNOTATIONS.rotation] === 'serve-new');
    assert.ok(reissued && serveNew, 'phases trust-reissued, then serve-new');
    assert.ok(
      Date.parse(serveNew[ROTATION_ANNOTATIONS.rotationSince] ?? '') -
        Date.parse(reissued[ROTATION_ANNOTATIONS.rotationSince] ?? '') >=
        PROPAGATION_DELAY_MS,
    );
    return newFp;
  };

  it('a deleted Secret is made again by one replica; the caBundle holds both CAs before the new one is served, and drops the old one after every replica moved', async () => {
    const caBefore = unb64(secret().data?.['ca.crt']);
    const created = api.requests.filter(
      (r) => r.method === 'POST' && r.path === `/api/v1/namespaces/${NS}/secrets` && r.status === 201,
    ).length;
    const seen = await observe();
    try {
      api.delete('secrets', NS, SECRET);
      await waitFor('a new Secret served everywhere, with only its CA in the caBundle', async () => {
        const s = api.get('secrets', NS, SECRET) as
          (KubeObject & { data?: Record<string, string> }) | undefined;
        if (!s || certFingerprint(unb64(s.data?.['ca.crt'])) === certFingerprint(caBefore)) return undefined;
        if (webhookCaBundles().some((b) => splitPemCerts(b).length !== 1)) return undefined;
        return allServeTheSecret();
      });
    } finally {
      await seen.stop();
    }
    await checkReissueOrder(seen, caBefore);
    assert.equal(
      api.requests.filter(
        (r) => r.method === 'POST' && r.path === `/api/v1/namespaces/${NS}/secrets` && r.status === 201,
      ).length,
      created + 1,
    );
  });

  it('an unusable Secret is reissued in the same order, and a replica that starts meanwhile waits to serve until the new CA is trusted', async () => {
    const s = secret();
    const caBefore = unb64(s.data?.['ca.crt']);
    const other = await generateCertBundle({ hosts: HOSTS });
    const seen = await observe();
    let late: Replica | undefined;
    try {
      // A key that does not belong to the certificate: the Secret cannot be used and is reissued.
      api.update({ ...s, data: { ...s.data, 'tls.key': b64(other.key) } });
      await waitFor('the reissue to start', () =>
        certFingerprint(unb64(secret().data?.['ca.crt'])) !== certFingerprint(caBefore) ? true : undefined,
      );
      assert.equal(
        ann(secret())[ROTATION_ANNOTATIONS.rotation],
        'trust-reissued',
        'the reissued Secret waits for the caBundle before its certificate is served',
      );
      const started = startReplica('replica-during-reissue');
      late = await started;
      const phase = ann(secret())[ROTATION_ANNOTATIONS.rotation];
      assert.notEqual(phase, 'trust-reissued', 'it started serving only once the phase moved on');
      assert.ok(
        new X509Certificate(late.certs.material.cert).checkIssued(
          new X509Certificate(unb64(secret().data?.['ca.crt'])),
        ),
        'and serves a certificate of the new CA',
      );
      await waitFor('the reissue to finish', async () => {
        if (ann(secret())[ROTATION_ANNOTATIONS.rotation] !== undefined) return undefined;
        if (webhookCaBundles().some((b) => splitPemCerts(b).length !== 1)) return undefined;
        return allServeTheSecret();
      });
    } finally {
      await seen.stop();
    }
    await checkReissueOrder(seen, caBefore, ['replica-during-reissue']);
  });

  it('an expired CA (the webhook was down past its end) is replaced by a reissue, served at once as no valid CA is trusted', async () => {
    const day = 86_400_000;
    const expired = await generate([{ name: 'commonName', value: 'expired webhook CA' }], {
      keyType: 'ec',
      curve: 'P-256',
      algorithm: 'sha256',
      notBeforeDate: new Date(Date.now() - 400 * day),
      notAfterDate: new Date(Date.now() - day),
      extensions: [
        { name: 'basicConstraints', cA: true, critical: true },
        { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
      ],
    });
    const leaf = await generate([{ name: 'commonName', value: HOSTS[0] ?? '' }], {
      keyType: 'ec',
      curve: 'P-256',
      algorithm: 'sha256',
      notBeforeDate: new Date(Date.now() - 400 * day),
      notAfterDate: new Date(Date.now() - 2 * day),
      ca: { cert: expired.cert, key: expired.private },
      extensions: [{ name: 'subjectAltName', altNames: HOSTS.map((value) => ({ type: 2, value })) }],
    });
    const s = secret();
    const generation = Number(ann(s)[ROTATION_ANNOTATIONS.generation]) + 1;
    // The webhook configuration trusts that CA alone, as it would after the CA ran out.
    const mwc = api.get('mutatingwebhookconfigurations', undefined, WEBHOOK_CONFIG) as KubeObject & {
      webhooks: Array<{ clientConfig: { caBundle?: string } }>;
    };
    api.update({
      ...mwc,
      metadata: {
        ...mwc.metadata,
        annotations: { ...ann(mwc), [ROTATION_ANNOTATIONS.generation]: String(generation) },
      },
      webhooks: mwc.webhooks.map((w) => ({
        ...w,
        clientConfig: { ...w.clientConfig, caBundle: b64(expired.cert) },
      })),
    } as KubeObject);
    api.update({
      ...s,
      metadata: {
        ...s.metadata,
        annotations: { ...ann(s), [ROTATION_ANNOTATIONS.generation]: String(generation) },
      },
      data: {
        'ca.crt': b64(expired.cert),
        'ca.key': b64(expired.private),
        'tls.crt': b64(leaf.cert),
        'tls.key': b64(leaf.private),
        'ca-bundle.crt': b64(expired.cert),
      },
    });
    await waitFor(
      'a new CA served by every replica and alone in the caBundle',
      async () => {
        const ca = unb64(secret().data?.['ca.crt']);
        if (certFingerprint(ca) === certFingerprint(expired.cert)) return undefined;
        if (webhookCaBundles().some((b) => fingerprints(b).join() !== certFingerprint(ca))) return undefined;
        return allServeTheSecret();
      },
      10_000,
    );
    const now = secret();
    assert.equal(
      ann(now)[ROTATION_ANNOTATIONS.rotation],
      undefined,
      'no phase: nothing valid was trusted to keep',
    );
    assert.ok(
      new Date(new X509Certificate(unb64(now.data?.['ca.crt'])).validTo).getTime() > Date.now() + 300 * day,
    );
    assert.ok(
      new Date(new X509Certificate(unb64(now.data?.['tls.crt'])).validTo).getTime() > Date.now() + 300 * day,
    );
  });

  it('needed nothing beyond the shipped RBAC (resourceNames on the Secret and the webhook configuration)', () => {
    const denied = api.requests.filter(
      (r) => r.user.startsWith('system:serviceaccount:') && (r.status === 401 || r.status === 403),
    );
    assert.deepEqual(denied, []);
    assert.ok(
      api.requests.some(
        (r) =>
          r.user === `system:serviceaccount:${NS}:config-reloader-injector` &&
          r.method === 'PATCH' &&
          r.path.includes('mutatingwebhookconfigurations'),
      ),
    );
  });
});

describe('config-reloader-injector webhook --self-managed-certs (the process)', () => {
  let api: TestApiServer;
  let dir: string;
  let proc: CliChild | undefined;

  before(async () => {
    api = await TestApiServer.start();
    api.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'tools' } });
    const mwc = parseAllDocuments(
      await readFile(new URL('base/mutatingwebhookconfiguration.yaml', DEPLOY), 'utf8'),
    )[0]?.toJS() as KubeObject;
    api.create({ ...mwc, metadata: { name: 'hook' } });
    dir = await mkdtemp(join(tmpdir(), 'self-managed-cli-'));
    const grants = (await shippedGrants()).map((g) => ({
      ...g,
      namespace: g.namespace === undefined ? undefined : 'tools',
      names: g.names?.map((n) => (n === SECRET ? 'hook-certs' : 'hook')),
    }));
    await api.writeKubeconfig(join(dir, 'kubeconfig'), {
      token: api.addServiceAccount('tools', 'hook', grants),
    });
  });

  /** The webhook process on self-managed certificates in namespace tools, with the Secret, MWC and Service "hook". */
  const startWebhook = (more: string[] = []): CliChild =>
    startCli(
      [
        'webhook',
        '--host',
        '127.0.0.1',
        '--port',
        '0',
        '--self-managed-certs',
        '--kubeconfig',
        join(dir, 'kubeconfig'),
        '--cert-secret',
        'hook-certs',
        '--webhook-config',
        'hook',
        '--service',
        'hook',
        ...more,
      ],
      { env: { POD_NAMESPACE: 'tools', POD_NAME: 'hook-7d9f8-abcde' } },
    );

  after(async () => {
    if (proc && proc.child.exitCode === null) proc.child.kill('SIGKILL');
    await api.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('serves a certificate from its Secret, sets the caBundle, answers a review, and exits 0 on SIGTERM', async () => {
    proc = startWebhook();
    const url = String((await proc.waitForLog((l) => l.msg === 'webhook listening')).url);
    const secret = api.get('secrets', 'tools', 'hook-certs') as KubeObject & {
      data?: Record<string, string>;
    };
    assert.ok(ann(secret)[`${SERVED_PREFIX}hook-7d9f8-abcde`], 'the replica is named after its pod');
    const caBundles = (
      api.get('mutatingwebhookconfigurations', undefined, 'hook') as unknown as {
        webhooks: Array<{ clientConfig: { caBundle?: string } }>;
      }
    ).webhooks.map((w) => w.clientConfig.caBundle);
    assert.deepEqual(caBundles, [secret.data?.['ca-bundle.crt'], secret.data?.['ca-bundle.crt']]);
    const ca = unb64(caBundles[0]);
    const review = await readFile(new URL('../../fixtures/admission-review.json', import.meta.url), 'utf8');
    const res = await postAs(url, '/mutate', 'hook.tools.svc', ca, review);
    assert.equal(res.status, 200);
    assert.equal(
      (JSON.parse(res.body) as { response: { patchType?: string } }).response.patchType,
      'JSONPatch',
    );
    proc.child.kill('SIGTERM');
    assert.equal((await proc.exited).code, 0);
    assert.equal(
      proc.stdout().includes(unb64(secret.data?.['tls.key'])),
      false,
      'the key never reaches the log',
    );
  });

  it('--cert-host: a Secret whose certificate lacks the host gets a new serving certificate of the same CA', async () => {
    const before = api.get('secrets', 'tools', 'hook-certs') as KubeObject & {
      data?: Record<string, string>;
    };
    const caBefore = unb64(before.data?.['ca.crt']);
    assert.equal(
      new X509Certificate(unb64(before.data?.['tls.crt'])).checkIP('127.0.0.1'),
      undefined,
      'made without --cert-host',
    );
    proc = startWebhook(['--cert-host', '127.0.0.1', '--cert-host', 'hook.example.com']);
    const url = String((await proc.waitForLog((l) => l.msg === 'webhook listening')).url);
    const updated = await proc.waitForLog((l) => l.msg === 'certificate Secret updated');
    assert.equal(updated.step, 'renew-serving');
    assert.match(
      String(updated.reason),
      /the serving certificate does not cover (127\.0\.0\.1|hook\.example\.com)/,
    );
    const after = api.get('secrets', 'tools', 'hook-certs') as KubeObject & { data?: Record<string, string> };
    assert.equal(unb64(after.data?.['ca.crt']), caBefore, 'the same CA: the caBundle stays valid');
    assert.equal(after.data?.['ca-bundle.crt'], before.data?.['ca-bundle.crt']);
    assert.equal(
      proc.stdout().includes('caBundle written'),
      false,
      'the webhook configuration already held the bundle: not written again',
    );
    const leaf = new X509Certificate(unb64(after.data?.['tls.crt']));
    assert.ok(leaf.checkIP('127.0.0.1'));
    assert.ok(leaf.checkHost('hook.example.com', { subject: 'never' }));
    for (const host of serviceHosts('hook', 'tools'))
      assert.ok(leaf.checkHost(host, { subject: 'never' }), `still ${host}`);
    // A client that calls the address itself (no Service name) verifies the certificate with the caBundle's CA.
    const res = await httpsRequest(`${url}/mutate`, {
      ca: caBefore,
      method: 'POST',
      body: await readFile(new URL('../../fixtures/admission-review.json', import.meta.url), 'utf8'),
    });
    assert.equal(res.status, 200);
    proc.child.kill('SIGTERM');
    assert.equal((await proc.exited).code, 0);
  });

  for (const [args, env, message] of [
    [['--cert-secret', 'x'], {}, /--cert-secret applies only with --self-managed-certs/],
    [['--cert-host', '127.0.0.1'], {}, /--cert-host applies only with --self-managed-certs/],
    [
      ['--self-managed-certs', '--namespace', 'tools', '--cert-host', 'Hook.Example.com'],
      {},
      /--cert-host "Hook\.Example\.com" is neither an IP address nor a DNS name .*: give the host name or IP address of the url the webhook configuration calls/,
    ],
    [
      ['--self-managed-certs'],
      { POD_NAMESPACE: '' },
      /needs --namespace, or the POD_NAMESPACE environment variable/,
    ],
    [
      ['--self-managed-certs', '--namespace', 'tools', '--tls-cert-file', 'a', '--tls-key-file', 'b'],
      {},
      /two certificate sources: choose one/,
    ],
    [
      ['--self-managed-certs', '--namespace', 'tools', '--cert-validity', '10m'],
      {},
      /--cert-validity must be at least 1h/,
    ],
    [['--self-managed-certs', '--namespace', 'Tools'], {}, /--namespace "Tools" is not a valid DNS label/],
  ] as const) {
    it(`rejects ${args.join(' ')} with exit 2`, async () => {
      const { code, stderr } = await runCli(['webhook', ...args], { env });
      assert.equal(code, 2);
      assert.match(stderr, message);
    });
  }
});

describe('selfManagedSettingsFromFlags: --cert-host', () => {
  const base = { 'self-managed-certs': true, namespace: 'tools' } as const;

  it('adds each value once to the Service names, in the order given', () => {
    const settings = selfManagedSettingsFromFlags(
      {
        ...base,
        'cert-host': ['127.0.0.1', 'hook.example.com', '::1', '127.0.0.1', 'config-reloader-injector'],
      },
      {},
    );
    assert.ok(settings);
    assert.deepEqual(settings.extraHosts, [
      '127.0.0.1',
      'hook.example.com',
      '::1',
      'config-reloader-injector',
    ]);
    assert.deepEqual(selfManagedHosts(settings), [
      ...serviceHosts('config-reloader-injector', 'tools'),
      '127.0.0.1',
      'hook.example.com',
      '::1',
    ]);
  });

  it('without it, the certificate names only the Service', () => {
    const settings = selfManagedSettingsFromFlags(base, {});
    assert.ok(settings);
    assert.deepEqual(settings.extraHosts, []);
    assert.deepEqual(selfManagedHosts(settings), serviceHosts('config-reloader-injector', 'tools'));
  });

  it('accepts DNS names and IPv4/IPv6 addresses', () => {
    for (const host of [
      '10.0.0.5',
      '::1',
      '2001:db8::5',
      'webhook',
      'webhook.example.com',
      'a-1.b-2.internal',
    ])
      assert.equal(hostProblem(host), undefined, host);
  });

  for (const [host, problem] of [
    ['[::1]', /has brackets \(write an IPv6 address without them\)/],
    ['1.2.3', /is not a valid IP address/],
    ['10.0.0.256', /is not a valid IP address/],
    ['fe80::1%eth0', /is not a valid IP address/],
    ['Webhook.example.com', /is neither an IP address nor a DNS name/],
    ['*.example.com', /is neither an IP address nor a DNS name/],
    ['example.com.', /is neither an IP address nor a DNS name/],
    ['https://10.0.0.5:8443', /is a URL or a path, not a host/],
    ['-bad.example.com', /is neither an IP address nor a DNS name/],
    ['', /is neither an IP address nor a DNS name/],
  ] as const) {
    it(`rejects ${JSON.stringify(host)}, naming the flag and the fix`, () => {
      assert.throws(
        () => selfManagedSettingsFromFlags({ ...base, 'cert-host': [host] }, {}),
        (err: Error) => {
          assert.ok(err instanceof UsageError);
          assert.ok(err.message.startsWith(`--cert-host ${JSON.stringify(host)} `), err.message);
          assert.match(err.message, problem);
          assert.match(err.message, /e\.g\. --cert-host 10\.0\.0\.5 or --cert-host webhook\.example\.com$/);
          return true;
        },
      );
    });
  }
});
