/**
 * ListWatch (src/reloader/list-watch.ts), the list/watch protocol of one source, against the test API server: which
 * requests it makes, from which resourceVersion, and what it hands over, in which order.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { ApiHealth } from '../../src/reloader/health.ts';
import { KubeClient } from '../../src/reloader/kube/client.ts';
import { BearerToken } from '../../src/reloader/kube/token.ts';
import { ListWatch, type ListWatchOptions } from '../../src/reloader/list-watch.ts';
import { createReloaderMetrics } from '../../src/reloader/metrics.ts';
import type { KubeObject } from '../../src/reloader/projection.ts';
import { createLogger } from '../../src/shared/log.ts';
import { capturingLogger } from '../support/captured-log.ts';
import { TestApiServer, type RequestRecord } from '../support/kube-apiserver/index.ts';
import { waitFor } from '../support/wait.ts';

const NS = 'shop';
const b64 = (v: string): string => Buffer.from(v).toString('base64');

/** What the handler was given: `listed v1`, `changed v2`, `changed deleted`. */
type Seen = string;

interface Running {
  lw: ListWatch;
  seen: Seen[];
  lines: Array<Record<string, unknown>>;
  metrics: ReturnType<typeof createReloaderMetrics>;
  /** This object's list and watch requests, in order: `list` (consistent), `list>=RV` (not older than) or `watch@RV`. */
  requests(): string[];
  stop(): Promise<void>;
}

const valueOf = (o: KubeObject | undefined): string =>
  o ? Buffer.from(o.data?.v ?? '', 'base64').toString() : 'deleted';

function describeRequest(r: RequestRecord): string {
  const q = new URLSearchParams(r.query);
  const rv = q.get('resourceVersion');
  if (q.get('watch') === 'true') return `watch@${rv}`;
  if (rv === null) return 'list';
  assert.equal(
    q.get('resourceVersionMatch'),
    'NotOlderThan',
    'a list pinned to a resourceVersion asks for NotOlderThan',
  );
  return `list>=${rv}`;
}

