import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  Harness,
  logLines,
  readTree,
  secret,
  secretValue,
  waitFor,
  waitReady,
  type ReloaderProcess,
} from './harness.ts';

void describe('the reloader process under faults', () => {
  let h: Harness;
  before(async () => {
    h = await Harness.start();
  });
  after(async () => {
    await h.close();
  });

  const hits = () => h.receiver.hits.length;
  /** Waits until the API server has a watch open for this reloader's source again. */
  const watching = (name: string, since: number) =>
    waitFor(
      () =>
        h.api.requests
          .slice(since)
          .some(
            (q) =>
              q.query.includes('watch=true') &&
              q.query.includes(`metadata.name%3D${name}`) &&
              q.status === 200,
          ),
      `a watch on ${name}`,
    );

  async function startOn(name: string): Promise<{ r: ReloaderProcess; dir: string }> {
    const dir = h.dir(name);
    h.api.create(secret(name, { k: secretValue(`${name}-0`) }));
    const r = await h.reloader(['--source', `secret/${name}=${dir}`], { watch: [dir] });
    await waitReady(r);
    await watching(name, 0);
    return { r, dir };
  }

  void it('a watch dropped mid-stream reconnects at once; the next update arrives', async () => {
    const { r, dir } = await startOn('drop');
    const since = h.api.requests.length;
    h.api.dropWatches();
    const start = hits();
    const v = secretValue('drop-1');
    h.api.update(secret('drop', { k: v }));
    await waitFor(
      () => h.receiver.hits.slice(start).some((x) => x.files[dir]?.k === v),
      'the update after the drop',
    );
    await watching('drop', since);
    assert.ok(
      ((await r.metric('config_reloader_watch_restarts_total{source="secret/shop/drop",reason="closed"}')) ??
        0) >= 1,
    );
    await r.stop();
  });

  void it('410 Gone after compaction: lists again and catches up', async () => {
    const { r, dir } = await startOn('gone');
    await h.api.stop();
    h.api.update(secret('gone', { k: secretValue('gone-1') }));
    const v = secretValue('gone-2');
    h.api.update(secret('gone', { k: v }));
    h.api.compact();
    await h.api.restart();
    const line = await r.cli.waitForLog(
      (l) => l.source === 'secret/shop/gone' && l.msg === 'the watch expired (410 Gone): listing again',
    );
    assert.equal(line.level, 'info');
    await waitFor(
      () => h.receiver.hits.some((x) => x.files[dir]?.k === v),
      'the newest content after relisting',
    );
    assert.equal(
      await r.metric('config_reloader_watch_restarts_total{source="secret/shop/gone",reason="gone"}'),
      1,
    );
    await r.stop();
  });

  void it('5xx answers for seconds: backs off, then recovers without a restart', async () => {
    const { r, dir } = await startOn('flaky');
    h.api.failRequests(503, { forMs: 2500, paths: /flaky/ });
    h.api.dropWatches();
    await r.cli.waitForLog(
      (l) => l.source === 'secret/shop/flaky' && l.code === 503 && typeof l.retryInMs === 'number',
    );
    const v = secretValue('flaky-1');
    h.api.update(secret('flaky', { k: v }));
    await waitFor(
      () => h.receiver.hits.some((x) => x.files[dir]?.k === v),
      'the update once the API answers again',
    );
    assert.ok(
      ((await r.metric('config_reloader_api_errors_total{source="secret/shop/flaky",code="503"}')) ?? 0) >= 1,
    );
    assert.equal(r.cli.child.exitCode, null);
    await r.stop();
  });

  void it('the API server down and back: /healthz fails after --health-timeout, recovers, and the update made meanwhile arrives', async () => {
    const dir = h.dir('down');
    h.api.create(secret('down', { k: secretValue('down-0') }));
    const r = await h.reloader(['--source', `secret/down=${dir}`, '--health-timeout', '1s'], {
      watch: [dir],
    });
    await waitReady(r);
    await waitFor(async () => (await r.get('/healthz')).status === 200, 'healthy');
    await h.api.stop();
    const v = secretValue('down-1');
    h.api.update(secret('down', { k: v }));
    const sick = await waitFor(async () => {
      const res = await r.get('/healthz');
      return res.status === 503 ? res : undefined;
    }, '/healthz 503 while the API is gone');
    assert.equal((JSON.parse(sick.body) as { openWatches: number }).openWatches, 0);
    await h.api.restart();
    await waitFor(
      () => h.receiver.hits.some((x) => x.files[dir]?.k === v),
      'the update made while the API was down',
    );
    await waitFor(async () => (await r.get('/healthz')).status === 200, '/healthz 200 again');
    await r.stop();
  });

  void it('a failing reload endpoint is retried until it recovers', async () => {
    const { r, dir } = await startOn('retry');
    // 429 (too many requests): retried for as long as it lasts; a 5xx three times in a row would be a rejection.
    h.receiver.status = 429;
    const start = hits();
    const v = secretValue('retry-1');
    try {
      h.api.update(secret('retry', { k: v }));
      await waitFor(() => hits() >= start + 3, 'three failing attempts');
    } finally {
      h.receiver.status = 200;
    }
    await waitFor(
      async () => (await r.metric('config_reloader_reloads_total{result="success"}')) === 1,
      'a successful reload',
    );
    assert.ok(((await r.metric('config_reloader_reloads_total{result="failure"}')) ?? 0) >= 3);
    assert.deepEqual(h.receiver.hits.at(-1)?.files[dir], { k: v });
    // One warning; the repeats of the same failure at debug level; the recovery says how many failed.
    const warnings = logLines(r, /^reload request to POST \S+ failed \(HTTP 429\); retrying with backoff/);
    assert.equal(warnings.length, 1);
    assert.match(
      String(warnings[0]?.msg),
      /check that the app is running and serves its reload endpoint there/,
    );
    assert.ok(logLines(r, /^reload not delivered again, same reason/).length >= 2);
    const recovered = logLines(r, /^reload request succeeded$/).at(-1);
    assert.ok((recovered?.afterFailedAttempts as number) >= 3);
    await r.stop();
  });

  void it('a burst of updates: the final files are the newest, and the last reload came after them', async () => {
    const { r, dir } = await startOn('burst');
    const start = hits();
    let last = '';
    for (let i = 1; i <= 80; i++) {
      last = secretValue(`burst-${i}`);
      h.api.update(secret('burst', { k: last, [`n${i % 3}`]: String(i) }));
    }
    await waitFor(
      () => h.receiver.hits.slice(start).some((x) => x.files[dir]?.k === last),
      'a reload that sees the newest content',
    );
    await waitFor(
      async () => (await r.metric('config_reloader_reloads_total{result="success"}')) === hits() - start,
      'no reload in flight',
    );
    assert.deepEqual(readTree(dir), { k: last, n2: '80' });
    assert.deepEqual(h.receiver.hits.at(-1)?.files[dir], { k: last, n2: '80' });
    assert.ok(hits() - start <= 80, 'more reloads than updates');
    await r.stop();
  });
});
