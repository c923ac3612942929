import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { V1Pod } from '@kubernetes/client-node';
import type { Kube } from './kube.ts';
import { apiErrorOf, connect, createNamespace, createPod } from './kube.ts';
import { findObject } from './manifests.ts';
import type { TestCluster } from './test-cluster.ts';
import { startTestCluster } from './test-cluster.ts';

function appPod(name: string, annotations: Record<string, string> = {}): V1Pod {
  return {
    metadata: { name, annotations },
    spec: {
      containers: [
        {
          name: 'app',
          image: 'example.com/shop:1.4.2',
          volumeMounts: [{ name: 'config', mountPath: '/etc/app' }],
        },
      ],
      volumes: [{ name: 'config', secret: { secretName: 'app-config' } }],
    },
  };
}

/** Tests run in order: the webhook is stopped for the first ones and started again for the last. */
void describe('e2e: pods while the webhook is down, with the base (Ignore) and the fail-closed variant (Fail)', () => {
  let cluster: TestCluster;
  let kube: Kube;

  before(async () => {
    cluster = await startTestCluster();
    kube = connect(cluster.kubeconfig);
    await createNamespace(kube, 'labelled', { 'config-reloader.io/injection': 'enabled' });
    await createNamespace(kube, 'plain');
  });
  after(() => cluster.close());

  void test('failurePolicy Ignore (deploy/base): the pod is admitted unchanged', async () => {
    const installed = findObject(
      await cluster.install('deploy/overlays/self-managed'),
      'MutatingWebhookConfiguration',
    );
    assert.deepEqual(
      (installed.webhooks as Array<{ failurePolicy: string }>).map((w) => w.failurePolicy),
      ['Ignore', 'Ignore'],
    );
    await cluster.webhook.stop();
    const pod = await createPod(kube, 'labelled', appPod('while-down'));
    assert.equal(pod.spec?.initContainers, undefined);
    assert.equal(pod.metadata?.annotations?.['config-reloader.io/status'], undefined);
    assert.deepEqual(pod.spec?.volumes?.find((v) => v.name === 'config')?.secret?.secretName, 'app-config');
  });

  void test("failurePolicy Fail (overlays/self-managed-fail-closed): an opted-in pod is rejected with the call's error", async () => {
    const installed = findObject(
      await cluster.install('deploy/overlays/self-managed-fail-closed'),
      'MutatingWebhookConfiguration',
    );
    assert.deepEqual(
      (installed.webhooks as Array<{ failurePolicy: string }>).map((w) => w.failurePolicy),
      ['Fail', 'Fail'],
    );
    for (const [namespace, name, annotations, webhook, path] of [
      ['labelled', 'refused-1', {}, 'namespace.config-reloader.io', '/mutate/namespace'],
      ['plain', 'refused-2', { 'config-reloader.io/inject': 'true' }, 'pod.config-reloader.io', '/mutate'],
    ] as const) {
      await assert.rejects(createPod(kube, namespace, appPod(name, annotations)), (err: unknown) => {
        const { code, message } = apiErrorOf(err);
        assert.equal(code, 500);
        assert.match(
          message,
          new RegExp(
            `^Internal error occurred: failed calling webhook "${webhook.replace(/\./g, '\\.')}": failed to call webhook: ` +
              `Post "${cluster.webhook.url.replace(/\./g, '\\.')}${path}\\?timeout=\\d+s": .*connection refused`,
          ),
        );
        return true;
      });
    }
  });

  void test('with Fail, pods that did not opt in are still created while the webhook is down', async () => {
    const pod = await createPod(kube, 'plain', appPod('bystander'));
    assert.equal(pod.spec?.initContainers, undefined);
  });

  void test('with Fail and the webhook back, the same pod is created injected', async () => {
    await cluster.webhook.start();
    const pod = await createPod(kube, 'labelled', appPod('refused-1'));
    assert.equal(pod.metadata?.annotations?.['config-reloader.io/status'], 'injected');
    assert.equal(pod.spec?.initContainers?.[0]?.name, 'config-reloader');
  });
});