void describe('ListWatch against the test API server', () => {
  let api: TestApiServer;
  const running: Running[] = [];
  let n = 0;

  before(async () => {
    api = await TestApiServer.start({ bookmarkIntervalMs: 200 });
  });
  after(async () => {
    for (const r of running) await r.stop();
    await api.close();
  });

  function secret(name: string, v: string): KubeObject & { apiVersion: string; kind: string } {
    return {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name, namespace: NS },
      data: { v: b64(v) },
    };
  }

  /** A fresh object name and its Secret at v1. */
  function fresh(): string {
    const name = `lw-${++n}`;
    api.create(secret(name, 'v1') as Parameters<TestApiServer['create']>[0]);
    return name;
  }

  function update(name: string, v: string): string {
    return String(
      api.update(secret(name, v) as Parameters<TestApiServer['update']>[0]).metadata.resourceVersion,
    );
  }

  function start(name: string, opts: Partial<ListWatchOptions> = {}): Running {
    const client = new KubeClient({
      server: new URL(api.url),
      tls: { ca: Buffer.from(api.caCert), rejectUnauthorized: true },
      token: new BearerToken({ value: api.adminToken }),
      origin: 'test',
    });
    const { log, lines } = capturingLogger();
    const metrics = createReloaderMetrics();
    const lw = new ListWatch({
      target: { kind: 'secret', namespace: NS, name },
      id: `secret/${NS}/${name}`,
      client,
      health: new ApiHealth(60_000),
      metrics,
      log,
      backoff: { baseMs: 20, maxMs: 100 },
      watchTimeoutSeconds: () => 300,
      ...opts,
    });
    const seen: Seen[] = [];
    const abort = new AbortController();
    const done = lw.run(abort.signal, {
      listed: (o) => seen.push(`listed ${valueOf(o)}`),
      changed: (o) => seen.push(`changed ${valueOf(o)}`),
    });
    const selector = `metadata.name%3D${name}&`;
    const r: Running = {
      lw,
      seen,
      lines,
      metrics,
      requests: () =>
        api.requests.filter((q) => `${q.query}&`.includes(selector) && q.status !== 0).map(describeRequest),
      stop: async () => {
        abort.abort();
        await done;
        client.destroy();
      },
    };
    running.push(r);
    return r;
  }

  const watching = (r: Running, count: number): Promise<unknown> =>
    waitFor(() => r.requests().filter((q) => q.startsWith('watch')).length >= count, `watch #${count}`);

  void it('lists once by name, then watches from the list’s resourceVersion and hands over each change in order', async () => {
    const name = fresh();
    const listRv = api.resourceVersion;
    const r = start(name);
    await watching(r, 1);
    update(name, 'v2');
    update(name, 'v3');
    api.delete('secrets', NS, name);
    await waitFor(() => r.seen.length === 4, 'four hand-overs');
    assert.deepEqual(r.seen, ['listed v1', 'changed v2', 'changed v3', 'changed deleted']);
    assert.deepEqual(r.requests(), ['list', `watch@${listRv}`]);
    await r.stop();
  });

  void it('a watch the server ends is reopened from the newest resourceVersion (a bookmark’s), without a list', async () => {
    const name = fresh();
    const r = start(name, { watchTimeoutSeconds: () => 1 });
    await watching(r, 1);
    const rv = update(name, 'v2');
    await waitFor(() => r.seen.includes('changed v2'), 'v2');
    update(`${fresh()}`, 'other'); // a newer revision elsewhere: the next bookmark carries it
    const newest = api.resourceVersion;
    await watching(r, 2);
    const watches = r.requests().filter((q) => q.startsWith('watch'));
    assert.ok(
      watches[1] === `watch@${rv}` || watches[1] === `watch@${newest}`,
      `the second watch starts from the last resourceVersion seen, not from the list: ${watches[1]}`,
    );
    assert.equal(r.requests().filter((q) => q.startsWith('list')).length, 1, 'one list in all');
    assert.equal(
      r.metrics.watchRestarts.get({ source: `secret/${NS}/${name}`, reason: 'closed' }) >= 1,
      true,
    );
    await r.stop();
  });

  void it('a dropped connection reconnects at once from the last resourceVersion; the update made meanwhile arrives once', async () => {
    const name = fresh();
    const r = start(name);
    await watching(r, 1);
    const rv2 = update(name, 'v2');
    await waitFor(() => r.seen.includes('changed v2'), 'v2');
    api.dropWatches();
    update(name, 'v3');
    await waitFor(() => r.seen.includes('changed v3'), 'v3');
    assert.deepEqual(r.seen, ['listed v1', 'changed v2', 'changed v3']);
    const requests = r.requests();
    assert.equal(requests.filter((q) => q.startsWith('list')).length, 1);
    assert.ok(
      requests.slice(2).every((q) => q.startsWith('watch@')),
      `reconnected without a list: ${requests.join(', ')}`,
    );
    assert.equal(requests[2], `watch@${rv2}`, 'from the last event seen');
    await r.stop();
  });

  void it('410 Gone lists again, not older than the newest resourceVersion seen, and watches from that list', async () => {
    const name = fresh();
    const r = start(name);
    await watching(r, 1);
    await api.stop();
    update(name, 'v2');
    update(name, 'v3');
    api.compact();
    const compactedAt = api.resourceVersion;
    await api.restart();
    await waitFor(() => r.seen.includes('listed v3'), 'the relist');
    await watching(r, 3);
    const requests = r.requests();
    const relist = requests.findIndex((q) => q.startsWith('list>='));
    assert.ok(relist > 1, `a second list: ${requests.join(', ')}`);
    const lastWatch = requests.slice(0, relist).findLast((q) => q.startsWith('watch@')) as string;
    assert.equal(
      requests[relist],
      `list>=${lastWatch.slice('watch@'.length)}`,
      'the relist asks for a state not older than where the expired watch was',
    );
    assert.equal(requests[relist + 1], `watch@${compactedAt}`, 'the watch after the relist starts at its RV');
    assert.deepEqual(r.seen, ['listed v1', 'listed v3']);
    assert.ok(r.lines.some((l) => l.msg === 'the watch expired (410 Gone): listing again'));
    await r.stop();
  });

  void it('a relist the server cannot answer not older than that (504, 410) falls back to a consistent list', async () => {
    const name = fresh();
    const r = start(name);
    await watching(r, 1);
    api.failRequests(410, { count: 1, paths: new RegExp(`metadata.name%3D${name}&watch=true`) });
    api.failRequests(504, {
      count: 1,
      paths: new RegExp(`metadata.name%3D${name}&resourceVersion=\\d+&resourceVersionMatch=NotOlderThan`),
    });
    update(name, 'v2');
    api.dropWatches();
    await waitFor(() => r.requests().filter((q) => q === 'list').length === 2, 'a consistent list');
    await waitFor(() => r.seen.includes('listed v2'), 'v2 from that list');
    const requests = r.requests();
    const consistent = requests.indexOf('list', 1);
    assert.match(
      requests[consistent - 1] ?? '',
      /^list>=\d+$/,
      `the refused NotOlderThan list, then the consistent one: ${requests.join(', ')}`,
    );
    await r.stop();
  });

  void it('a watch that opens but stays silent is dropped after watchIdleMs and reopened from the same resourceVersion', async () => {
    const quiet = await TestApiServer.start({ bookmarkIntervalMs: 3_600_000, idleBookmarks: false });
    try {
      quiet.create(secret('silent', 'v1') as Parameters<TestApiServer['create']>[0]);
      const client = new KubeClient({
        server: new URL(quiet.url),
        tls: { ca: Buffer.from(quiet.caCert), rejectUnauthorized: true },
        token: new BearerToken({ value: quiet.adminToken }),
        origin: 'test',
      });
      const lw = new ListWatch({
        target: { kind: 'secret', namespace: NS, name: 'silent' },
        id: 'secret/shop/silent',
        client,
        health: new ApiHealth(60_000),
        metrics: createReloaderMetrics(),
        log: createLogger({ name: 'test', level: 'silent' }),
        backoff: { baseMs: 20, maxMs: 100 },
        watchIdleMs: 300,
      });
      const abort = new AbortController();
      const done = lw.run(abort.signal, { listed: () => {}, changed: () => {} });
      const watches = (): RequestRecord[] => quiet.requests.filter((q) => q.query.includes('watch=true'));
      await waitFor(() => watches().length >= 3, 'the silent watch reopened twice');
      const rvs = new Set(watches().map((q) => new URLSearchParams(q.query).get('resourceVersion')));
      assert.equal(rvs.size, 1, 'every reopened watch starts from the same resourceVersion');
      assert.equal(quiet.requests.filter((q) => !q.query.includes('watch=true')).length, 1, 'one list');
      abort.abort();
      await done;
      client.destroy();
    } finally {
      await quiet.close();
    }
  });

  void it('a watch the API server refuses (503) is retried with backoff from the same resourceVersion, without a list', async () => {
    const name = fresh();
    api.failRequests(503, { count: 3, paths: new RegExp(`metadata.name%3D${name}&watch=true`) });
    const r = start(name);
    await waitFor(
      () => r.requests().filter((q) => q.startsWith('watch')).length >= 4,
      'the watch after 3 refusals',
    );
    api.clearFaults();
    const requests = r.requests();
    assert.equal(requests.filter((q) => q === 'list').length, 1, `one list: ${requests.join(', ')}`);
    assert.equal(new Set(requests.filter((q) => q.startsWith('watch'))).size, 1, 'always the same RV');
    assert.ok(
      r.lines.some((l) => l.level === 'warn' && typeof l.retryInMs === 'number' && l.code === 503),
      'each failure logged with its retry delay',
    );
    update(name, 'v2');
    await waitFor(() => r.seen.includes('changed v2'), 'v2 after recovery');
    await r.stop();
  });

  void it('a watch the server fails with an ERROR event (not 410) lists again after a backoff, not older than the last event', async () => {
    const requests: string[] = [];
    let watches = 0;
    const secretAt = (rv: string, v: string) => ({
      metadata: { name: 'x', namespace: NS, resourceVersion: rv },
      data: { v: b64(v) },
    });
    const server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://127.0.0.1');
      const q = url.searchParams;
      requests.push(
        describeRequest({ method: 'GET', path: url.pathname, query: q.toString(), user: '', status: 200 }),
      );
      res.setHeader('content-type', 'application/json');
      if (q.get('watch') !== 'true') {
        const relist = q.has('resourceVersion');
        const rv = relist ? '12' : '10';
        res.end(
          JSON.stringify({ metadata: { resourceVersion: rv }, items: [secretAt(rv, relist ? 'v3' : 'v1')] }),
        );
        return;
      }
      if (++watches > 1) return; // the watch after the relist stays open
      res.write(`${JSON.stringify({ type: 'MODIFIED', object: secretAt('11', 'v2') })}\n`);
      res.end(
        `${JSON.stringify({ type: 'ERROR', object: { kind: 'Status', status: 'Failure', code: 500, reason: 'InternalError', message: 'etcd hiccup' } })}\n`,
      );
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const client = new KubeClient({
      server: new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}`),
      tls: { rejectUnauthorized: true },
      origin: 'test',
    });
    const metrics = createReloaderMetrics();
    const lw = new ListWatch({
      target: { kind: 'secret', namespace: NS, name: 'x' },
      id: 'secret/shop/x',
      client,
      health: new ApiHealth(60_000),
      metrics,
      log: createLogger({ name: 'test', level: 'silent' }),
      backoff: { baseMs: 20, maxMs: 100 },
    });
    const seen: Seen[] = [];
    const abort = new AbortController();
    const done = lw.run(abort.signal, {
      listed: (o) => seen.push(`listed ${valueOf(o)}`),
      changed: (o) => seen.push(`changed ${valueOf(o)}`),
    });
    try {
      await waitFor(() => watches === 2, 'the watch after the relist');
      assert.deepEqual(requests, ['list', 'watch@10', 'list>=11', 'watch@12']);
      assert.deepEqual(seen, ['listed v1', 'changed v2', 'listed v3']);
      assert.equal(metrics.apiErrors.get({ source: 'secret/shop/x', code: '500' }), 1);
    } finally {
      abort.abort();
      await done;
      client.destroy();
      server.closeAllConnections();
      server.close();
    }
  });
});
