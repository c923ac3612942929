import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { DEFAULT_INJECTOR_CONFIG } from '../../src/injection/config.ts';
import { capturingLogger } from '../support/captured-log.ts';
import type { Registry } from '../../src/shared/metrics.ts';
import { kubeHttp } from '../../src/webhook/kube-http.ts';
import { createWebhookMetrics } from '../../src/webhook/metrics.ts';
import {
  EVENT_REASON,
  isCandidate,
  LAST_SCAN_METRIC,
  LEASE_NAME,
  METADATA_ACCEPT,
  MISSED_INJECTIONS_METRIC,
  missedInjection,
  restartHint,
  startMissedInjectionScanner,
  type MissedInjectionScanner,
  type PodLike,
} from '../../src/webhook/missed-injections.ts';
import { LEASE_COUNT_ANNOTATION, microTime, ScanLease } from '../../src/webhook/scan-lease.ts';
import {
  TestApiServer,
  type Grant,
  type KubeObject,
  type RequestRecord,
} from '../support/kube-apiserver/index.ts';
import { waitFor } from '../support/wait.ts';

type Obj = Record<string, unknown>;

function pod(
  namespace: string,
  name: string,
  parts: {
    annotations?: Record<string, string>;
    volumes?: Obj[];
    labels?: Record<string, string>;
    owner?: Obj;
    phase?: string;
  } = {},
): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace,
      ...(parts.annotations ? { annotations: parts.annotations } : {}),
      ...(parts.labels ? { labels: parts.labels } : {}),
      ...(parts.owner ? { ownerReferences: [parts.owner] } : {}),
    },
    spec: {
      containers: [
        {
          name: 'app',
          image: 'example/app:1',
          volumeMounts: parts.volumes?.length ? [{ name: 'config', mountPath: '/etc/app' }] : [],
        },
      ],
      volumes: parts.volumes ?? [],
    },
    ...(parts.phase ? { status: { phase: parts.phase } } : {}),
  };
}

const CONFIG_VOLUME = [{ name: 'config', configMap: { name: 'app-config' } }];
const SECRET_VOLUME = [{ name: 'config', secret: { secretName: 'app-secret' } }];
const OPT_IN = { 'config-reloader.io/inject': 'true' };
const INJECTED = { ...OPT_IN, 'config-reloader.io/status': 'injected' };
const WEBHOOK_NS = 'config-reloader-injector';

/** deploy/components/missed-injections' RBAC, and nothing more. */
const GRANTS: Grant[] = [
  { verbs: ['list'], resource: 'pods' },
  { verbs: ['list'], resource: 'namespaces' },
  { verbs: ['create'], resource: 'events' },
  {
    verbs: ['get', 'update'],
    resource: 'leases',
    group: 'coordination.k8s.io',
    namespace: WEBHOOK_NS,
    names: [LEASE_NAME],
  },
  { verbs: ['create'], resource: 'leases', group: 'coordination.k8s.io', namespace: WEBHOOK_NS },
];

function gaugeValue(registry: Registry, name = MISSED_INJECTIONS_METRIC): number {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(registry.render());
  assert.ok(m, `${name} is rendered`);
  return Number(m[1]);
}

