/**
 * A write that fails on the file system (here: permission denied on the target directory) is retried with backoff
 * until it works or a newer object supersedes it, without waiting for another event; /readyz says why meanwhile.
 * As root the reloader runs as uid 65532, for which the permissions apply.
 */
import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdirSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { Harness, readTree, secret, secretValue, waitFor, waitReady } from './harness.ts';

const UID = 65532;
const isRoot = process.getuid?.() === 0;

void describe('a write that fails on the file system', () => {
  let h: Harness;
  before(async () => {
    h = await Harness.start();
    h.shareWithOtherUsers();
  });
  after(async () => {
    await h.close();
  });

  void it('is retried with backoff until the directory is writable again, the newest object winning; /readyz says why meanwhile', async () => {
    const dir = h.dir('retry');
    mkdirSync(dir);
    if (isRoot) chownSync(dir, UID, UID);
    const v = [secretValue('retry-1'), secretValue('retry-2'), secretValue('retry-3')];
    h.api.create(secret('retry', { k: v[0] as string }));
    const r = await h.reloader(['--source', `secret/retry=${dir}`], { watch: [dir], runAsUid: UID });
    await waitReady(r);
    const hitsBefore = h.receiver.hits.length;
    const errors = (): Promise<number | undefined> =>
      r.metric('config_reloader_write_errors_total{source="secret/shop/retry"}');

    chmodSync(dir, 0o555); // the emptyDir turns read-only (or full, or failing)
    try {
      h.api.update(secret('retry', { k: v[1] as string }));
      // Failed, and retried without another event.
      await waitFor(async () => ((await errors()) ?? 0) >= 3, 'three failed attempts');
      const ready = await r.get('/readyz');
      assert.equal(ready.status, 503);
      const body = JSON.parse(ready.body) as { status: string; failing?: Record<string, string> };
      assert.equal(body.status, 'cannot write the newest content');
      assert.match(body.failing?.['secret/shop/retry'] ?? '', /^EACCES/);
      assert.equal(readTree(dir).k, v[0], 'the previous files stay');

      // A newer object supersedes the one being retried; it fails too, at once.
      const before = (await errors()) ?? 0;
      h.api.update(secret('retry', { k: v[2] as string }));
      await waitFor(async () => ((await errors()) ?? 0) > before, 'the newer object tried');
    } finally {
      chmodSync(dir, 0o755);
    }
    // Writable again: the next retry writes the newest object and the app is reloaded with it, no event needed.
    await waitFor(() => h.receiver.hits.some((x) => x.files[dir]?.k === v[2]), 'v3 on disk and reloaded');
    assert.deepEqual(
      h.receiver.hits.slice(hitsBefore).map((x) => x.files[dir]?.k),
      [v[2]],
      'one reload, with the newest content',
    );
    assert.equal((await r.get('/readyz')).status, 200);
    const written = await r.cli.waitForLog(
      (l) => l.msg === 'content changed: files written' && typeof l.afterFailedAttempts === 'number',
    );
    assert.ok(Number(written.afterFailedAttempts) >= 3);
    // One error line for the failure; its retries only at debug level.
    const errorLines = r.cli
      .stdout()
      .split('\n')
      .filter((l) => l.includes('"level":"error"') && l.includes('cannot write'));
    assert.equal(errorLines.length, 1, errorLines.join('\n'));
    assert.equal(await r.stop(), 0);
  });
});
