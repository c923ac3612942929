import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { stringify } from 'yaml';
import { connect, createNamespace } from './kube.ts';
import { kubectlPath } from '../support/kubectl.ts';
import type { TestCluster } from './test-cluster.ts';
import { startTestCluster } from './test-cluster.ts';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

void describe('e2e: kubectl create -f against the API server with the webhook installed', () => {
  let cluster: TestCluster;
  let kubectl: string;

  const run = (args: string[]): Promise<Run> =>
    new Promise((resolve) => {
      execFile(
        kubectl,
        [`--kubeconfig=${cluster.kubeconfig}`, `--cache-dir=${join(cluster.dir, 'cache')}`, ...args],
        { env: { PATH: process.env.PATH ?? '/usr/bin', HOME: cluster.dir }, timeout: 30_000 },
        (err, stdout, stderr) =>
          resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });

  const podFile = async (
    name: string,
    annotations: Record<string, string>,
    subPath = false,
  ): Promise<string> => {
    const file = join(cluster.dir, `${name}.yaml`);
    await writeFile(
      file,
      stringify({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name, namespace: 'shop', annotations },
        spec: {
          containers: [
            {
              name: 'app',
              image: 'example.com/shop:1.4.2',
              volumeMounts: [
                {
                  name: 'config',
                  mountPath: '/etc/app/app.yaml',
                  ...(subPath ? { subPath: 'app.yaml' } : {}),
                },
              ],
            },
          ],
          volumes: [{ name: 'config', secret: { secretName: 'app-config' } }],
        },
      }),
    );
    return file;
  };

  before(async () => {
    kubectl = kubectlPath();
    cluster = await startTestCluster();
    const kube = connect(cluster.kubeconfig);
    await cluster.install('deploy/overlays/self-managed');
    await createNamespace(kube, 'shop');
  });
  after(() => cluster.close());

  void test('kubectl create -f pod.yaml makes an injected pod, and kubectl get shows it', async () => {
    const created = await run([
      'create',
      '-f',
      await podFile('from-kubectl', { 'config-reloader.io/inject': 'true' }),
    ]);
    assert.equal(created.code, 0, created.stderr);
    assert.equal(created.stdout.trim(), 'pod/from-kubectl created');
    const got = await run(['get', 'pod', 'from-kubectl', '-n', 'shop', '-o', 'json']);
    assert.equal(got.code, 0, got.stderr);
    const pod = JSON.parse(got.stdout) as {
      metadata: { annotations: Record<string, string> };
      spec: { initContainers?: Array<{ name: string }>; serviceAccountName: string };
    };
    assert.equal(pod.metadata.annotations['config-reloader.io/status'], 'injected');
    assert.deepEqual(
      pod.spec.initContainers?.map((c) => c.name),
      ['config-reloader'],
    );
    assert.equal(pod.spec.serviceAccountName, 'default');
  });

  void test("the webhook's warnings are printed by kubectl", async () => {
    const created = await run([
      'create',
      '-f',
      await podFile('with-subpath', { 'config-reloader.io/inject': 'true' }, true),
    ]);
    assert.equal(created.code, 0, created.stderr);
    // Mounted only through subPath, the volume is left to the kubelet (a subPath mount never sees updates) and the
    // pod, with nothing else to sync, is not injected: both warnings reach the user.
    assert.match(
      created.stderr,
      /^Warning: volume "config" is not kept current by config-reloader: every mount of it uses subPath \(container "app"\)/m,
    );
    assert.match(
      created.stderr,
      /^Warning: config-reloader\.io\/inject: the pod opted in but has nothing to sync/m,
    );
  });

  void test('a denial is printed by kubectl as the API server words it', async () => {
    const created = await run([
      'create',
      '-f',
      await podFile('denied', { 'config-reloader.io/inject': 'ture' }),
    ]);
    assert.notEqual(created.code, 0);
    assert.match(
      created.stderr,
      /Error from server \(BadRequest\): error when creating ".*denied\.yaml": admission webhook "pod\.config-reloader\.io" denied the request: config-reloader\.io\/inject: "ture" is neither "true" nor "false"/,
    );
  });
});
