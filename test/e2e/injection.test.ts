import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { startStubWebhook } from '../support/kube-apiserver/stub-webhook.ts';
import type { Kube } from './kube.ts';
import { apiErrorOf, applyObjects, connect, createNamespace, createPod } from './kube.ts';
import type { TestCluster } from './test-cluster.ts';
import { startTestCluster } from './test-cluster.ts';

const SA_PATH = '/var/run/secrets/kubernetes.io/serviceaccount';

function appPod(name: string, annotations: Record<string, string> = {}): V1Pod {
  return {
    metadata: { name, annotations },
    spec: {
      containers: [
        {
          name: 'app',
          image: 'example.com/shop:1.4.2',
          ports: [{ containerPort: 8080 }],
          volumeMounts: [{ name: 'config', mountPath: '/etc/app', readOnly: true }],
        },
      ],
      volumes: [{ name: 'config', secret: { secretName: 'app-config' } }],
    },
  };
}

function mountAt(container: V1Container | undefined, path: string): string | undefined {
  return container?.volumeMounts?.find((m) => m.mountPath === path)?.name;
}

void describe('e2e (real kube-apiserver): the webhook installed from deploy/overlays/self-managed', () => {
  let cluster: TestCluster;
  let kube: Kube;
  /** The webhook's own record of the reviews it answered, by pod name. */
  const reviewsOf = (pod: string) =>
    cluster.webhook.log.filter((l) => l.msg === 'admission review' && l.pod === pod);
  const requestsTotal = (): number =>
    [
      ...cluster.webhook.metrics().matchAll(/^config_reloader_webhook_requests_total\{[^}]*\} (\d+)$/gm),
    ].reduce((sum, m) => sum + Number(m[1]), 0);

  before(async () => {
    cluster = await startTestCluster();
    kube = connect(cluster.kubeconfig);
    await cluster.install('deploy/overlays/self-managed');
    await createNamespace(kube, 'labelled', { 'config-reloader.io/injection': 'enabled' });
    await createNamespace(kube, 'plain');
    for (const namespace of ['labelled', 'plain', 'kube-system'])
      await kube.core.createNamespacedSecret({
        namespace,
        body: { metadata: { name: 'app-config' }, stringData: { 'app.yaml': 'v: 1' } },
      });
  });
  after(() => cluster.close());

  void test('a pod in a namespace labelled config-reloader.io/injection=enabled comes back injected', async () => {
    const pod = await createPod(kube, 'labelled', appPod('web-1'));
    assert.equal(pod.metadata?.annotations?.['config-reloader.io/status'], 'injected');
    const sidecar = pod.spec?.initContainers?.[0];
    assert.equal(sidecar?.name, 'config-reloader');
    assert.equal(sidecar?.restartPolicy, 'Always');
    assert.ok(sidecar?.args?.includes('reloader'));
    assert.ok(sidecar?.args?.some((a) => a.startsWith('--source=secret/app-config=')));
    // The ServiceAccount step ran before the webhook: the app has its token, and the sidecar mounts the same volume.
    const app = pod.spec?.containers?.[0];
    const tokenVolume = mountAt(app, SA_PATH);
    assert.match(String(tokenVolume), /^kube-api-access-/);
    assert.equal(mountAt(sidecar, SA_PATH), tokenVolume);
    // The secret volume became an in-memory emptyDir the sidecar writes into, still mounted by the app.
    const config = pod.spec?.volumes?.find((v) => v.name === 'config');
    assert.deepEqual({ ...config?.emptyDir }, { medium: 'Memory' });
    assert.equal(config?.secret, undefined);
    assert.equal(mountAt(app, '/etc/app'), 'config');
    assert.ok(sidecar?.volumeMounts?.some((m) => m.name === 'config'));
    // Defaults the API server applied to what the webhook added.
    assert.equal(sidecar?.terminationMessagePolicy, 'FallbackToLogsOnError');
    assert.equal(sidecar?.imagePullPolicy, 'IfNotPresent');
    assert.deepEqual(
      reviewsOf('web-1').map((l) => [l.path, l.decision]),
      [['/mutate/namespace', 'injected']],
    );
    const stored = await kube.core.readNamespacedPod({ namespace: 'labelled', name: 'web-1' });
    assert.deepEqual(stored.spec, pod.spec);
  });

  void test('a pod in a plain namespace without the annotation comes back untouched, and was not even sent', async () => {
    const before = requestsTotal();
    const pod = await createPod(kube, 'plain', appPod('plain-1'));
    assert.equal(pod.metadata?.annotations?.['config-reloader.io/status'], undefined);
    assert.equal(pod.spec?.initContainers, undefined);
    assert.deepEqual(
      pod.spec?.containers?.map((c) => c.name),
      ['app'],
    );
    assert.deepEqual(pod.spec?.volumes?.find((v) => v.name === 'config')?.secret?.secretName, 'app-config');
    // matchConditions kept it from the webhook: no review logged, no request counted.
    assert.deepEqual(reviewsOf('plain-1'), []);
    assert.equal(requestsTotal(), before);
  });

  void test('a pod with the annotation in a plain namespace is injected through /mutate', async () => {
    const pod = await createPod(kube, 'plain', appPod('opted-in', { 'config-reloader.io/inject': 'true' }));
    assert.equal(pod.metadata?.annotations?.['config-reloader.io/status'], 'injected');
    assert.equal(pod.spec?.initContainers?.[0]?.name, 'config-reloader');
    assert.deepEqual(
      reviewsOf('opted-in').map((l) => [l.path, l.decision]),
      [['/mutate', 'injected']],
    );
  });

  void test('kube-system pods are never sent, even with the annotation', async () => {
    const before = requestsTotal();
    const pod = await createPod(
      kube,
      'kube-system',
      appPod('system-1', { 'config-reloader.io/inject': 'true' }),
    );
    assert.equal(pod.spec?.initContainers, undefined);
    assert.deepEqual(reviewsOf('system-1'), []);
    assert.equal(requestsTotal(), before);
  });

  void test('a pod opting out in a labelled namespace is sent and left alone', async () => {
    const pod = await createPod(
      kube,
      'labelled',
      appPod('opted-out', { 'config-reloader.io/inject': 'false' }),
    );
    assert.equal(pod.spec?.initContainers, undefined);
    assert.deepEqual(
      reviewsOf('opted-out').map((l) => [l.path, l.decision]),
      [['/mutate/namespace', 'skipped']],
    );
  });

  void describe('a later webhook that changes the pod (reinvocationPolicy: Never)', () => {
    // Another team's webhook, ordered after ours (configurations run by name), adding to every pod what meshes
    // and secret injectors add: a scratch volume, and a configMap volume of its own (as Istio's istiod-ca-cert).
    let other: Awaited<ReturnType<typeof startStubWebhook>>;
    const addedVolumes = [
      { name: 'scratch', emptyDir: {} },
      { name: 'mesh-ca', configMap: { name: 'mesh-ca-root-cert' } },
    ];
    before(async () => {
      other = await startStubWebhook((request) => ({
        allowed: true,
        patch: (request.object as V1Pod).spec?.volumes
          ? addedVolumes.map((value) => ({ op: 'add', path: '/spec/volumes/-', value }))
          : [{ op: 'add', path: '/spec/volumes', value: addedVolumes }],
      }));
      await applyObjects(kube, [
        {
          apiVersion: 'admissionregistration.k8s.io/v1',
          kind: 'MutatingWebhookConfiguration',
          metadata: { name: 'zz-volume-adder' },
          webhooks: [
            {
              name: 'volumes.example.com',
              admissionReviewVersions: ['v1'],
              sideEffects: 'None',
              failurePolicy: 'Fail',
              clientConfig: { url: `${other.url}/add`, caBundle: other.caBundle },
              rules: [{ apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['pods'] }],
              namespaceSelector: { matchLabels: { 'config-reloader.io/injection': 'enabled' } },
            },
          ],
        },
      ]);
    });
    after(async () => {
      await kube.objects.delete({
        apiVersion: 'admissionregistration.k8s.io/v1',
        kind: 'MutatingWebhookConfiguration',
        metadata: { name: 'zz-volume-adder' },
      });
      await other.close();
    });

    void test('the injector is called once: the pod keeps one sidecar, and the volume added later is left to the kubelet', async () => {
      const calls = other.calls.length;
      const pod = await createPod(kube, 'labelled', appPod('reinvoked'));
      assert.equal(other.calls.length, calls + 1);
      assert.ok(pod.spec?.volumes?.some((v) => v.name === 'scratch'));
      assert.equal(pod.spec?.initContainers?.filter((c) => c.name === 'config-reloader').length, 1);
      // The other webhook's configMap volume is its own: not converted, not synced by the sidecar.
      const meshCa = pod.spec?.volumes?.find((v) => v.name === 'mesh-ca');
      assert.equal(meshCa?.configMap?.name, 'mesh-ca-root-cert');
      assert.equal(meshCa?.emptyDir, undefined);
      const args = pod.spec?.initContainers?.[0]?.args ?? [];
      assert.ok(!args.some((a) => a.includes('mesh-ca-root-cert')), args.join(' '));
      assert.deepEqual(
        reviewsOf('reinvoked').map((l) => [l.path, l.decision]),
        [['/mutate/namespace', 'injected']],
      );
    });

    void test('a pod with nothing to sync stays without the sidecar when a later webhook gives it a configMap volume', async () => {
      // With IfNeeded, the second call saw the other webhook's configMap volume and injected a sidecar to sync
      // it: a Role for that object is nowhere, so the native sidecar would never be ready and the pod never start.
      const plain: V1Pod = {
        metadata: { name: 'meshed' },
        spec: { containers: [{ name: 'app', image: 'example.com/shop:1.4.2' }] },
      };
      const pod = await createPod(kube, 'labelled', plain);
      assert.equal(pod.metadata?.annotations?.['config-reloader.io/status'], undefined);
      assert.equal(pod.spec?.initContainers, undefined);
      assert.equal(
        pod.spec?.volumes?.find((v) => v.name === 'mesh-ca')?.configMap?.name,
        'mesh-ca-root-cert',
      );
      assert.deepEqual(
        reviewsOf('meshed').map((l) => [l.path, l.decision, l.reason]),
        [['/mutate/namespace', 'skipped', 'nothing to sync']],
      );
    });
  });

  void test("a denial (an invalid annotation) reaches the client as the webhook's message, and nothing is created", async () => {
    await assert.rejects(
      createPod(kube, 'plain', appPod('typo', { 'config-reloader.io/inject': 'ture' })),
      (err: unknown) => {
        const { code, message } = apiErrorOf(err);
        assert.equal(code, 400);
        assert.match(
          message,
          /^admission webhook "pod\.config-reloader\.io" denied the request: config-reloader\.io\/inject: "ture" is neither "true" nor "false"/,
        );
        return true;
      },
    );
    await assert.rejects(
      kube.core.readNamespacedPod({ namespace: 'plain', name: 'typo' }),
      (err: unknown) => apiErrorOf(err).code === 404,
    );
  });
});
