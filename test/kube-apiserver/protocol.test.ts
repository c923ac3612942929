import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { TestApiServer } from '../support/kube-apiserver/index.ts';
import type { WatchEventRecord } from '../support/kube-apiserver/index.ts';
import { rawRequest, rawWatch } from '../support/kube-apiserver/raw-client.ts';

const b64 = (s: string): string => Buffer.from(s).toString('base64');

function secret(namespace: string, name: string, value: string, labels?: Record<string, string>) {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name, namespace, ...(labels ? { labels } : {}) },
    data: { key: b64(value) },
  };
}

void describe('test kube-apiserver: raw protocol', () => {
  let api: TestApiServer;
  let admin: string;

  before(async () => {
    api = await TestApiServer.start({ bookmarkIntervalMs: 100 });
    admin = api.adminToken;
  });
  after(() => api.close());

  void test('serves HTTPS with the CA it exposes and rejects requests without a valid token with a 401 Status', async () => {
    assert.match(api.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    for (const token of [undefined, 'not-a-token']) {
      const res = await rawRequest(api, 'GET', '/api/v1/namespaces/default/secrets', token ? { token } : {});
      assert.equal(res.status, 401);
      assert.deepEqual(JSON.parse(res.body), {
        kind: 'Status',
        apiVersion: 'v1',
        metadata: {},
        status: 'Failure',
        message: 'Unauthorized',
        reason: 'Unauthorized',
        code: 401,
      });
    }
  });

  void test('authorizes per grant, with resourceNames needing a matching fieldSelector for list and watch', async () => {
    api.create(secret('shop', 'app-config', 'a'));
    api.create(secret('shop', 'other', 'b'));
    const token = api.addServiceAccount('shop', 'default', [
      { verbs: ['get', 'list', 'watch'], resource: 'secrets', namespace: 'shop', names: ['app-config'] },
    ]);
    const user = 'User "system:serviceaccount:shop:default"';
    assert.equal(
      (await rawRequest(api, 'GET', '/api/v1/namespaces/shop/secrets/app-config', { token })).status,
      200,
    );
    const pinned = await rawRequest(
      api,
      'GET',
      '/api/v1/namespaces/shop/secrets?fieldSelector=metadata.name%3Dapp-config',
      { token },
    );
    assert.equal(pinned.status, 200);
    assert.deepEqual(
      JSON.parse(pinned.body).items.map((i: { metadata: { name: string } }) => i.metadata.name),
      ['app-config'],
    );

    const cases: Array<[string, string]> = [
      [
        '/api/v1/namespaces/shop/secrets/other',
        `secrets "other" is forbidden: ${user} cannot get resource "secrets" in API group "" in the namespace "shop"`,
      ],
      [
        '/api/v1/namespaces/shop/secrets',
        `secrets is forbidden: ${user} cannot list resource "secrets" in API group "" in the namespace "shop"`,
      ],
      [
        '/api/v1/namespaces/shop/secrets?watch=true&fieldSelector=metadata.name%3Dother',
        `secrets "other" is forbidden: ${user} cannot watch resource "secrets" in API group "" in the namespace "shop"`,
      ],
      [
        '/api/v1/namespaces/shop/configmaps/app-config',
        `configmaps "app-config" is forbidden: ${user} cannot get resource "configmaps" in API group "" in the namespace "shop"`,
      ],
      [
        '/api/v1/namespaces/prod/secrets/app-config',
        `secrets "app-config" is forbidden: ${user} cannot get resource "secrets" in API group "" in the namespace "prod"`,
      ],
      [
        '/api/v1/namespaces',
        `namespaces is forbidden: ${user} cannot list resource "namespaces" in API group "" at the cluster scope`,
      ],
    ];
    for (const [path, message] of cases) {
      const res = await rawRequest(api, 'GET', path, { token });
      assert.equal(res.status, 403, path);
      const status = JSON.parse(res.body);
      assert.equal(status.kind, 'Status');
      assert.equal(status.reason, 'Forbidden');
      assert.equal(status.code, 403);
      assert.equal(status.message, message);
    }
  });

  void test('lists without kind on items, with the current resourceVersion, filtered by field and label selectors', async () => {
    api.create(secret('list', 'a', '1', { app: 'x', tier: 'web' }));
    api.create(secret('list', 'b', '2', { app: 'y' }));
    api.create(secret('list', 'c', '3'));
    const names = async (query: string): Promise<string[]> => {
      const res = await rawRequest(api, 'GET', `/api/v1/namespaces/list/secrets${query}`, { token: admin });
      assert.equal(res.status, 200, res.body);
      const list = JSON.parse(res.body);
      assert.equal(list.kind, 'SecretList');
      assert.equal(list.apiVersion, 'v1');
      assert.equal(list.metadata.resourceVersion, api.resourceVersion);
      for (const item of list.items) assert.equal(item.kind, undefined);
      return list.items.map((i: { metadata: { name: string } }) => i.metadata.name);
    };
    assert.deepEqual(await names(''), ['a', 'b', 'c']);
    assert.deepEqual(await names('?fieldSelector=metadata.name%3Db'), ['b']);
    assert.deepEqual(await names('?fieldSelector=metadata.name!%3Db'), ['a', 'c']);
    assert.deepEqual(await names('?labelSelector=app%3Dx'), ['a']);
    assert.deepEqual(await names('?labelSelector=app!%3Dx'), ['b', 'c']);
    assert.deepEqual(await names('?labelSelector=app'), ['a', 'b']);
    assert.deepEqual(await names('?labelSelector=!app'), ['c']);
    assert.deepEqual(await names('?labelSelector=app%20in%20(x,y),tier'), ['a']);
    const bad = await rawRequest(api, 'GET', '/api/v1/namespaces/list/secrets?fieldSelector=data.key%3Dx', {
      token: admin,
    });
    assert.equal(bad.status, 400);
    assert.equal(JSON.parse(bad.body).message, 'field label not supported: data.key');
  });

  void test('pages a list with limit and continue from one consistent snapshot', async () => {
    for (const n of ['p1', 'p2', 'p3']) api.create(secret('paged', n, n));
    const first = JSON.parse(
      (await rawRequest(api, 'GET', '/api/v1/namespaces/paged/secrets?limit=2', { token: admin })).body,
    );
    assert.deepEqual(
      first.items.map((i: { metadata: { name: string } }) => i.metadata.name),
      ['p1', 'p2'],
    );
    assert.equal(first.metadata.remainingItemCount, 1);
    api.create(secret('paged', 'p4', 'p4'));
    const next = JSON.parse(
      (
        await rawRequest(
          api,
          'GET',
          `/api/v1/namespaces/paged/secrets?limit=2&continue=${first.metadata.continue}`,
          { token: admin },
        )
      ).body,
    );
    assert.deepEqual(
      next.items.map((i: { metadata: { name: string } }) => i.metadata.name),
      ['p3'],
    );
    assert.equal(next.metadata.resourceVersion, first.metadata.resourceVersion);
    assert.equal(next.metadata.continue, undefined);
  });

  void test('creates with server-set metadata, merges stringData into data, validates names and namespaces', async () => {
    const res = await rawRequest(api, 'POST', '/api/v1/namespaces/default/secrets', {
      token: admin,
      body: {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { generateName: 'gen-' },
        data: { a: b64('1') },
        stringData: { b: 'two' },
      },
    });
    assert.equal(res.status, 201, res.body);
    const created = JSON.parse(res.body);
    assert.match(created.metadata.name, /^gen-[a-z0-9]{5}$/);
    assert.equal(created.metadata.namespace, 'default');
    assert.match(created.metadata.uid, /^[0-9a-f-]{36}$/);
    assert.match(created.metadata.creationTimestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    assert.equal(created.metadata.resourceVersion, api.resourceVersion);
    assert.deepEqual(created.data, { a: b64('1'), b: b64('two') });
    assert.equal(created.stringData, undefined);
    assert.equal(created.type, 'Opaque');

    const again = await rawRequest(api, 'POST', '/api/v1/namespaces/default/secrets', {
      token: admin,
      body: { ...created, metadata: { name: created.metadata.name } },
    });
    assert.equal(again.status, 409);
    assert.equal(JSON.parse(again.body).reason, 'AlreadyExists');
    assert.equal(JSON.parse(again.body).message, `secrets "${created.metadata.name}" already exists`);

    const invalid = await rawRequest(api, 'POST', '/api/v1/namespaces/default/secrets', {
      token: admin,
      body: { metadata: { name: 'Bad_Name' } },
    });
    assert.equal(invalid.status, 422);
    assert.equal(JSON.parse(invalid.body).reason, 'Invalid');
    assert.match(
      JSON.parse(invalid.body).message,
      /^Secret "Bad_Name" is invalid: metadata\.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain/,
    );

    const mismatch = await rawRequest(api, 'POST', '/api/v1/namespaces/default/secrets', {
      token: admin,
      body: { metadata: { name: 'x', namespace: 'other' } },
    });
    assert.equal(mismatch.status, 400);
    assert.equal(
      JSON.parse(mismatch.body).message,
      'the namespace of the provided object does not match the namespace sent on the request',
    );

    const noNs = await rawRequest(api, 'POST', '/api/v1/namespaces/nowhere/secrets', {
      token: admin,
      body: { metadata: { name: 'x' } },
    });
    assert.equal(noNs.status, 404);
    assert.equal(JSON.parse(noNs.body).message, 'namespaces "nowhere" not found');

    const malformed = await rawRequest(api, 'POST', '/api/v1/namespaces/default/secrets', {
      token: admin,
      body: '{"metadata":{"name":"m"},"data":{"k":c2VjcmV0LXZhbHVl}}',
    });
    assert.equal(malformed.status, 400);
    assert.doesNotMatch(malformed.body, /c2VjcmV0/, 'a decoding error does not echo Secret data');

    const dry = await rawRequest(api, 'POST', '/api/v1/namespaces/default/secrets?dryRun=All', {
      token: admin,
      body: { metadata: { name: 'dry' } },
    });
    assert.equal(dry.status, 201);
    assert.equal(api.get('secrets', 'default', 'dry'), undefined);
  });

  void test('rejects an update with a stale resourceVersion with 409 Conflict, and a no-op update keeps the resourceVersion', async () => {
    const v1 = api.create(secret('conflict', 's', 'one'));
    const path = '/api/v1/namespaces/conflict/secrets/s';
    const ok = await rawRequest(api, 'PUT', path, {
      token: admin,
      body: { ...v1, data: { key: b64('two') } },
    });
    assert.equal(ok.status, 200, ok.body);
    const v2 = JSON.parse(ok.body);
    assert.notEqual(v2.metadata.resourceVersion, v1.metadata.resourceVersion);

    const stale = await rawRequest(api, 'PUT', path, {
      token: admin,
      body: { ...v1, data: { key: b64('three') } },
    });
    assert.equal(stale.status, 409);
    const status = JSON.parse(stale.body);
    assert.equal(status.reason, 'Conflict');
    assert.equal(
      status.message,
      'Operation cannot be fulfilled on secrets "s": the object has been modified; please apply your changes to the latest version and try again',
    );

    const same = JSON.parse((await rawRequest(api, 'PUT', path, { token: admin, body: v2 })).body);
    assert.equal(same.metadata.resourceVersion, v2.metadata.resourceVersion);
  });

  void test('patches with merge, JSON and strategic merge patches', async () => {
    api.create({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'p', namespace: 'patch' },
      data: { a: '1', b: '2' },
    });
    const path = '/api/v1/namespaces/patch/configmaps/p';
    const patch = async (contentType: string, body: unknown): Promise<Record<string, string>> => {
      const res = await rawRequest(api, 'PATCH', path, { token: admin, contentType, body });
      assert.equal(res.status, 200, res.body);
      return JSON.parse(res.body).data;
    };
    assert.deepEqual(await patch('application/merge-patch+json', { data: { a: null, c: '3' } }), {
      b: '2',
      c: '3',
    });
    assert.deepEqual(
      await patch('application/json-patch+json', [{ op: 'replace', path: '/data/b', value: '20' }]),
      { b: '20', c: '3' },
    );
    assert.deepEqual(
      await patch('application/strategic-merge-patch+json', { data: { d: '4' }, $setElementOrder: {} }),
      { b: '20', c: '3', d: '4' },
    );
    const stale = await rawRequest(api, 'PATCH', path, {
      token: admin,
      contentType: 'application/merge-patch+json',
      body: { metadata: { resourceVersion: '1' } },
    });
    assert.equal(stale.status, 409);
    const missing = await rawRequest(api, 'PATCH', `${path}-missing`, {
      token: admin,
      contentType: 'application/merge-patch+json',
      body: {},
    });
    assert.equal(missing.status, 404);
    assert.equal(JSON.parse(missing.body).message, 'configmaps "p-missing" not found');
  });

  void test('watch without a resourceVersion streams ADDED for current objects, then live changes as chunked JSON lines', async () => {
    api.create(secret('watch', 'existing', 'e'));
    const w = await rawWatch(api, '/api/v1/namespaces/watch/secrets?watch=true', admin);
    assert.equal(w.status, 200);
    assert.equal(w.headers['content-type'], 'application/json');
    assert.equal(w.headers['transfer-encoding'], 'chunked');
    await w.waitFor((e) => e.type === 'ADDED' && e.object.metadata?.name === 'existing');
    const sent: WatchEventRecord[] = [];
    api.events.on('watch-event', (e: WatchEventRecord) => sent.push(e));
    const created = api.create(secret('watch', 'live', '1'));
    const updated = api.update({ ...created, data: { key: b64('2') } });
    api.delete('secrets', 'watch', 'live');
    const deleted = await w.waitFor((e) => e.type === 'DELETED');
    assert.deepEqual(
      w.events.map((e) => [e.type, e.object.metadata?.name]),
      [
        ['ADDED', 'existing'],
        ['ADDED', 'live'],
        ['MODIFIED', 'live'],
        ['DELETED', 'live'],
      ],
    );
    const modified = w.events[2]?.object;
    assert.equal(modified?.kind, 'Secret');
    assert.equal(modified?.apiVersion, 'v1');
    assert.equal(modified?.metadata?.resourceVersion, updated.metadata.resourceVersion);
    assert.ok(
      Number(deleted.object.metadata?.resourceVersion) > Number(updated.metadata.resourceVersion),
      'DELETED carries the deletion revision',
    );
    const mine = sent.filter((e) => e.namespace === 'watch');
    assert.deepEqual(
      mine.map((e) => [e.type, e.resource, e.name]),
      [
        ['ADDED', 'secrets', 'live'],
        ['MODIFIED', 'secrets', 'live'],
        ['DELETED', 'secrets', 'live'],
      ],
    );
    assert.equal(typeof mine[0]?.sentAt, 'bigint');
    w.close();
  });

  void test('watch from a resourceVersion replays what happened after it; a selector turns leaving into DELETED', async () => {
    const s = api.create(secret('resume', 's', '1', { app: 'a' }));
    const from = s.metadata.resourceVersion as string;
    const changed = api.update({ ...s, data: { key: b64('2') } });
    api.update({ ...changed, metadata: { ...changed.metadata, labels: { app: 'b' } } });
    const w = await rawWatch(
      api,
      `/api/v1/namespaces/resume/secrets?watch=1&resourceVersion=${from}&labelSelector=app%3Da`,
      admin,
    );
    await w.waitFor((e) => e.type === 'DELETED');
    assert.deepEqual(
      w.events.map((e) => e.type),
      ['MODIFIED', 'DELETED'],
    );
    w.close();
  });

  void test('after compact(), a watch from an older resourceVersion gets an ERROR event with a 410 Expired Status and ends', async () => {
    const s = api.create(secret('compact', 's', '1'));
    api.update({ ...s, data: { key: b64('2') } });
    const exact = await rawRequest(
      api,
      'GET',
      `/api/v1/namespaces/compact/secrets?resourceVersion=${s.metadata.resourceVersion}&resourceVersionMatch=Exact`,
      { token: admin },
    );
    assert.equal(exact.status, 200);
    assert.equal(
      JSON.parse(exact.body).items[0].data.key,
      b64('1'),
      'an Exact list shows the state at that revision',
    );

    api.compact();
    const w = await rawWatch(
      api,
      `/api/v1/namespaces/compact/secrets?watch=true&resourceVersion=${s.metadata.resourceVersion}`,
      admin,
    );
    assert.equal(w.status, 200);
    const err = await w.waitFor((e) => e.type === 'ERROR');
    assert.deepEqual(err.object, {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: `too old resource version: ${s.metadata.resourceVersion} (${api.resourceVersion})`,
      reason: 'Expired',
      code: 410,
    });
    assert.equal(await w.ended, 'end');

    const gone = await rawRequest(
      api,
      'GET',
      `/api/v1/namespaces/compact/secrets?resourceVersion=${s.metadata.resourceVersion}&resourceVersionMatch=Exact`,
      { token: admin },
    );
    assert.equal(gone.status, 410);
    assert.equal(JSON.parse(gone.body).reason, 'Expired');

    const current = await rawWatch(
      api,
      `/api/v1/namespaces/compact/secrets?watch=true&resourceVersion=${api.resourceVersion}`,
      admin,
    );
    api.create(secret('compact', 't', '1'));
    await current.waitFor((e) => e.type === 'ADDED' && e.object.metadata?.name === 't');
    current.close();
  });

  void test('sendInitialEvents=true ends the initial ADDED events with a BOOKMARK annotated k8s.io/initial-events-end', async () => {
    api.create(secret('initial', 'one', '1'));
    const w = await rawWatch(
      api,
      '/api/v1/namespaces/initial/secrets?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true',
      admin,
    );
    const bm = await w.waitFor((e) => e.type === 'BOOKMARK');
    assert.deepEqual(w.events[0]?.type, 'ADDED');
    assert.deepEqual(bm.object.metadata?.annotations, { 'k8s.io/initial-events-end': 'true' });
    w.close();
  });

  void test('a GET of one name with watch=true watches just that object', async () => {
    const w = await rawWatch(api, '/api/v1/namespaces/byname/configmaps/this?watch=true', admin);
    api.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'that', namespace: 'byname' } });
    api.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'this', namespace: 'byname' } });
    await w.waitFor((e) => e.type === 'ADDED');
    assert.deepEqual(
      w.events.map((e) => e.object.metadata?.name),
      ['this'],
    );
    w.close();
  });

  void test('DELETE answers a Success Status, honours preconditions, and deleting a namespace deletes its contents', async () => {
    const s = api.create(secret('del', 's', '1'));
    const path = '/api/v1/namespaces/del/secrets/s';
    const wrong = await rawRequest(api, 'DELETE', path, {
      token: admin,
      body: { preconditions: { resourceVersion: '1' } },
    });
    assert.equal(wrong.status, 409);
    const res = await rawRequest(api, 'DELETE', path, { token: admin });
    assert.equal(res.status, 200);
    assert.deepEqual(JSON.parse(res.body), {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Success',
      details: { name: 's', kind: 'secrets', uid: s.metadata.uid },
    });
    assert.equal((await rawRequest(api, 'DELETE', path, { token: admin })).status, 404);

    api.create(secret('del', 't', '1'));
    const w = await rawWatch(api, `/api/v1/secrets?watch=true&resourceVersion=${api.resourceVersion}`, admin);
    assert.equal((await rawRequest(api, 'DELETE', '/api/v1/namespaces/del', { token: admin })).status, 200);
    await w.waitFor((e) => e.type === 'DELETED' && e.object.metadata?.name === 't');
    assert.equal(api.get('namespaces', undefined, 'del'), undefined);
    w.close();
  });

  void test('sends BOOKMARK events carrying only a resourceVersion when allowWatchBookmarks=true', async () => {
    const w = await rawWatch(
      api,
      `/api/v1/namespaces/bm/configmaps?watch=true&allowWatchBookmarks=true&resourceVersion=${api.resourceVersion}`,
      admin,
    );
    const bm = await w.waitFor((e) => e.type === 'BOOKMARK');
    assert.deepEqual(bm.object, {
      kind: 'ConfigMap',
      apiVersion: 'v1',
      metadata: { resourceVersion: api.resourceVersion },
    });
    w.close();
  });

  void test('timeoutSeconds ends the watch stream cleanly', async () => {
    const w = await rawWatch(api, '/api/v1/namespaces/to/secrets?watch=true&timeoutSeconds=1', admin);
    assert.equal(await w.ended, 'end');
  });

  void test('dropWatches() kills open watch connections without a clean end', async () => {
    const w = await rawWatch(api, '/api/v1/namespaces/drop/secrets?watch=true', admin);
    assert.equal(api.openWatches > 0, true);
    api.dropWatches();
    assert.equal(await w.ended, 'error');
  });

  void test('failRequests() answers matching requests with Status errors for a count or a time', async () => {
    const path = '/api/v1/namespaces/default/configmaps';
    api.failRequests(503, { count: 2, paths: /\/configmaps/ });
    for (let i = 0; i < 2; i++) {
      const res = await rawRequest(api, 'GET', path, { token: admin });
      assert.equal(res.status, 503);
      assert.equal(JSON.parse(res.body).reason, 'ServiceUnavailable');
    }
    assert.equal(
      (await rawRequest(api, 'GET', '/api/v1/namespaces/default/secrets', { token: admin })).status,
      200,
      'other paths are served',
    );
    assert.equal((await rawRequest(api, 'GET', path, { token: admin })).status, 200);

    api.failRequests(500, { forMs: 60_000 });
    const res = await rawRequest(api, 'GET', path, { token: admin });
    assert.equal(res.status, 500);
    assert.equal(JSON.parse(res.body).reason, 'InternalError');
    api.clearFaults();
    assert.equal((await rawRequest(api, 'GET', path, { token: admin })).status, 200);
  });

  void test('answers kubectl-style Table requests', async () => {
    api.create({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 't', namespace: 'table' },
      data: { a: '1' },
    });
    const res = await rawRequest(api, 'GET', '/api/v1/namespaces/table/configmaps', {
      token: admin,
      headers: { Accept: 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json' },
    });
    const table = JSON.parse(res.body);
    assert.equal(table.kind, 'Table');
    assert.deepEqual(
      table.columnDefinitions.map((c: { name: string }) => c.name),
      ['Name', 'Data', 'Age'],
    );
    assert.deepEqual(table.rows[0].cells.slice(0, 2), ['t', 1]);
  });

  void test('stop() takes the server down and restart() brings it back on the same port with the same data', async () => {
    const server = await TestApiServer.start();
    try {
      server.create(secret('ha', 's', 'kept'));
      const url = server.url;
      const w = await rawWatch(server, '/api/v1/namespaces/ha/secrets?watch=true', server.adminToken);
      await server.stop();
      assert.equal(await w.ended, 'error');
      await assert.rejects(
        rawRequest(server, 'GET', '/version', { token: server.adminToken }),
        /ECONNREFUSED/,
      );
      await server.restart();
      assert.equal(server.url, url);
      const res = await rawRequest(server, 'GET', '/api/v1/namespaces/ha/secrets/s', {
        token: server.adminToken,
      });
      assert.equal(res.status, 200);
      assert.equal(JSON.parse(res.body).data.key, b64('kept'));
    } finally {
      await server.close();
    }
  });
});