void describe('missedInjection and isCandidate (pure)', () => {
  const p = (annotations: Record<string, string>, extra: Obj = {}): Obj => ({
    ...pod('shop', 'p', { annotations, volumes: CONFIG_VOLUME }),
    ...extra,
  });
  void it('counts an opted-in pod without the status annotation that the webhook would patch', () => {
    assert.equal(missedInjection(p(OPT_IN), undefined, DEFAULT_INJECTOR_CONFIG)?.optIn, 'annotation');
    assert.equal(
      missedInjection(p({}), { 'config-reloader.io/injection': 'enabled' }, DEFAULT_INJECTOR_CONFIG)?.optIn,
      'namespace',
    );
  });
  void it('does not count injected, opted-out, not-opted-in, finished, deleting, mirror or nothing-to-sync pods', () => {
    const ns = { 'config-reloader.io/injection': 'enabled' };
    assert.equal(missedInjection(p(INJECTED), ns, DEFAULT_INJECTOR_CONFIG), undefined);
    assert.equal(
      missedInjection(p({ 'config-reloader.io/inject': 'false' }), ns, DEFAULT_INJECTOR_CONFIG),
      undefined,
    );
    assert.equal(
      missedInjection(p({}), { 'config-reloader.io/injection': 'disabled' }, DEFAULT_INJECTOR_CONFIG),
      undefined,
    );
    assert.equal(
      missedInjection(p(OPT_IN, { status: { phase: 'Succeeded' } }), undefined, DEFAULT_INJECTOR_CONFIG),
      undefined,
    );
    assert.equal(
      missedInjection(p(OPT_IN, { status: { phase: 'Failed' } }), undefined, DEFAULT_INJECTOR_CONFIG),
      undefined,
    );
    const deleting = p(OPT_IN);
    (deleting.metadata as Obj).deletionTimestamp = '2025-01-01T00:00:00Z';
    assert.equal(missedInjection(deleting, undefined, DEFAULT_INJECTOR_CONFIG), undefined);
    assert.equal(
      missedInjection(
        p({ ...OPT_IN, 'kubernetes.io/config.mirror': 'abc' }),
        undefined,
        DEFAULT_INJECTOR_CONFIG,
      ),
      undefined,
    );
    assert.equal(
      missedInjection(pod('shop', 'p', { annotations: OPT_IN }), undefined, DEFAULT_INJECTOR_CONFIG),
      undefined,
    );
  });
  void it('counts a pod the webhook would deny, with the denial', () => {
    const found = missedInjection(
      p({ ...OPT_IN, 'config-reloader.io/reload-url': 'http://10.0.0.1/reload' }),
      undefined,
      DEFAULT_INJECTOR_CONFIG,
    );
    assert.equal(found?.outcome.action, 'deny');
  });
  void it('takes as candidates, from metadata alone, exactly the pods missedInjection may count', () => {
    const labelled = new Set(['labelled']);
    const excluded = new Set(['kube-system']);
    const meta = (namespace: string, annotations: Record<string, string>, more: Obj = {}): Obj => ({
      name: 'p',
      namespace,
      uid: 'u',
      annotations,
      ...more,
    });
    const c = (m: Obj): string | undefined => isCandidate(m, labelled, excluded);
    assert.equal(c(meta('shop', OPT_IN)), 'annotation');
    assert.equal(c(meta('shop', { 'config-reloader.io/inject': ' True ' })), 'annotation');
    assert.equal(c(meta('labelled', {})), 'namespace');
    assert.equal(
      c(meta('labelled', { 'config-reloader.io/inject': 'ture' })),
      'namespace',
      'a typo the webhook denies',
    );
    assert.equal(c(meta('labelled', { 'config-reloader.io/inject': 'false' })), undefined);
    assert.equal(c(meta('shop', {})), undefined);
    assert.equal(c(meta('shop', INJECTED)), undefined);
    assert.equal(c(meta('kube-system', OPT_IN)), undefined);
    assert.equal(c(meta('shop', { ...OPT_IN, 'kubernetes.io/config.mirror': 'x' })), undefined);
    assert.equal(c(meta('shop', OPT_IN, { deletionTimestamp: '2025-01-01T00:00:00Z' })), undefined);
    assert.equal(
      c(meta('labelled', {}, { labels: { 'app.kubernetes.io/name': 'config-reloader-injector' } })),
      undefined,
      "the webhook's own pods (the MutatingWebhookConfiguration's objectSelector)",
    );
  });
  void it('names the restart command from the controller', () => {
    const meta = (owner: Obj | undefined, labels: Record<string, string> = {}): PodLike =>
      ({
        metadata: {
          name: 'web-7d9f8c6b5-x2x',
          namespace: 'shop',
          labels,
          ownerReferences: owner ? [owner] : [],
        },
      }) as unknown as PodLike;
    assert.equal(
      restartHint(
        meta(
          { kind: 'ReplicaSet', name: 'web-7d9f8c6b5', controller: true },
          { 'pod-template-hash': '7d9f8c6b5' },
        ),
      ),
      'kubectl rollout restart deployment/web -n shop',
    );
    assert.equal(
      restartHint(meta({ kind: 'StatefulSet', name: 'db', controller: true })),
      'kubectl rollout restart statefulset/db -n shop',
    );
    assert.match(
      restartHint(meta({ kind: 'Job', name: 'once', controller: true })),
      /^kubectl delete pod web-7d9f8c6b5-x2x -n shop/,
    );
    assert.match(restartHint(meta(undefined)), /kubectl replace --force/);
  });
});

