import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { ApiError, describeForbidden, forbiddenSubject } from '../../../src/reloader/kube/api-error.ts';
import { loadClusterAccess } from '../../../src/reloader/kube/cluster-access.ts';
import { KubeClient } from '../../../src/reloader/kube/client.ts';
import { readWatchStream, type WatchEvent } from '../../../src/reloader/kube/watch-stream.ts';
import { TestApiServer } from '../../support/kube-apiserver/index.ts';

const LIST = '/api/v1/namespaces/shop/secrets?fieldSelector=metadata.name%3Dapp-config';

void describe('forbidden messages', () => {
  void it('names the service account, user or credentials the API server denied', () => {
    const msg =
      'secrets "app-config" is forbidden: User "system:serviceaccount:shop:default" cannot list resource "secrets" in API group "" in the namespace "shop"';
    assert.equal(forbiddenSubject(msg), 'serviceaccount shop/default');
    assert.equal(forbiddenSubject('User "alice" cannot list'), 'user "alice"');
    assert.equal(forbiddenSubject('forbidden'), "the reloader's credentials");
    const err = new ApiError(403, { kind: 'Status', code: 403, reason: 'Forbidden', message: msg }, 'GET x');
    assert.equal(
      describeForbidden(err, 'secrets', 'app-config', 'shop'),
      'serviceaccount shop/default cannot watch secrets "app-config" in namespace shop: grant get, list, watch',
    );
  });
});

void describe('KubeClient against the test API server', () => {
  let api: TestApiServer;
  let dir: string;
  let good: string;
  const clients: KubeClient[] = [];

  before(async () => {
    api = await TestApiServer.start();
    dir = await mkdtemp(join(tmpdir(), 'kube-client-'));
    good = api.addServiceAccount('shop', 'default', [
      { verbs: ['get', 'list', 'watch'], resource: 'secrets', namespace: 'shop', names: ['app-config'] },
    ]);
    api.create({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'app-config', namespace: 'shop' },
      data: { k: 'dg==' },
    });
    await writeFile(join(dir, 'ca.crt'), api.caCert);
    await writeFile(join(dir, 'namespace'), 'shop');
  });
  after(async () => {
    for (const c of clients) c.destroy();
    await api.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function inCluster(token: string): Promise<KubeClient> {
    await writeFile(join(dir, 'token'), token);
    const client = new KubeClient(
      await loadClusterAccess({
        mode: 'in-cluster',
        host: '127.0.0.1',
        port: String(api.port),
        serviceAccountDir: dir,
      }),
    );
    clients.push(client);
    return client;
  }

  void it('lists by name over TLS with the in-cluster CA and token', async () => {
    const list = await (
      await inCluster(good)
    ).getJson<{ items: Array<{ metadata: { name: string } }>; metadata: { resourceVersion: string } }>(LIST);
    assert.deepEqual(
      list.items.map((i) => i.metadata.name),
      ['app-config'],
    );
    assert.ok(list.metadata.resourceVersion);
  });

  void it('turns an error answer into an ApiError with the Status', async () => {
    const client = await inCluster(good);
    await assert.rejects(
      client.getJson('/api/v1/namespaces/shop/secrets?fieldSelector=metadata.name%3Dother'),
      (e: unknown) => {
        assert.ok(e instanceof ApiError);
        assert.equal(e.code, 403);
        assert.match(
          e.status?.message ?? '',
          /User "system:serviceaccount:shop:default" cannot list resource "secrets"/,
        );
        return true;
      },
    );
  });

  void it('re-reads a rotated token file after a 401', async () => {
    const client = await inCluster('expired-token');
    await assert.rejects(client.getJson(LIST), (e: unknown) => e instanceof ApiError && e.code === 401);
    await writeFile(join(dir, 'token'), good); // the kubelet rotated it
    const list = await client.getJson<{ items: unknown[] }>(LIST);
    assert.equal(list.items.length, 1);
  });

  void it('streams watch events', async () => {
    const client = await inCluster(good);
    const { metadata } = await client.getJson<{ metadata: { resourceVersion: string } }>(LIST);
    const res = await client.stream(
      `${LIST}&watch=true&resourceVersion=${metadata.resourceVersion}&timeoutSeconds=5`,
    );
    const seen: WatchEvent[] = [];
    const done = readWatchStream(res, (e) => {
      seen.push(e);
      return e.type !== 'MODIFIED';
    });
    const obj = api.get('secrets', 'shop', 'app-config');
    assert.ok(obj);
    api.update({ ...obj, data: { k: 'dzI=' } });
    await done;
    assert.equal(seen.at(-1)?.type, 'MODIFIED');
  });
});

void describe('KubeClient against a silent server', () => {
  void it('fails a watch that sends nothing for its idle timeout, so a dead connection is reopened', async () => {
    const server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.flushHeaders(); // then silence, as behind a dead peer
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const client = new KubeClient({
      server: new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}`),
      tls: { rejectUnauthorized: true },
      origin: 'test',
    });
    try {
      const res = await client.stream(`${LIST}&watch=true`, { idleTimeoutMs: 200 });
      await assert.rejects(
        readWatchStream(res, () => true),
        (e: unknown) => (e as NodeJS.ErrnoException).code === 'ETIMEDOUT',
      );
    } finally {
      client.destroy();
      server.closeAllConnections();
      server.close();
    }
  });
});
