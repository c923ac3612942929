import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { V1Pod, V1PodSpec } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import type { Kube } from './kube.ts';
import { apiErrorOf, connect, createNamespace, waitFor } from './kube.ts';
import type { TestCluster } from './test-cluster.ts';
import { startTestCluster } from './test-cluster.ts';

/** A pod spec that the "restricted" Pod Security Standard admits, with a Secret volume to sync. */
function restrictedSpec(restartPolicy?: 'Never' | 'OnFailure'): V1PodSpec {
  return {
    ...(restartPolicy ? { restartPolicy } : {}),
    securityContext: {
      runAsNonRoot: true,
      runAsUser: 65534,
      runAsGroup: 65534,
      fsGroup: 65534,
      seccompProfile: { type: 'RuntimeDefault' },
    },
    containers: [
      {
        name: 'app',
        image: 'example.com/shop:1.4.2',
        securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
        volumeMounts: [{ name: 'config', mountPath: '/etc/app', readOnly: true }],
      },
    ],
    volumes: [{ name: 'config', secret: { secretName: 'app-config' } }],
  };
}

const template = (restartPolicy?: 'Never' | 'OnFailure') => ({
  metadata: { labels: { app: 'shop' } },
  spec: restrictedSpec(restartPolicy),
});

/**
 * What only the real control plane shows: its validation and PodSecurity "restricted" applied to what the
 * webhook returns, and kube-controller-manager creating the pods of Deployments, Jobs and CronJobs (so the
 * webhook's patch goes through the same admission as a controller's pod, with its generateName).
 */
void describe('e2e (real kube-apiserver): injected pods of every kind pass validation and PodSecurity restricted', () => {
  let cluster: TestCluster;
  let kube: Kube;
  const ns = 'restricted-shop';

  const podsOf = async (ownerKind: string, ownerPrefix: string): Promise<V1Pod[]> =>
    (await kube.core.listNamespacedPod({ namespace: ns })).items.filter((p) =>
      p.metadata?.ownerReferences?.some((o) => o.kind === ownerKind && o.name.startsWith(ownerPrefix)),
    );

  /** The controller's pod, or a failure message with the controller's events (a denied pod shows there). */
  const waitForPod = async (ownerKind: string, ownerPrefix: string, timeoutMs = 30_000): Promise<V1Pod> => {
    try {
      return await waitFor(
        `a pod of ${ownerKind} ${ownerPrefix}`,
        async () => (await podsOf(ownerKind, ownerPrefix))[0],
        timeoutMs,
      );
    } catch (err) {
      const events = (await kube.core.listNamespacedEvent({ namespace: ns })).items
        .map((e) => `${e.involvedObject.kind}/${e.involvedObject.name}: ${e.reason}: ${e.message}`)
        .join('\n');
      throw new Error(`${(err as Error).message}; events:\n${events}`, { cause: err });
    }
  };

  const assertInjected = (pod: V1Pod): void => {
    assert.equal(pod.metadata?.annotations?.['config-reloader.io/status'], 'injected');
    const sidecar = pod.spec?.initContainers?.[0];
    assert.equal(sidecar?.name, 'config-reloader');
    assert.equal(sidecar?.restartPolicy, 'Always');
    assert.deepEqual(
      { ...pod.spec?.volumes?.find((v) => v.name === 'config')?.emptyDir },
      { medium: 'Memory' },
    );
  };

  before(async () => {
    cluster = await startTestCluster();
    kube = connect(cluster.kubeconfig);
    await cluster.install('deploy/overlays/self-managed');
    await createNamespace(kube, ns, {
      'config-reloader.io/injection': 'enabled',
      'pod-security.kubernetes.io/enforce': 'restricted',
      'pod-security.kubernetes.io/enforce-version': 'latest',
    });
    await kube.core.createNamespacedSecret({
      namespace: ns,
      body: { metadata: { name: 'app-config' }, stringData: { 'app.yaml': 'v: 1' } },
    });
    // The CronJob controller acts on the minute: created first, checked last.
    await cluster.kubectl(
      ['create', '-n', ns, '-f', '-'],
      stringify({
        apiVersion: 'batch/v1',
        kind: 'CronJob',
        metadata: { name: 'nightly' },
        spec: {
          schedule: '* * * * *',
          jobTemplate: { spec: { backoffLimit: 0, template: template('Never') } },
        },
      }),
    );
  });
  after(() => cluster?.close());

  void test('the namespace really enforces restricted: a pod that breaks it is refused by the API server', async () => {
    const spec = restrictedSpec();
    spec.securityContext = {};
    await assert.rejects(
      kube.core.createNamespacedPod({ namespace: ns, body: { metadata: { name: 'not-restricted' }, spec } }),
      (err: unknown) => {
        const { code, message } = apiErrorOf(err);
        assert.equal(code, 403);
        assert.match(message, /violates PodSecurity "restricted:latest": runAsNonRoot != true/);
        return true;
      },
    );
  });

  void test('a pod created directly is injected and admitted', async () => {
    const pod = await kube.core.createNamespacedPod({
      namespace: ns,
      body: { metadata: { name: 'direct' }, spec: restrictedSpec() },
    });
    assertInjected(pod);
  });

  void test("a Deployment's pod, made by kube-controller-manager, is injected and admitted", async () => {
    const created = await cluster.kubectl(
      ['create', '-n', ns, '-f', '-'],
      stringify({
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name: 'shop' },
        spec: { replicas: 1, selector: { matchLabels: { app: 'shop' } }, template: template() },
      }),
    );
    assert.equal(created.code, 0, created.stderr);
    assertInjected(await waitForPod('ReplicaSet', 'shop-'));
  });

  void test("a Job's pod (restartPolicy Never) is injected and admitted", async () => {
    const created = await cluster.kubectl(
      ['create', '-n', ns, '-f', '-'],
      stringify({
        apiVersion: 'batch/v1',
        kind: 'Job',
        metadata: { name: 'migrate' },
        spec: { backoffLimit: 0, template: template('Never') },
      }),
    );
    assert.equal(created.code, 0, created.stderr);
    assertInjected(await waitForPod('Job', 'migrate'));
  });

  void test('kubectl create --dry-run=server returns the injected pod and stores nothing', async () => {
    const result = await cluster.kubectl(
      ['create', '--dry-run=server', '-n', ns, '-o', 'json', '-f', '-'],
      stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'dry' }, spec: restrictedSpec() }),
    );
    assert.equal(result.code, 0, result.stderr);
    assertInjected(JSON.parse(result.stdout) as V1Pod);
    await assert.rejects(kube.core.readNamespacedPod({ namespace: ns, name: 'dry' }), /404|not found/i);
    const reviews = cluster.webhook.log.filter((l) => l.msg === 'admission review' && l.pod === 'dry');
    assert.deepEqual(
      reviews.map((l) => l.decision),
      ['injected'],
    );
  });

  void test("a CronJob's pod, through its Job, is injected and admitted", async () => {
    const job = await waitFor(
      'the CronJob controller to create a Job',
      async () =>
        (await cluster.kubectl(['get', 'jobs', '-n', ns, '-o', 'name'])).stdout
          .split('\n')
          .find((l) => l.startsWith('job.batch/nightly-')),
      75_000,
    );
    assertInjected(await waitForPod('Job', job.slice('job.batch/'.length)));
  });
});
