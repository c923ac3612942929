import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ApiException, CoreV1Api, KubeConfig, Watch, makeInformer } from '@kubernetes/client-node';
import type { V1ConfigMap, V1Secret } from '@kubernetes/client-node';
import { TestApiServer } from '../support/kube-apiserver/index.ts';
import type { KubeObject } from '../support/kube-apiserver/index.ts';
import { waitFor } from '../support/wait.ts';

const b64 = (s: string): string => Buffer.from(s).toString('base64');

void describe('test kube-apiserver: @kubernetes/client-node against it', () => {
  let api: TestApiServer;
  let dir: string;
  let kc: KubeConfig;
  let core: CoreV1Api;

  async function kubeConfig(opts: { token?: string; namespace?: string } = {}): Promise<KubeConfig> {
    const path = join(dir, `kubeconfig-${Math.random().toString(36).slice(2)}`);
    await api.writeKubeconfig(path, opts);
    const config = new KubeConfig();
    config.loadFromFile(path);
    return config;
  }

  before(async () => {
    api = await TestApiServer.start({ bookmarkIntervalMs: 200 });
    dir = await mkdtemp(join(tmpdir(), 'kas-client-node-'));
    kc = await kubeConfig();
    core = kc.makeApiClient(CoreV1Api);
  });
  after(async () => {
    await api.close();
    await rm(dir, { recursive: true, force: true });
  });

  void test('CoreV1Api creates, reads and lists Secrets through a kubeconfig', async () => {
    await core.createNamespace({ body: { metadata: { name: 'cn' } } });
    const created = await core.createNamespacedSecret({
      namespace: 'cn',
      body: { metadata: { name: 'db', labels: { app: 'shop' } }, stringData: { password: 'pw' } },
    });
    assert.equal(created.metadata?.resourceVersion, api.resourceVersion);
    const read = await core.readNamespacedSecret({ namespace: 'cn', name: 'db' });
    assert.deepEqual(read.data, { password: b64('pw') });
    assert.equal(read.type, 'Opaque');
    const list = await core.listNamespacedSecret({ namespace: 'cn', labelSelector: 'app=shop' });
    assert.deepEqual(
      list.items.map((s) => s.metadata?.name),
      ['db'],
    );
    assert.equal(list.metadata?.resourceVersion, api.resourceVersion);
    const cm = await core.createNamespacedConfigMap({
      namespace: 'cn',
      body: { metadata: { name: 'cfg' }, data: { a: '1' } },
    });
    const patched = await core.patchNamespacedConfigMap({
      namespace: 'cn',
      name: 'cfg',
      body: [{ op: 'replace', path: '/data/a', value: '2' }],
    });
    assert.equal(patched.data?.a, '2');
    assert.notEqual(patched.metadata?.resourceVersion, cm.metadata?.resourceVersion);
    await core.deleteNamespacedConfigMap({ namespace: 'cn', name: 'cfg' });
    await assert.rejects(core.readNamespacedConfigMap({ namespace: 'cn', name: 'cfg' }), (err: unknown) => {
      assert.ok(err instanceof ApiException);
      assert.equal(err.code, 404);
      return true;
    });
  });

  void test('Watch receives ADDED, MODIFIED and DELETED', async () => {
    api.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'cw' } });
    const seen: Array<[string, string, string]> = [];
    let doneErr: unknown = 'not done';
    const controller = await new Watch(kc).watch(
      '/api/v1/namespaces/cw/configmaps',
      { allowWatchBookmarks: true },
      (type: string, obj: V1ConfigMap) => {
        if (type !== 'BOOKMARK') seen.push([type, obj.metadata?.name ?? '', obj.data?.k ?? '']);
      },
      (err: unknown) => (doneErr = err),
    );
    await waitFor(() => api.openWatches > 0, 'the watch to be open');
    await core.createNamespacedConfigMap({
      namespace: 'cw',
      body: { metadata: { name: 'w' }, data: { k: '1' } },
    });
    await core.replaceNamespacedConfigMap({
      namespace: 'cw',
      name: 'w',
      body: { metadata: { name: 'w' }, data: { k: '2' } },
    });
    await core.deleteNamespacedConfigMap({ namespace: 'cw', name: 'w' });
    await waitFor(() => seen.length >= 3, 'three events');
    assert.deepEqual(seen, [
      ['ADDED', 'w', '1'],
      ['MODIFIED', 'w', '2'],
      ['DELETED', 'w', '2'],
    ]);
    assert.equal(doneErr, 'not done');
    controller.abort();
  });

  void test('an informer sees add, update and delete, and recovers after dropped watches and after compaction (410 → relist)', async () => {
    api.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'ci' } });
    const informer = makeInformer<V1Secret>(kc, '/api/v1/namespaces/ci/secrets', () =>
      core.listNamespacedSecret({ namespace: 'ci' }),
    );
    const log: string[] = [];
    const value = (s: V1Secret): string => Buffer.from(s.data?.key ?? '', 'base64').toString();
    informer.on('add', (s) => log.push(`add ${s.metadata?.name}=${value(s)}`));
    informer.on('update', (s) => log.push(`update ${s.metadata?.name}=${value(s)}`));
    informer.on('delete', (s) => log.push(`delete ${s.metadata?.name}`));
    let stopped = false;
    // client-node's documented pattern: the informer reports a broken watch as an error and is restarted by its user.
    informer.on('error', () => {
      if (!stopped) setTimeout(() => void informer.start(), 10);
    });
    const secret = (v: string): KubeObject => ({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 's', namespace: 'ci' },
      data: { key: b64(v) },
    });
    try {
      await informer.start();
      api.create(secret('1'));
      await waitFor(() => log.includes('add s=1'), 'add');
      api.update(secret('2'));
      await waitFor(() => log.includes('update s=2'), 'update');

      const watchesBefore = api.requests.filter((r) => r.query.includes('watch=true')).length;
      api.dropWatches();
      api.update(secret('3'));
      await waitFor(() => log.includes('update s=3'), 'update after a dropped watch');
      assert.ok(
        api.requests.filter((r) => r.query.includes('watch=true')).length > watchesBefore,
        'the informer watched again',
      );

      const listsBefore = api.requests.filter(
        (r) => r.path === '/api/v1/namespaces/ci/secrets' && !r.query.includes('watch'),
      ).length;
      // The informer is now behind (a write elsewhere moved the revision on) and compaction forgets what it missed.
      api.create({
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'elsewhere', namespace: 'ci' },
        data: {},
      });
      api.compact();
      api.dropWatches();
      api.update(secret('4'));
      await waitFor(() => log.includes('update s=4'), 'update after compaction');
      const lists = api.requests.filter(
        (r) => r.path === '/api/v1/namespaces/ci/secrets' && !r.query.includes('watch'),
      ).length;
      assert.ok(lists > listsBefore, 'the 410 made the informer list again');

      api.delete('secrets', 'ci', 's');
      await waitFor(() => log.includes('delete s'), 'delete');
      assert.equal(informer.list('ci').length, 0);
    } finally {
      stopped = true;
      await informer.stop();
    }
  });

  void test('401 and 403 surface as ApiException with the Status code, reason and message', async () => {
    const bad = (await kubeConfig({ token: 'wrong' })).makeApiClient(CoreV1Api);
    await assert.rejects(bad.listNamespacedSecret({ namespace: 'default' }), (err: unknown) => {
      assert.ok(err instanceof ApiException);
      assert.equal(err.code, 401);
      assert.match(err.message, /Unauthorized/);
      return true;
    });

    api.create({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'mine', namespace: 'shop2' },
      data: {},
    });
    const token = api.addServiceAccount('shop2', 'app', [
      { verbs: ['get', 'watch', 'list'], resource: 'secrets', namespace: 'shop2', names: ['mine'] },
    ]);
    const saKc = await kubeConfig({ token, namespace: 'shop2' });
    const sa = saKc.makeApiClient(CoreV1Api);
    assert.equal(
      (await sa.readNamespacedSecret({ namespace: 'shop2', name: 'mine' })).metadata?.name,
      'mine',
    );
    await assert.rejects(sa.readNamespacedSecret({ namespace: 'shop2', name: 'theirs' }), (err: unknown) => {
      assert.ok(err instanceof ApiException);
      assert.equal(err.code, 403);
      const status = JSON.parse(String(err.body));
      assert.equal(status.reason, 'Forbidden');
      assert.equal(
        status.message,
        'secrets "theirs" is forbidden: User "system:serviceaccount:shop2:app" cannot get resource "secrets" in API group "" in the namespace "shop2"',
      );
      return true;
    });
    const watchErr = await new Promise<unknown>((resolve) => {
      void new Watch(saKc).watch('/api/v1/namespaces/shop2/secrets', {}, () => {}, resolve);
    });
    assert.equal((watchErr as { statusCode?: number }).statusCode, 403);
  });
});
