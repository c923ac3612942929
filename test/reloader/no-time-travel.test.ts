/**
 * The reloader never goes back in time: once newer content is on disk, no list answer that lags behind the watch
 * (an API server, cache or proxy serving an older snapshot) may write older content or reload the app with it.
 * The test API server serves such lists on request (serveStaleLists).
 */
import assert from 'node:assert/strict';
import { unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DATA_DIR } from '../../src/reloader/writer.ts';
import {
  Harness,
  readTree,
  secret,
  secretValue,
  waitFor,
  waitReady,
  type ReloaderProcess,
} from './harness.ts';

void describe('the reloader never writes content older than what is on disk', () => {
  let h: Harness;
  before(async () => {
    h = await Harness.start();
  });
  after(async () => {
    await h.close();
  });

  /** v1, then v2 and v3 through the watch: v3 on disk and reloaded; returns v2's resourceVersion. */
  async function upToV3(
    name: string,
    args: string[] = [],
  ): Promise<{ r: ReloaderProcess; dir: string; v: string[]; rv2: string; hitsAtV3: number }> {
    const dir = h.dir(name);
    const v = [secretValue(`${name}-1`), secretValue(`${name}-2`), secretValue(`${name}-3`)];
    h.api.create(secret(name, { k: v[0] as string }));
    const r = await h.reloader(['--source', `secret/${name}=${dir}`, ...args], { watch: [dir] });
    await waitReady(r);
    const rv2 = String(h.api.update(secret(name, { k: v[1] as string })).metadata.resourceVersion);
    h.api.update(secret(name, { k: v[2] as string }));
    await waitFor(
      () => h.receiver.hits.some((x) => x.files[dir]?.k === v[2]),
      'v3 on disk and the app reloaded with it',
    );
    return { r, dir, v, rv2, hitsAtV3: h.receiver.hits.length };
  }

  function assertNeverBack(dir: string, v: string[], hitsAtV3: number): void {
    assert.equal(readTree(dir).k, v[2], 'the files still hold v3');
    const later = h.receiver.hits.slice(hitsAtV3).map((x) => x.files[dir]?.k);
    assert.ok(
      !later.includes(v[1]) && !later.includes(v[0]),
      `the app was reloaded with older content after v3 (${later.length} reloads since)`,
    );
  }

  void it('a periodic resync whose lists lag behind the watch: v3 stays, no reload with v2', async () => {
    const name = 'resync-behind';
    const { r, dir, v, rv2, hitsAtV3 } = await upToV3(name, ['--resync', '300ms']);
    h.api.serveStaleLists(rv2, { paths: new RegExp(`metadata.name%3D${name}(&|$)`) });
    try {
      const since = r.cli.stdout().length;
      // Three resync rounds (each logs a line whose message starts with "resync"), whatever a round does.
      await waitFor(
        () =>
          r.cli
            .stdout()
            .slice(since)
            .split('\n')
            .filter((l) => l.includes('"source":"secret/shop/resync-behind"') && l.includes('"msg":"resync'))
            .length >= 3,
        'three resync rounds',
      );
      assertNeverBack(dir, v, hitsAtV3);
    } finally {
      h.api.clearStaleLists();
    }
    assert.equal(await r.stop(), 0);
  });

  void it('a relist after a 410 answered by a lagging server: v3 stays, no reload with v2', async () => {
    const name = 'relist-behind';
    const { r, dir, v, rv2, hitsAtV3 } = await upToV3(name);
    const mine = new RegExp(`metadata.name%3D${name}(&|$)`);
    h.api.serveStaleLists(rv2, { paths: mine });
    try {
      const since = h.api.requests.length;
      const outputAt = r.cli.stdout().length;
      // The next watch is refused with 410 Gone: the reloader must list again.
      h.api.failRequests(410, { count: 1, paths: new RegExp(`metadata.name%3D${name}&watch=true`) });
      h.api.dropWatches();
      const relisted = () =>
        h.api.requests
          .slice(since)
          .some(
            (q) => mine.test(`${q.path}?${q.query}`) && !q.query.includes('watch=true') && q.status === 200,
          );
      await waitFor(relisted, 'the relist after 410');
      await waitFor(
        () =>
          h.api.requests
            .slice(since)
            .some(
              (q) => mine.test(`${q.path}?${q.query}`) && q.query.includes('watch=true') && q.status === 200,
            ),
        'a watch again after the relist',
      );
      // What the relist brought has been handled once the reloader says whether it wrote anything.
      const handled = await waitFor(
        () =>
          r.cli
            .stdout()
            .slice(outputAt)
            .split('\n')
            .find(
              (l) =>
                l.includes(`"source":"secret/shop/${name}"`) && /"msg":"content (changed|unchanged)/.test(l),
            ),
        'the relisted object handled',
      );
      if (handled.includes('"msg":"content changed'))
        await waitFor(() => h.receiver.hits.length > hitsAtV3, 'the reload after that write');
      assertNeverBack(dir, v, hitsAtV3);
    } finally {
      h.api.clearStaleLists();
    }
    assert.equal(await r.stop(), 0);
  });

  void it('--resync rewrites files changed behind its back from the newest object, without a request to the API server', async () => {
    const name = 'resync-repair';
    const dir = h.dir(name);
    const v = secretValue(name);
    h.api.create(secret(name, { k: v, other: 'x' }));
    const r = await h.reloader(['--source', `secret/${name}=${dir}`, '--resync', '200ms'], { watch: [dir] });
    await waitReady(r);
    const requestsAtReady = h.api.requests.filter((q) => q.query.includes(`metadata.name%3D${name}`)).length;
    const hits = h.receiver.hits.length;
    writeFileSync(join(dir, DATA_DIR, 'k'), 'tampered');
    unlinkSync(join(dir, 'other'));
    await waitFor(
      () => h.receiver.hits.slice(hits).some((x) => x.files[dir]?.k === v && x.files[dir]?.other === 'x'),
      'the files repaired and the app reloaded with them',
    );
    assert.deepEqual(readTree(dir), { k: v, other: 'x' });
    const line = await r.cli.waitForLog(
      (l) => l.msg === 'content changed: files written' && l.resync === true,
    );
    assert.equal(line.source, `secret/shop/${name}`);
    assert.equal(
      h.api.requests.filter((q) => q.query.includes(`metadata.name%3D${name}`)).length,
      requestsAtReady,
      'no request to the API server for it',
    );
    assert.equal(await r.stop(), 0);
  });
});
