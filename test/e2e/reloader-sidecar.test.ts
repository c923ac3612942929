import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { get } from 'node:http';
import { after, before, describe, test } from 'node:test';
import type { V1Pod } from '@kubernetes/client-node';
import type { KubeObject } from '../support/kube-apiserver/index.ts';
import type { Kube } from './kube.ts';
import { applyObjects, connect, createPod, waitFor } from './kube.ts';
import type { PodSandbox, RunningContainer } from './kubelet.ts';
import { preparePod } from './kubelet.ts';
import { findObject, renderKustomize } from './manifests.ts';
import type { StandInApp } from './stand-in-app.ts';
import { startStandInApp } from './stand-in-app.ts';
import type { TestCluster } from './test-cluster.ts';
import { startTestCluster } from './test-cluster.ts';

const SA_PATH = '/var/run/secrets/kubernetes.io/serviceaccount';

function httpStatus(url: string): Promise<number> {
  return new Promise((resolve) => {
    get(url, { agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    }).on('error', () => resolve(0));
  });
}

const readOrEmpty = (path: string): Promise<string> => readFile(path, 'utf8').catch(() => '');

/**
 * deploy/example as a user would run it: its Namespace, Secret and ServiceAccount applied, its Deployment's pod
 * created and injected through the API server, then the injected sidecar started from that pod's own spec next
 * to a stand-in for Prometheus, and the Secret changed through the API.
 */
void describe("e2e: the injected reloader keeps deploy/example's app current", () => {
  let cluster: TestCluster;
  let kube: Kube;
  let example: KubeObject[];
  let namespace: string;
  let pod: V1Pod;
  let sandbox: PodSandbox | undefined;
  let app: StandInApp | undefined;
  let reloader: RunningContainer | undefined;

  before(async () => {
    cluster = await startTestCluster();
    kube = connect(cluster.kubeconfig);
    await cluster.install('deploy/overlays/self-managed');
    example = await renderKustomize('deploy/example');
    namespace = findObject(example, 'Namespace').metadata.name;
    await applyObjects(kube, [
      findObject(example, 'Namespace'),
      findObject(example, 'ServiceAccount'),
      findObject(example, 'Secret'),
    ]);
  });
  after(async () => {
    await reloader?.stop();
    await sandbox?.close();
    await app?.close();
    await cluster.close();
  });

  void test("the Deployment's pod is created with the sidecar and a token volume of its own", async () => {
    const template = findObject(example, 'Deployment').spec as {
      template: { metadata: V1Pod['metadata']; spec: V1Pod['spec'] };
    };
    pod = await createPod(kube, namespace, {
      metadata: { ...template.template.metadata, name: 'prometheus-e2e' },
      spec: template.template.spec,
    });
    assert.equal(pod.metadata?.annotations?.['config-reloader.io/status'], 'injected');
    const sidecar = pod.spec?.initContainers?.find((c) => c.name === 'config-reloader');
    assert.ok(sidecar, 'the sidecar was injected');
    // automountServiceAccountToken: false: the app has no token, the sidecar mounts one of its own.
    const app = pod.spec?.containers?.find((c) => c.name === 'prometheus');
    assert.equal(
      app?.volumeMounts?.find((m) => m.mountPath === SA_PATH),
      undefined,
    );
    assert.equal(
      sidecar.volumeMounts?.find((m) => m.mountPath === SA_PATH)?.name,
      'config-reloader-api-access',
    );
  });

  void test("the sidecar, run from the pod's spec, writes the Secret into the app's directory and becomes ready", async () => {
    const token = await cluster.serviceAccountToken(
      namespace,
      pod.spec?.serviceAccountName as string,
      example,
      {
        name: pod.metadata?.name as string,
        uid: pod.metadata?.uid as string,
      },
    );
    sandbox = await preparePod(kube, pod, token);
    const sidecar = pod.spec?.initContainers?.find((c) => c.name === 'config-reloader');
    // The preset's reload URL, as the webhook wrote it into the sidecar's arguments.
    const reloadArg = sidecar?.args?.find((a) => a.startsWith('--reload-url='));
    assert.ok(reloadArg, 'the prometheus preset gave the sidecar a reload URL');
    const reloadUrl = new URL(reloadArg.slice('--reload-url='.length));
    assert.equal(reloadUrl.href, 'http://127.0.0.1:9090/-/reload');
    const configFile = sandbox.hostPath('prometheus', '/etc/prometheus/prometheus.yml');
    app = await startStandInApp(configFile, reloadUrl.pathname);
    reloader = sandbox.start('config-reloader', { ports: { [Number(reloadUrl.port)]: app.port } });

    const address = String((await reloader.waitForLog((l) => typeof l.address === 'string')).address);
    const probe = sidecar?.startupProbe?.httpGet?.path as string;
    await waitFor(
      "the sidecar's startup probe to pass",
      async () => (await httpStatus(`http://${address}${probe}`)) === 200,
    );
    const secret = await kube.core.readNamespacedSecret({ namespace, name: 'prometheus-config' });
    const expected = Buffer.from(secret.data?.['prometheus.yml'] as string, 'base64').toString('utf8');
    assert.equal(await readFile(configFile, 'utf8'), expected);
    // The first sync happens before the app starts: no reload for it.
    assert.deepEqual(app.reloads, []);
  });

  void test("a change of the Secret through the API reaches the app's file and its reload endpoint", async () => {
    assert.ok(sandbox && app && reloader);
    const configFile = sandbox.hostPath('prometheus', '/etc/prometheus/prometheus.yml');
    const secret = await kube.core.readNamespacedSecret({ namespace, name: 'prometheus-config' });
    const updated = 'global:\n  scrape_interval: 5s\n';
    secret.data = { ...secret.data, 'prometheus.yml': Buffer.from(updated).toString('base64') };
    await kube.core.replaceNamespacedSecret({ namespace, name: 'prometheus-config', body: secret });

    await waitFor('the new content on disk', async () => (await readOrEmpty(configFile)) === updated);
    const reload = await waitFor('a reload request', () => app?.reloads.find((r) => r.content === updated));
    assert.equal(reload.method, 'POST');
    assert.equal(reload.path, '/-/reload');
  });
});
