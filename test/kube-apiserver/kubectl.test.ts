import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { TestApiServer } from '../support/kube-apiserver/index.ts';
import type { RequestRecord } from '../support/kube-apiserver/index.ts';
import { kubectlPath } from '../support/kubectl.ts';
import { waitFor } from '../support/wait.ts';

const b64 = (s: string): string => Buffer.from(s).toString('base64');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

void describe('test kube-apiserver: kubectl against it', () => {
  let api: TestApiServer;
  let dir: string;
  let kubectl: string;
  const children = new Set<ChildProcess>();

  /** Starts kubectl with its own HOME and cache, bounded by a timeout; the handle is killed in teardown. */
  function start(
    args: string[],
    kubeconfig = join(dir, 'admin.yaml'),
  ): { child: ChildProcess; out: { stdout: string; stderr: string }; done: Promise<Run> } {
    const child = spawn(
      kubectl,
      [`--kubeconfig=${kubeconfig}`, `--cache-dir=${join(dir, 'cache')}`, ...args],
      {
        env: { PATH: process.env.PATH ?? '/usr/bin', HOME: dir },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    children.add(child);
    const out = { stdout: '', stderr: '' };
    child.stdout?.on('data', (d: Buffer) => (out.stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (out.stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    const done = new Promise<Run>((resolve) =>
      child.on('close', (code) => {
        clearTimeout(timer);
        children.delete(child);
        resolve({ code, ...out });
      }),
    );
    return { child, out, done };
  }

  const run = (args: string[], kubeconfig?: string): Promise<Run> => start(args, kubeconfig).done;

  async function ok(args: string[]): Promise<string> {
    const r = await run(args);
    assert.equal(r.code, 0, `kubectl ${args.join(' ')} failed: ${r.stderr}`);
    return r.stdout;
  }

  before(async () => {
    kubectl = kubectlPath();
    api = await TestApiServer.start();
    dir = await mkdtemp(join(tmpdir(), 'kas-kubectl-'));
    await api.writeKubeconfig(join(dir, 'admin.yaml'));
    api.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'kc' } });
  });
  after(async () => {
    for (const child of children) child.kill('SIGKILL');
    await api.close();
    await rm(dir, { recursive: true, force: true });
  });

  void test('kubectl get secrets -o json lists what the server holds', async () => {
    api.create({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'listed', namespace: 'kc' },
      data: { k: b64('v') },
    });
    const list = JSON.parse(await ok(['get', 'secrets', '-n', 'kc', '-o', 'json']));
    const item = list.items.find((i: { metadata: { name: string } }) => i.metadata.name === 'listed');
    assert.equal(item.kind, 'Secret');
    assert.deepEqual(item.data, { k: b64('v') });
  });

  void test('kubectl create secret generic --from-literal (a protobuf request) creates the Secret', async () => {
    const out = await ok([
      'create',
      'secret',
      'generic',
      'made',
      '-n',
      'kc',
      '--from-literal=user=admin',
      '--from-literal=pass=pw',
    ]);
    assert.match(out, /secret\/made created/);
    assert.deepEqual(api.get('secrets', 'kc', 'made')?.data, { user: b64('admin'), pass: b64('pw') });
    assert.equal(api.get('secrets', 'kc', 'made')?.type, 'Opaque');
  });

  void test('kubectl apply -f creates, then updates a ConfigMap (keys removed from the manifest disappear), then kubectl delete removes it', async () => {
    const manifest = join(dir, 'cm.yaml');
    const write = (data: Record<string, string>): Promise<void> =>
      writeFile(
        manifest,
        `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\n  namespace: kc\ndata:\n${Object.entries(
          data,
        )
          .map(([k, v]) => `  ${k}: "${v}"`)
          .join('\n')}\n`,
      );
    await write({ a: '1', b: '2' });
    assert.match(await ok(['apply', '-f', manifest]), /configmap\/applied created/);
    assert.deepEqual(api.get('configmaps', 'kc', 'applied')?.data, { a: '1', b: '2' });
    await write({ b: '3' });
    assert.match(await ok(['apply', '-f', manifest]), /configmap\/applied configured/);
    assert.deepEqual(api.get('configmaps', 'kc', 'applied')?.data, { b: '3' });
    assert.match(await ok(['apply', '-f', manifest]), /configmap\/applied unchanged/);
    assert.match(await ok(['delete', '-f', manifest]), /configmap "applied" deleted/);
    assert.equal(api.get('configmaps', 'kc', 'applied'), undefined);
  });

  void test('kubectl get configmap NAME -w sees an update', async () => {
    api.create({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'watched', namespace: 'kc' },
      data: { k: 'before' },
    });
    const watching = (r: RequestRecord): boolean =>
      r.path === '/api/v1/namespaces/kc/configmaps' && /(^|&)watch=true/.test(r.query) && r.status === 200;
    const w = start([
      'get',
      'configmap',
      'watched',
      '-n',
      'kc',
      '-w',
      '-o',
      'jsonpath={.data.k}{"\\n"}',
      '--request-timeout=15s',
    ]);
    await waitFor(() => api.requests.some(watching), 'kubectl to open its watch');
    const current = api.get('configmaps', 'kc', 'watched');
    assert.ok(current);
    api.update({ ...current, data: { k: 'after' } });
    await waitFor(() => w.out.stdout.includes('after'), 'kubectl to print the update');
    assert.deepEqual(w.out.stdout.trim().split('\n'), ['before', 'after']);
    w.child.kill('SIGTERM');
    await w.done;
  });

  void test('a forbidden kubectl call prints the Forbidden message and exits non-zero', async () => {
    api.create({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'granted', namespace: 'kc' },
      data: {},
    });
    const token = api.addServiceAccount('kc', 'reader', [
      { verbs: ['get'], resource: 'secrets', namespace: 'kc', names: ['granted'] },
    ]);
    const kubeconfig = join(dir, 'reader.yaml');
    await api.writeKubeconfig(kubeconfig, { token, namespace: 'kc' });
    const allowed = await run(['get', 'secret', 'granted', '-o', 'name'], kubeconfig);
    assert.equal(allowed.code, 0, allowed.stderr);
    assert.equal(allowed.stdout.trim(), 'secret/granted');
    const denied = await run(['get', 'secrets'], kubeconfig);
    assert.notEqual(denied.code, 0);
    assert.match(
      denied.stderr,
      /Error from server \(Forbidden\): secrets is forbidden: User "system:serviceaccount:kc:reader" cannot list resource "secrets" in API group "" in the namespace "kc"/,
    );
  });
});