void describe('missed-injection scan against the test API server', () => {
  let api: TestApiServer;
  let dir: string;
  const scanners: MissedInjectionScanner[] = [];
  const { log, lines: logLines } = capturingLogger('missed-injections-test', 'debug');

  const events = (podName?: string): Obj[] =>
    api.list('events').filter((e) => !podName || (e.involvedObject as Obj).name === podName) as Obj[];

  /** A replica's credentials: a ServiceAccount of its own (to tell the replicas' requests apart) with GRANTS. */
  const replicaKubeConfig = async (name: string, grants: Grant[] = GRANTS): Promise<KubeConfig> => {
    const token = api.addServiceAccount(WEBHOOK_NS, name, grants);
    await api.writeKubeconfig(join(dir, `kubeconfig-${name}`), { token });
    const kc = new KubeConfig();
    kc.loadFromFile(join(dir, `kubeconfig-${name}`));
    return kc;
  };
  const userOf = (name: string): string => `system:serviceaccount:${WEBHOOK_NS}:${name}`;
  const callsOf = (name: string, from = 0): RequestRecord[] =>
    api.requests.slice(from).filter((r) => r.user === userOf(name));

  const start = async (
    name: string,
    opts: { grants?: Grant[]; pageSize?: number; intervalMs?: number; excludeNamespaces?: string[] } = {},
  ): Promise<{ scanner: MissedInjectionScanner; registry: Registry }> => {
    const metrics = createWebhookMetrics();
    const scanner = startMissedInjectionScanner({
      kubeConfig: await replicaKubeConfig(name, opts.grants),
      registry: metrics.registry,
      log,
      config: DEFAULT_INJECTOR_CONFIG,
      namespace: WEBHOOK_NS,
      identity: name,
      excludeNamespaces: opts.excludeNamespaces ?? ['excluded', WEBHOOK_NS],
      // Turns are taken by the test (turnNow), unless it asks for a short interval.
      intervalMs: opts.intervalMs ?? 3_600_000,
      pageSize: opts.pageSize ?? 100,
      pageGapMs: 0,
      fetchGapMs: 0,
      firstTurnDelayMs: 0,
    });
    scanners.push(scanner);
    await scanner.ready;
    return { scanner, registry: metrics.registry };
  };

  before(async () => {
    api = await TestApiServer.start({ bookmarkIntervalMs: 60_000 });
    dir = await mkdtemp(join(tmpdir(), 'missed-injections-'));
    for (const [name, labels] of [
      [WEBHOOK_NS, {}],
      ['shop', {}],
      ['labelled', { 'config-reloader.io/injection': 'enabled' }],
      ['excluded', { 'config-reloader.io/injection': 'enabled' }],
      ['bulk', {}],
    ] as const)
      api.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } });
  });

  after(async () => {
    for (const s of scanners) await s.stop();
    await api.close();
    await rm(dir, { recursive: true, force: true });
  });

  beforeEach(async () => {
    // Each test starts with its replicas gone and the Lease free.
    while (scanners.length) await scanners.pop()?.stop();
    for (const l of api.list('leases', WEBHOOK_NS)) api.delete('leases', WEBHOOK_NS, l.metadata.name);
  });

  void it('scans page by page (limit and continue), metadata only, fetches only candidates, counts the misses and records one Event on each naming the fix', async () => {
    const rsOwner = {
      apiVersion: 'apps/v1',
      kind: 'ReplicaSet',
      name: 'web-5f6d7c8b9',
      uid: 'c0ffee00-0000-4000-8000-000000000001',
      controller: true,
    };
    api.create(
      pod('shop', 'web-5f6d7c8b9-abcde', {
        annotations: OPT_IN,
        volumes: CONFIG_VOLUME,
        owner: rsOwner,
        labels: { 'pod-template-hash': '5f6d7c8b9' },
      }),
    );
    api.create(pod('shop', 'injected', { annotations: INJECTED, volumes: CONFIG_VOLUME }));
    api.create(pod('shop', 'plain', { volumes: CONFIG_VOLUME }));
    api.create(pod('shop', 'nothing-to-sync', { annotations: OPT_IN }));
    api.create(pod('shop', 'finished', { annotations: OPT_IN, volumes: CONFIG_VOLUME, phase: 'Succeeded' }));
    api.create(pod('labelled', 'by-namespace', { volumes: SECRET_VOLUME }));
    api.create(
      pod('labelled', 'opted-out', {
        annotations: { 'config-reloader.io/inject': 'false' },
        volumes: SECRET_VOLUME,
      }),
    );
    api.create(pod('excluded', 'ignored', { volumes: SECRET_VOLUME }));
    api.create(
      pod('shop', 'bad-url', {
        annotations: { ...OPT_IN, 'config-reloader.io/reload-url': 'http://10.1.2.3/reload' },
        volumes: CONFIG_VOLUME,
      }),
    );
    // 1,000 more pods, a fifth of them injected: 11 pages of 100.
    for (let i = 0; i < 1000; i++)
      api.create(
        pod('bulk', `bulk-${String(i).padStart(4, '0')}`, {
          volumes: CONFIG_VOLUME,
          ...(i % 5 === 0 ? { annotations: INJECTED } : {}),
        }),
      );
    const total = api.list('pods').length;

    const { scanner, registry } = await start('replica-a');
    assert.equal(scanner.holding(), true, 'the only replica takes the Lease');
    assert.equal(gaugeValue(registry), 3);
    assert.ok(gaugeValue(registry, LAST_SCAN_METRIC) > 1.7e9, 'the time of the scan');
    assert.deepEqual(scanner.missed(), ['labelled/by-namespace', 'shop/bad-url', 'shop/web-5f6d7c8b9-abcde']);
    assert.deepEqual(
      { ...scanner.lastScan(), durationMs: 0, maxEventLoopDelayMs: 0 },
      // Candidates: the three misses, nothing-to-sync and finished (their full pods say no).
      {
        pods: total,
        pages: Math.ceil(total / 100),
        candidates: 5,
        fetched: 5,
        deferred: 0,
        missed: 3,
        durationMs: 0,
        maxEventLoopDelayMs: 0,
      },
    );

    // Pagination really used, metadata only: every page a list of at most 100 with the metadata Accept header,
    // each page after the first continuing the one before.
    const calls = callsOf('replica-a');
    const pages = calls.filter((r) => r.path === '/api/v1/pods');
    assert.equal(pages.length, Math.ceil(total / 100));
    for (const [i, r] of pages.entries()) {
      const q = new URLSearchParams(r.query);
      assert.equal(q.get('limit'), '100');
      assert.equal(r.accept, METADATA_ACCEPT, 'PartialObjectMetadataList only');
      assert.equal(q.has('continue'), i > 0, `page ${i + 1}: continue`);
      assert.equal(r.status, 200);
    }
    const namespaceLists = calls.filter((r) => r.path === '/api/v1/namespaces');
    assert.equal(namespaceLists.length, 1);
    assert.equal(namespaceLists[0]?.accept, METADATA_ACCEPT);
    assert.equal(
      new URLSearchParams(namespaceLists[0]?.query).get('labelSelector'),
      'config-reloader.io/injection=enabled',
    );
    // A full pod only for each candidate, by name (a list: RBAC needs no get).
    const fetched = calls.filter((r) => /^\/api\/v1\/namespaces\/[^/]+\/pods$/.test(r.path));
    assert.deepEqual(
      fetched
        .map((r) => `${r.path.split('/')[4]}/${new URLSearchParams(r.query).get('fieldSelector')}`)
        .sort(),
      [
        'labelled/metadata.name=by-namespace',
        'shop/metadata.name=bad-url',
        'shop/metadata.name=finished',
        'shop/metadata.name=nothing-to-sync',
        'shop/metadata.name=web-5f6d7c8b9-abcde',
      ],
    );

    assert.equal(events().length, 3);
    const [web] = events('web-5f6d7c8b9-abcde');
    assert.ok(web);
    assert.equal(web.reason, EVENT_REASON);
    assert.equal(web.type, 'Warning');
    const involved = web.involvedObject as Obj;
    assert.equal(involved.kind, 'Pod');
    assert.equal(involved.namespace, 'shop');
    assert.equal(involved.uid, (api.get('pods', 'shop', 'web-5f6d7c8b9-abcde')!.metadata as Obj).uid);
    assert.match(String(web.message), /annotation config-reloader\.io\/inject: "true"/);
    assert.match(String(web.message), /kubectl rollout restart deployment\/web -n shop/);
    assert.match(
      String(events('by-namespace')[0]!.message),
      /namespace label config-reloader\.io\/injection=enabled/,
    );
    assert.match(String(events('bad-url')[0]!.message), /would be denied: config-reloader\.io\/reload-url/);
    assert.match(registry.render(), /# TYPE config_reloader_webhook_missed_injections gauge/);

    // Only the calls the component's RBAC allows, none refused.
    for (const r of calls) {
      // The first read of the Lease finds none (then it is created).
      const leaseNotYet = r.status === 404 && r.path.endsWith(`/leases/${LEASE_NAME}`) && r === calls[0];
      assert.ok(r.status < 400 || leaseNotYet, `${r.method} ${r.path} → ${r.status}`);
      const allowed =
        (r.method === 'GET' && /^\/api\/v1\/(pods|namespaces)$/.test(r.path)) ||
        (r.method === 'GET' && /^\/api\/v1\/namespaces\/[^/]+\/pods$/.test(r.path)) ||
        (r.method === 'POST' && /^\/api\/v1\/namespaces\/[^/]+\/events$/.test(r.path)) ||
        (/^(GET|PUT)$/.test(r.method) &&
          r.path === `/apis/coordination.k8s.io/v1/namespaces/${WEBHOOK_NS}/leases/${LEASE_NAME}`) ||
        (r.method === 'POST' && r.path === `/apis/coordination.k8s.io/v1/namespaces/${WEBHOOK_NS}/leases`);
      assert.ok(allowed, `unexpected call ${r.method} ${r.path}`);
    }
    assert.equal(calls.filter((r) => r.query.includes('watch')).length, 0, 'no watch');

    // The next scan: what changed in between, no second Event, and no second fetch of a pod found not missed.
    const from = api.requests.length;
    api.create(pod('shop', 'late', { annotations: OPT_IN, volumes: SECRET_VOLUME }));
    api.create(pod('later', 'in-later', { volumes: CONFIG_VOLUME }));
    const later = api.get('namespaces', undefined, 'later')!;
    api.update({
      ...later,
      metadata: { ...(later.metadata as Obj), labels: { 'config-reloader.io/injection': 'enabled' } },
    } as unknown as KubeObject);
    const bad = api.get('pods', 'shop', 'bad-url')!;
    api.update({
      ...bad,
      metadata: { ...(bad.metadata as Obj), annotations: INJECTED },
    } as unknown as KubeObject);
    await scanner.turnNow();
    assert.equal(gaugeValue(registry), 4);
    assert.deepEqual(scanner.missed(), [
      'labelled/by-namespace',
      'later/in-later',
      'shop/late',
      'shop/web-5f6d7c8b9-abcde',
    ]);
    const refetched = callsOf('replica-a', from)
      .filter((r) => /^\/api\/v1\/namespaces\/[^/]+\/pods$/.test(r.path))
      .map((r) => new URLSearchParams(r.query).get('fieldSelector'))
      .sort();
    // The misses again (a miss may have finished since), the new ones; not nothing-to-sync or finished.
    assert.deepEqual(refetched, [
      'metadata.name=by-namespace',
      'metadata.name=in-later',
      'metadata.name=late',
      'metadata.name=web-5f6d7c8b9-abcde',
    ]);
    for (const name of ['web-5f6d7c8b9-abcde', 'by-namespace', 'bad-url', 'late', 'in-later'])
      assert.equal(events(name).length, 1, `one Event for ${name}`);
    assert.equal(
      callsOf('replica-a', from).filter((r) => r.method === 'POST' && r.path.endsWith('/events')).length,
      2,
      'Events for the two new misses only',
    );

    // Gone pods stop counting.
    api.delete('pods', 'shop', 'late');
    await scanner.turnNow();
    assert.equal(gaugeValue(registry), 3);
  });

  void it('with two replicas, one scans and the other reports its count from the Lease; the other takes over when the first stops', async () => {
    const from = api.requests.length;
    const a = await start('replica-a');
    const b = await start('replica-b');
    assert.equal(a.scanner.holding(), true);
    assert.equal(b.scanner.holding(), false);
    const count = gaugeValue(a.registry);
    assert.ok(count > 0);
    assert.equal(gaugeValue(b.registry), count, "B reports A's count, read from the Lease");
    assert.equal(gaugeValue(b.registry, LAST_SCAN_METRIC), gaugeValue(a.registry, LAST_SCAN_METRIC));
    await Promise.all([a.scanner.turnNow(), b.scanner.turnNow(), b.scanner.turnNow()]);
    assert.equal(a.scanner.holding(), true);
    assert.equal(b.scanner.holding(), false);
    const listed = (name: string): number =>
      callsOf(name, from).filter((r) => r.path === '/api/v1/pods').length;
    assert.ok(listed('replica-a') > 0);
    assert.equal(listed('replica-b'), 0, 'B never lists pods while A holds the Lease');
    assert.equal(
      callsOf('replica-b', from).filter((r) => r.method !== 'GET').length,
      0,
      'B only reads the Lease',
    );
    const lease = api.get('leases', WEBHOOK_NS, LEASE_NAME) as Obj;
    assert.equal((lease.spec as Obj).holderIdentity, 'replica-a');
    assert.equal((lease.metadata as { annotations: Obj }).annotations[LEASE_COUNT_ANNOTATION], String(count));

    // A stops (a rolling update): it leaves the Lease free, and B's next turn takes it and scans.
    await a.scanner.stop();
    assert.equal(((api.get('leases', WEBHOOK_NS, LEASE_NAME) as Obj).spec as Obj).holderIdentity, '');
    await b.scanner.turnNow();
    assert.equal(b.scanner.holding(), true);
    assert.ok(listed('replica-b') > 0);
    assert.equal(gaugeValue(b.registry), count);
  });

  void it('two replicas starting together: exactly one scans', async () => {
    const from = api.requests.length;
    const [a, b] = await Promise.all([start('replica-a'), start('replica-b')]);
    assert.equal([a, b].filter((r) => r.scanner.holding()).length, 1);
    const scanned = ['replica-a', 'replica-b'].filter((n) =>
      callsOf(n, from).some((r) => r.path === '/api/v1/pods'),
    );
    assert.equal(scanned.length, 1);
  });

  void it('the Lease: taken over once unchanged for its duration (on the taker’s own clock), never while renewed', async () => {
    const kc = await replicaKubeConfig('lease-test');
    const http = kubeHttp(kc, 'test');
    let clock = 1_000_000;
    const lease = (identity: string): ScanLease =>
      new ScanLease({
        http,
        namespace: WEBHOOK_NS,
        name: LEASE_NAME,
        identity,
        durationMs: 60_000,
        now: () => clock,
      });
    try {
      const a = lease('a');
      const b = lease('b');
      assert.equal((await a.turn()).role, 'holder');
      assert.equal((await b.turn()).role, 'follower');
      clock += 59_000;
      assert.equal((await b.turn()).role, 'follower', 'not yet');
      assert.equal(await a.renew({ x: '1' }), true);
      clock += 59_000;
      assert.equal((await b.turn()).role, 'follower', 'renewed in between: B starts counting again');
      clock += 60_000;
      const taken = await b.turn();
      assert.equal(taken.role, 'holder', 'unchanged for 60 s as B saw it');
      assert.equal(taken.lease.spec?.leaseTransitions, 1);
      assert.match(String(taken.lease.spec?.renewTime), /\.\d{6}Z$/, 'MicroTime');
      assert.equal(await a.renew(), false, 'A lost it (409) and stops');
      assert.equal((await a.turn()).role, 'follower');
    } finally {
      http.close();
    }
    assert.match(microTime(new Date('2025-06-01T10:00:00.123Z')), /^2025-06-01T10:00:00\.123000Z$/);
  });

  void it('records an Event the API server failed to take at the next scan', async () => {
    api.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'unlucky' } });
    api.create(pod('unlucky', 'unlucky', { annotations: OPT_IN, volumes: CONFIG_VOLUME }));
    api.failRequests(500, { count: 1, paths: /\/namespaces\/unlucky\/events/ });
    const { scanner } = await start('replica-a');
    assert.ok(scanner.missed().includes('unlucky/unlucky'));
    assert.ok(
      logLines.some((l) => l.msg === 'cannot record the missed-injection Event' && l.pod === 'unlucky'),
    );
    const before = events('unlucky').length;
    await scanner.turnNow();
    assert.equal(events('unlucky').length, before + 1, 'recorded at the next scan');
  });

  void it('keeps scanning across an API server outage', async () => {
    const { scanner, registry } = await start('replica-a', { intervalMs: 1_000 });
    await api.stop();
    await waitFor(
      () => logLines.some((l) => l.msg === 'missed-injection scan failed' && l.code === 'ECONNREFUSED'),
      'a failed turn',
      10_000,
    );
    await api.restart();
    api.create(pod('shop', 'after-outage', { annotations: OPT_IN, volumes: CONFIG_VOLUME }));
    await waitFor(
      () => scanner.missed().includes('shop/after-outage'),
      'the pod created after the outage',
      60_000,
    );
    await waitFor(() => events('after-outage').length === 1, 'its Event', 30_000);
    assert.ok(gaugeValue(registry) > 0);
  });

  void it('without events create it still counts, and says why it cannot record', async () => {
    const { registry } = await start('read-only', { grants: GRANTS.filter((g) => g.resource !== 'events') });
    assert.ok(gaugeValue(registry) > 0);
    assert.ok(logLines.some((l) => l.msg === 'cannot record the missed-injection Event' && l.code === 403));
  });

  void it('a server that answers full objects instead of metadata is refused, not read', async () => {
    const kc = await replicaKubeConfig('full');
    const real = kubeHttp(kc, 'test');
    const metrics = createWebhookMetrics();
    const scanner = startMissedInjectionScanner({
      kubeConfig: kc,
      registry: metrics.registry,
      log,
      config: DEFAULT_INJECTOR_CONFIG,
      namespace: WEBHOOK_NS,
      identity: 'full',
      intervalMs: 3_600_000,
      firstTurnDelayMs: 0,
      // An API server (or a proxy) that ignores the Accept header.
      http: {
        request: (req) => real.request({ ...req, accept: 'application/json' }),
        close: () => real.close(),
      },
    });
    scanners.push(scanner);
    await scanner.ready;
    assert.ok(
      logLines.some(
        (l) =>
          l.msg === 'missed-injection scan failed' &&
          /answered NamespaceList instead of PartialObjectMetadataList/.test(String(l.reason)),
      ),
    );
  });
});
