import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { get } from 'node:http';
import { after, before, describe, test } from 'node:test';
import type { V1Pod } from '@kubernetes/client-node';
import type { KubeObject } from '../support/kube-apiserver/index.ts';
import type { Kube } from './kube.ts';
import { connect, createNamespace, createPod, waitFor } from './kube.ts';
import type { PodSandbox, RunningContainer } from './kubelet.ts';
import { preparePod } from './kubelet.ts';
import type { StandInApp } from './stand-in-app.ts';
import { startStandInApp } from './stand-in-app.ts';
import type { TestCluster } from './test-cluster.ts';
import { startTestCluster } from './test-cluster.ts';

const NS = 'watch-demo';
const SECRET = 'app-config';

function httpText(url: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve) => {
    get(url, { agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    }).on('error', () => resolve({ status: 0, text: '' }));
  });
}

const readOrEmpty = (path: string): Promise<string> => readFile(path, 'utf8').catch(() => '');

/** The Role a user grants the pod's ServiceAccount: the one Secret, by name (README, "The RBAC an app's..."). */
const RBAC: KubeObject[] = [
  {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'Role',
    metadata: { name: 'app-config-reader', namespace: NS },
    rules: [
      { apiGroups: [''], resources: ['secrets'], resourceNames: [SECRET], verbs: ['get', 'list', 'watch'] },
    ],
  },
  {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'RoleBinding',
    metadata: { name: 'app-config-reader', namespace: NS },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'app-config-reader' },
    subjects: [{ kind: 'ServiceAccount', name: 'app', namespace: NS }],
  },
];

/**
 * The reloader as a process, run from the injected pod's own spec, authenticated by a bound ServiceAccount
 * token from the TokenRequest API and authorized by a Role with resourceNames, against a real kube-apiserver.
 * kube-apiserver runs with --watch-cache=false here, so each watch is an etcd watch: an etcd compaction then
 * expires the reloader's resourceVersion exactly as it does in a cluster whose watch cache has moved on.
 */
void describe('e2e (real kube-apiserver, etcd-backed watches): the reloader through updates, deletion, compaction and an API server restart', () => {
  let cluster: TestCluster;
  let kube: Kube;
  let pod: V1Pod;
  let sandbox: PodSandbox;
  let app: StandInApp;
  let reloader: RunningContainer;
  let configFile: string;
  let metricsUrl: string;

  const setSecret = async (content: string): Promise<void> => {
    await kube.core.replaceNamespacedSecret({
      namespace: NS,
      name: SECRET,
      body: { metadata: { name: SECRET }, stringData: { 'app.yaml': content } },
    });
  };
  const metric = async (name: string, labels: string): Promise<number> => {
    const { text } = await httpText(metricsUrl);
    const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(labels));
    return line ? Number(line.split(' ').pop()) : 0;
  };
  const reachesApp = async (content: string): Promise<void> => {
    await waitFor(
      `"${content.trim()}" on disk`,
      async () => (await readOrEmpty(configFile)) === content,
      30_000,
    );
    await waitFor(
      `a reload with "${content.trim()}"`,
      () => app.reloads.some((r) => r.content === content),
      30_000,
    );
  };

  before(async () => {
    cluster = await startTestCluster({ apiServerArgs: ['--watch-cache=false'] });
    kube = connect(cluster.kubeconfig);
    await cluster.install('deploy/overlays/self-managed');
    await createNamespace(kube, NS);
    await kube.core.createNamespacedServiceAccount({ namespace: NS, body: { metadata: { name: 'app' } } });
    await kube.core.createNamespacedSecret({
      namespace: NS,
      body: { metadata: { name: SECRET }, stringData: { 'app.yaml': 'v: 1\n' } },
    });
    pod = await createPod(kube, NS, {
      metadata: {
        name: 'app',
        annotations: {
          'config-reloader.io/inject': 'true',
          'config-reloader.io/reload-url': 'http://127.0.0.1:8080/-/reload',
        },
      },
      spec: {
        serviceAccountName: 'app',
        containers: [
          {
            name: 'app',
            image: 'example.com/app:1',
            volumeMounts: [{ name: 'config', mountPath: '/etc/app', readOnly: true }],
          },
        ],
        volumes: [{ name: 'config', secret: { secretName: SECRET } }],
      },
    });
    assert.equal(pod.metadata?.annotations?.['config-reloader.io/status'], 'injected');
    const token = await cluster.serviceAccountToken(NS, 'app', RBAC, {
      name: pod.metadata?.name as string,
      uid: pod.metadata?.uid as string,
    });
    sandbox = await preparePod(kube, pod, token);
    configFile = sandbox.hostPath('app', '/etc/app/app.yaml');
    app = await startStandInApp(configFile, '/-/reload');
    reloader = sandbox.start('config-reloader', { ports: { 8080: app.port } });
    const address = String((await reloader.waitForLog((l) => typeof l.address === 'string')).address);
    metricsUrl = `http://${address}/metrics`;
    await waitFor(
      'the reloader ready',
      async () => (await httpText(`http://${address}/readyz`)).status === 200,
    );
  });
  after(async () => {
    await reloader?.stop();
    await sandbox?.close();
    await app?.close();
    await cluster?.close();
  });

  void test('the first sync wrote the Secret; the bound token and the resourceNames Role were enough', async () => {
    assert.equal(await readFile(configFile, 'utf8'), 'v: 1\n');
    assert.equal(reloader.logs().filter((l) => /forbidden|cannot/i.test(String(l.msg))).length, 0);
  });

  void test('an update reaches the file and the reload endpoint', async () => {
    await setSecret('v: 2\n');
    await reachesApp('v: 2\n');
  });

  void test('deletion keeps the files; re-creation with new content syncs and reloads', async () => {
    await kube.core.deleteNamespacedSecret({ namespace: NS, name: SECRET });
    await waitFor(
      'the deletion counted',
      async () => (await metric('config_reloader_object_deletions_total', '')) >= 1,
    );
    assert.equal(await readFile(configFile, 'utf8'), 'v: 2\n');
    await kube.core.createNamespacedSecret({
      namespace: NS,
      body: { metadata: { name: SECRET }, stringData: { 'app.yaml': 'v: 3\n' } },
    });
    await reachesApp('v: 3\n');
  });

  void test('a restart of kube-apiserver: the watch comes back by itself and the next update arrives', async () => {
    await cluster.controlPlane.restartApiServer();
    await setSecret('v: 4\n');
    await reachesApp('v: 4\n');
  });

  void test('an etcd compaction past its resourceVersion: 410 Gone, a relist, and only the newest content', async () => {
    const goneBefore = await metric('config_reloader_watch_restarts_total', 'reason="gone"');
    // Frozen, the reloader cannot see its watch end; the changes and the compaction happen behind its back.
    reloader.child.kill('SIGSTOP');
    try {
      await cluster.controlPlane.restartApiServer();
      await setSecret('v: 5\n');
      await setSecret('v: 6\n');
      await cluster.controlPlane.compactEtcd();
    } finally {
      reloader.child.kill('SIGCONT');
    }
    await reachesApp('v: 6\n');
    await reloader.waitForLog((l) => l.msg === 'the watch expired (410 Gone): listing again');
    assert.ok((await metric('config_reloader_watch_restarts_total', 'reason="gone"')) > goneBefore);
    // v: 5 was never current when the reloader looked: it is never written, never reloaded.
    assert.equal(
      app.reloads.some((r) => r.content === 'v: 5\n'),
      false,
    );
  });
});
