import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { DEFAULT_INJECTOR_CONFIG } from '../../src/injection/config.ts';
import { createLogger } from '../../src/shared/log.ts';
import type { Registry } from '../../src/shared/metrics.ts';
import { createWebhookMetrics } from '../../src/webhook/metrics.ts';
import {
  EVENT_REASON,
  MISSED_INJECTIONS_METRIC,
  missedInjection,
  restartHint,
  startMissedInjectionWatcher,
  type MissedInjectionWatcher,
} from '../../src/webhook/missed-injections.ts';
import { TestApiServer, type Grant, type KubeObject } from '../support/kube-apiserver/index.ts';
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

/** Exactly what the issue allows the webhook: read pods and namespaces, create events. */
const GRANTS: Grant[] = [
  { verbs: ['get', 'list', 'watch'], resource: 'pods' },
  { verbs: ['get', 'list', 'watch'], resource: 'namespaces' },
  { verbs: ['create'], resource: 'events' },
];

function gaugeValue(registry: Registry): number {
  const m = new RegExp(`^${MISSED_INJECTIONS_METRIC} (\\S+)$`, 'm').exec(registry.render());
  assert.ok(m, 'the gauge is rendered');
  return Number(m[1]);
}

void describe('missedInjection (pure)', () => {
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
  void it('names the restart command from the controller', () => {
    const meta = (owner: Obj | undefined, labels: Record<string, string> = {}): V1Pod =>
      ({
        metadata: {
          name: 'web-7d9f8c6b5-x2x',
          namespace: 'shop',
          labels,
          ownerReferences: owner ? [owner] : [],
        },
      }) as unknown as V1Pod;
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

void describe('missed-injection watcher against the test API server', () => {
  let api: TestApiServer;
  let dir: string;
  let kubeConfig: KubeConfig;
  const watchers: MissedInjectionWatcher[] = [];
  const logLines: Obj[] = [];
  const stream = new PassThrough();
  stream.on('data', (c: Buffer) =>
    logLines.push(
      ...c
        .toString()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Obj),
    ),
  );
  const log = createLogger({ name: 'missed-injections-test', level: 'debug', destination: stream });
  const WATCHER_USER = 'system:serviceaccount:config-reloader:webhook';

  const events = (podName?: string): Obj[] =>
    api.list('events').filter((e) => !podName || (e.involvedObject as Obj).name === podName) as Obj[];

  before(async () => {
    api = await TestApiServer.start({ bookmarkIntervalMs: 200 });
    dir = await mkdtemp(join(tmpdir(), 'missed-injections-'));
    const token = api.addServiceAccount('config-reloader', 'webhook', GRANTS);
    await api.writeKubeconfig(join(dir, 'kubeconfig'), { token });
    kubeConfig = new KubeConfig();
    kubeConfig.loadFromFile(join(dir, 'kubeconfig'));
    api.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop' } });
    api.create({
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: 'labelled', labels: { 'config-reloader.io/injection': 'enabled' } },
    });
    api.create({
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: 'excluded', labels: { 'config-reloader.io/injection': 'enabled' } },
    });
  });

  after(async () => {
    for (const w of watchers) await w.stop();
    await api.close();
    await rm(dir, { recursive: true, force: true });
  });

  void it('counts the pods that missed injection, records one Warning Event on each naming the fix, and follows changes', async () => {
    const rsOwner = {
      apiVersion: 'apps/v1',
      kind: 'ReplicaSet',
      name: 'web-5f6d7c8b9',
      uid: 'c0ffee00-0000-4000-8000-000000000001',
      controller: true,
    };
    // Existing before the watcher starts.
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

    const metrics = createWebhookMetrics();
    const watcher = startMissedInjectionWatcher({
      kubeConfig,
      registry: metrics.registry,
      log,
      config: DEFAULT_INJECTOR_CONFIG,
      excludeNamespaces: ['excluded'],
    });
    watchers.push(watcher);
    await watcher.ready;
    await waitFor(() => gaugeValue(metrics.registry) === 3, 'three missed pods');
    assert.deepEqual(watcher.missed(), ['labelled/by-namespace', 'shop/bad-url', 'shop/web-5f6d7c8b9-abcde']);
    await waitFor(() => events().length === 3, 'three events');

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
    assert.match(metrics.registry.render(), /# TYPE config_reloader_webhook_missed_injections gauge/);

    // A new pod created while the webhook was down, and a namespace that gets the label later.
    api.create(pod('shop', 'late', { annotations: OPT_IN, volumes: SECRET_VOLUME }));
    api.create(pod('later', 'in-later', { volumes: CONFIG_VOLUME }));
    await waitFor(() => gaugeValue(metrics.registry) === 4, 'the late pod');
    const later = api.get('namespaces', undefined, 'later')!;
    api.update({
      ...later,
      metadata: { ...(later.metadata as Obj), labels: { 'config-reloader.io/injection': 'enabled' } },
    } as unknown as KubeObject);
    await waitFor(() => gaugeValue(metrics.registry) === 5, 'the labelled namespace');
    assert.ok(watcher.missed().includes('later/in-later'));

    // Pods that go (deleted, or restarted with the sidecar) stop counting.
    api.delete('pods', 'shop', 'late');
    await waitFor(() => gaugeValue(metrics.registry) === 4, 'the deleted pod');
    const bad = api.get('pods', 'shop', 'bad-url')!;
    api.update({
      ...bad,
      metadata: { ...(bad.metadata as Obj), annotations: INJECTED },
    } as unknown as KubeObject);
    await waitFor(() => gaugeValue(metrics.registry) === 3, 'the fixed pod');

    // Reconnects and a 410 relist: nothing counted twice, no second Event for a pod.
    api.dropWatches();
    api.create(pod('shop', 'after-drop', { annotations: OPT_IN, volumes: CONFIG_VOLUME }));
    await waitFor(() => gaugeValue(metrics.registry) === 4, 'a pod after a dropped watch');
    api.create({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'elsewhere', namespace: 'shop' },
      data: {},
    });
    api.compact();
    api.dropWatches();
    api.create(pod('shop', 'after-compaction', { annotations: OPT_IN, volumes: CONFIG_VOLUME }));
    await waitFor(() => gaugeValue(metrics.registry) === 5, 'a pod after compaction');
    await waitFor(() => events('after-compaction').length === 1 && events('after-drop').length === 1, 'events for the new pods');
    for (const name of ['web-5f6d7c8b9-abcde', 'by-namespace', 'bad-url', 'in-later', 'late', 'after-drop']) {
      assert.equal(events(name).length, 1, `one Event for ${name}`);
    }

    // Only the allowed calls, and none refused.
    const calls = api.requests.filter((r) => r.user === WATCHER_USER);
    assert.ok(calls.length > 0);
    for (const r of calls) {
      assert.ok(r.status < 400, `${r.method} ${r.path} → ${r.status}`);
      const allowed =
        (r.method === 'GET' && /^\/api\/v1\/(pods|namespaces)$/.test(r.path)) ||
        (r.method === 'POST' && /^\/api\/v1\/namespaces\/[^/]+\/events$/.test(r.path));
      assert.ok(allowed, `unexpected call ${r.method} ${r.path}`);
    }
  });

  void it('a second webhook replica counts the same pods and records no second Event', async () => {
    const before = events().length;
    const metrics = createWebhookMetrics();
    const replica = startMissedInjectionWatcher({
      kubeConfig,
      registry: metrics.registry,
      log,
      config: DEFAULT_INJECTOR_CONFIG,
      excludeNamespaces: ['excluded'],
    });
    watchers.push(replica);
    await replica.ready;
    await waitFor(() => gaugeValue(metrics.registry) === 5, 'the replica counts');
    await waitFor(() => api.requests.filter((r) => r.method === 'POST' && r.status === 409).length >= 5, 'its Event attempts answered');
    assert.equal(events().length, before);
  });

  void it('retries an Event the API server failed to take, on the next change of the pod', async () => {
    const watcher = watchers[0]!;
    api.failRequests(500, { count: 2, paths: /\/namespaces\/shop\/events/ });
    api.create(pod('shop', 'unlucky', { annotations: OPT_IN, volumes: CONFIG_VOLUME }));
    await waitFor(() =>
        logLines.filter((l) => l.msg === 'cannot record the missed-injection Event' && l.pod === 'unlucky')
          .length >= 2, 'the failed attempts logged');
    assert.equal(events('unlucky').length, 0);
    assert.ok(watcher.missed().includes('shop/unlucky'));
    const current = api.get('pods', 'shop', 'unlucky')!;
    api.update({
      ...current,
      metadata: { ...(current.metadata as Obj), labels: { touched: 'yes' } },
    } as unknown as KubeObject);
    await waitFor(() => events('unlucky').length === 1, 'the Event recorded after the change');
  });

  void it('keeps counting across an API server outage', async () => {
    const watcher = watchers[0]!;
    await api.stop();
    await sleep(300);
    await api.restart();
    api.create(pod('shop', 'after-outage', { annotations: OPT_IN, volumes: CONFIG_VOLUME }));
    await waitFor(() => watcher.missed().includes('shop/after-outage'), 'the pod created after the outage', 60_000);
    await waitFor(() => events('after-outage').length === 1, 'its Event', 30_000);
  });

  void it('needs no permission beyond reading pods and namespaces and creating events: without events create it still counts', async () => {
    const token = api.addServiceAccount('config-reloader', 'read-only', GRANTS.slice(0, 2));
    await api.writeKubeconfig(join(dir, 'kubeconfig-ro'), { token });
    const kc = new KubeConfig();
    kc.loadFromFile(join(dir, 'kubeconfig-ro'));
    const metrics = createWebhookMetrics();
    const watcher = startMissedInjectionWatcher({
      kubeConfig: kc,
      registry: metrics.registry,
      log,
      config: DEFAULT_INJECTOR_CONFIG,
    });
    watchers.push(watcher);
    await watcher.ready;
    await waitFor(() => gaugeValue(metrics.registry) > 0, 'it counts');
    await waitFor(() =>
      logLines.some((l) => l.msg === 'cannot record the missed-injection Event' && l.code === 403), 'the refusal logged');
  });
});
