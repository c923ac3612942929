import assert from 'node:assert/strict';
import { lstat, readlink, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { runCli } from '../support/cli.ts';
import { configMap, Harness, NS, readTree, RW, secret, secretValue, waitFor, waitReady } from './harness.ts';

void describe('config-reloader-injector reloader (the process) against the test API server', () => {
  let h: Harness;
  before(async () => {
    h = await Harness.start();
  });
  after(async () => {
    await h.close();
  });

  const hits = () => h.receiver.hits.length;

  void it('first sync: writes every source, becomes ready only then, and does not reload for it', async () => {
    const dir = h.dir('first');
    const later = h.dir('later');
    const v1 = secretValue('first');
    h.api.create(secret('first', { password: v1 }));
    const r = await h.reloader(
      ['--source', `secret/first=${dir}`, '--source', `secret/first-later=${later}`],
      { watch: [dir, later] },
    );
    const pending = await waitFor(async () => {
      const res = await r.get('/readyz');
      return res.status === 503 &&
        res.body.includes('secret/shop/first-later') &&
        !res.body.includes('"secret/shop/first"')
        ? res
        : undefined;
    }, 'readyz naming only the missing source');
    assert.match(pending.body, /pending/);
    await r.cli.waitForLog(
      (l) =>
        l.source === 'secret/shop/first-later' && l.msg === 'object not found: waiting for it to be created',
    );
    assert.deepEqual(readTree(dir), { password: v1 });

    h.api.create(secret('first-later', { token: secretValue('later') }));
    await waitReady(r);
    const before = hits();
    // A change now is reloaded; had either first sync reloaded, there would be more than one request.
    const v2 = secretValue('first-v2');
    h.api.update(secret('first', { password: v2 }));
    await waitFor(() => hits() > before, 'a reload');
    assert.equal(hits() - before, 1);
    assert.deepEqual(h.receiver.hits.at(-1)?.files[dir], { password: v2 });
    assert.equal(await r.metric('config_reloader_writes_total{source="secret/shop/first"}'), 2);
    assert.equal(await r.metric('config_reloader_reloads_total{result="success"}'), 1);
    assert.equal((await r.get('/healthz')).status, 200);
    assert.equal(await r.stop(), 0);
  });

  void it('updates and key removals reach the files and then the app', async () => {
    const dir = h.dir('upd');
    h.api.create(secret('upd', { a: secretValue('a1'), b: secretValue('b1') }));
    const r = await h.reloader(['--source', `secret/upd=${dir}`], { watch: [dir] });
    await waitReady(r);
    const start = hits();
    const a2 = secretValue('a2');
    h.api.update(secret('upd', { a: a2 }));
    await waitFor(() => hits() > start, 'a reload after the update');
    assert.deepEqual(h.receiver.hits.at(-1)?.files[dir], { a: a2 });
    await assert.rejects(lstat(join(dir, 'b')), { code: 'ENOENT' });
    // A metadata-only change is no write and no reload.
    h.api.update(
      secret('upd', { a: a2 }, { metadata: { name: 'upd', namespace: NS, labels: { touched: 'yes' } } }),
    );
    const a3 = secretValue('a3');
    h.api.update(secret('upd', { a: a3 }));
    await waitFor(() => hits() > start + 1, 'a second reload');
    assert.equal(hits(), start + 2);
    assert.equal(await r.metric('config_reloader_writes_total{source="secret/shop/upd"}'), 3);
    assert.ok(
      ((await r.metric('config_reloader_event_to_write_seconds_count{source="secret/shop/upd"}')) ?? 0) >= 2,
    );
    await r.stop();
  });

  void it('items with nested paths and modes, defaultMode, ConfigMap binaryData and gunzip', async () => {
    const sdir = h.dir('items');
    const cdir = h.dir('cm');
    h.api.create(
      secret('tls', { 'tls.crt': 'CERT', 'tls.key': secretValue('key'), unused: secretValue('unused') }),
    );
    h.api.create(
      configMap(
        'vm',
        { 'plain.txt': 'hello' },
        { 'vmagent.yaml.gz': gzipSync('scrape_configs: []\n'), 'blob.bin': Buffer.from([1, 2, 3]) },
      ),
    );
    const r = await h.reloader(
      [
        '--source',
        `secret/tls=${sdir}?defaultMode=0640&item=tls.crt:certs/tls.crt&item=tls.key:certs/private/tls.key:0600`,
        '--source',
        `configmap/vm=${cdir}?gunzip=true`,
      ],
      { watch: [sdir, cdir] },
    );
    await waitReady(r);
    const files = readTree(sdir);
    assert.deepEqual(Object.keys(files).sort(), ['certs/private/tls.key', 'certs/tls.crt']);
    assert.equal(files['certs/tls.crt'], 'CERT');
    assert.equal(await readlink(join(sdir, 'certs')), '..data/certs');
    assert.equal((await stat(join(sdir, 'certs/tls.crt'))).mode & 0o777, 0o640);
    assert.equal((await stat(join(sdir, 'certs/private/tls.key'))).mode & 0o777, 0o600);
    const cm = readTree(cdir);
    assert.equal(cm['vmagent.yaml'], 'scrape_configs: []\n');
    assert.equal(cm['plain.txt'], 'hello');
    assert.equal((await stat(join(cdir, 'plain.txt'))).mode & 0o777, 0o644);
    await r.stop();
  });

  void it('a deleted object keeps its files (warning, metric); re-created, it syncs and reloads again', async () => {
    const dir = h.dir('del');
    const v1 = secretValue('del1');
    h.api.create(secret('del', { k: v1 }));
    const r = await h.reloader(['--source', `secret/del=${dir}`], { watch: [dir] });
    await waitReady(r);
    h.api.delete('secrets', NS, 'del');
    const warn = await r.cli.waitForLog((l) => l.source === 'secret/shop/del' && l.level === 'warn');
    assert.match(String(warn.msg), /deleted: keeping its last files/);
    assert.equal(await r.metric('config_reloader_object_deletions_total{source="secret/shop/del"}'), 1);
    assert.deepEqual(readTree(dir), { k: v1 });
    assert.equal((await r.get('/readyz')).status, 200);
    const start = hits();
    const v2 = secretValue('del2');
    h.api.create(secret('del', { k: v2 }));
    await waitFor(() => hits() > start, 'a reload after re-creation');
    assert.deepEqual(h.receiver.hits.at(-1)?.files[dir], { k: v2 });
    await r.stop();
  });

  void it('an optional source may be missing; when it appears later the app is told', async () => {
    const dir = h.dir('opt');
    const r = await h.reloader(['--source', `secret/opt=${dir}?optional=true`], { watch: [dir] });
    await waitReady(r);
    await r.cli.waitForLog(
      (l) => l.msg === 'optional object not found: nothing to write until it is created',
    );
    const start = hits();
    const v = secretValue('opt');
    h.api.create(secret('opt', { k: v }));
    await waitFor(() => hits() > start, 'a reload once the optional object exists');
    assert.deepEqual(h.receiver.hits.at(-1)?.files[dir], { k: v });
    await r.stop();
  });

  void it('after a restart: identical content on disk is no reload, different content is', async () => {
    const dir = h.dir('restart');
    h.api.create(secret('restart', { k: secretValue('r1') }));
    const first = await h.reloader(['--source', `secret/restart=${dir}`], { watch: [dir] });
    await waitReady(first);
    assert.equal(await first.stop(), 0);

    const start = hits();
    const same = await h.reloader(['--source', `secret/restart=${dir}`], { watch: [dir] });
    await waitReady(same);
    assert.equal(await same.metric('config_reloader_writes_total{source="secret/shop/restart"}'), undefined);
    await same.stop();
    const v2 = secretValue('r2');
    h.api.update(secret('restart', { k: v2 }));
    const changed = await h.reloader(['--source', `secret/restart=${dir}`], { watch: [dir] });
    await waitFor(() => hits() > start, 'the reload for content that changed while the reloader was down');
    assert.equal(hits(), start + 1);
    assert.deepEqual(h.receiver.hits.at(-1)?.files[dir], { k: v2 });
    await changed.stop();
  });

  void it('--once writes every source and exits 0 without serving or reloading', async () => {
    const dir = h.dir('once');
    const v = secretValue('once');
    h.api.create(secret('once', { k: v }));
    const start = hits();
    const r = await h.reloader(
      [
        '--once',
        '--source',
        `secret/once=${dir}`,
        '--source',
        `secret/once-missing=${h.dir('om')}?optional=true`,
      ],
      { waitListening: false },
    );
    assert.equal((await r.cli.exited).code, 0);
    assert.deepEqual(readTree(dir), { k: v });
    assert.equal(hits(), start);
  });

  void it('--once exits 1 naming the source when a required object is missing', async () => {
    const r = await h.reloader(
      ['--once', '--once-timeout', '1s', '--source', `secret/never=${h.dir('never')}`],
      { waitListening: false },
    );
    assert.equal((await r.cli.exited).code, 1);
    assert.match(
      r.cli.stderr(),
      /^error: secret\/shop\/never could not be synced within 1s: secret shop\/never not found$/m,
    );
  });

  void it('usage errors exit 2 with a message', async () => {
    const res = await runCli(['reloader', '--source', 'secret/x=relative']);
    assert.equal(res.code, 2);
    assert.match(
      res.stderr,
      /^error: invalid --source "secret\/x=relative": directory "relative" is not absolute/,
    );
    const kube = ['--source', 'secret/x=/x', '--kubeconfig', h.kubeconfig];
    for (const [args, message] of [
      [['--events'], /^error: --events needs env POD_NAME \(from the downward API/],
      [
        ['--reload-signal', 'TERM', '--signal-container', 'app'],
        /^error: --reload-signal "TERM" is not a reload signal/,
      ],
      [
        ['--confirm-metrics-url', 'http://127.0.0.1:1/metrics', '--confirm-success-metric', 'up'],
        /needs a delivery/,
      ],
      [['--restart-on-change', 'app'], /^error: --restart-on-change "app" is not CONTAINER=KIND\/NAME/],
    ] as const) {
      const bad = await runCli(['reloader', ...kube, ...args], {
        env: { POD_NAME: '', POD_UID: '', POD_NAMESPACE: '' },
      });
      assert.equal(bad.code, 2, bad.stderr);
      assert.match(bad.stderr, message);
    }
  });
});

void describe('the reloader with a service account that may not read its source', () => {
  let h: Harness;
  before(async () => {
    h = await Harness.start([{ verbs: RW, resource: 'secrets', namespace: NS, names: ['allowed'] }]);
  });
  after(async () => {
    await h.close();
  });

  const LINE =
    'serviceaccount shop/default cannot watch secrets "app-config" in namespace shop: grant get, list, watch';

  void it('logs exactly which permission is missing, stays unready, and keeps the granted source working', async () => {
    h.api.create(secret('app-config', { k: secretValue('forbidden') }));
    h.api.create(secret('allowed', { k: secretValue('allowed') }));
    const allowed = h.dir('allowed');
    const r = await h.reloader([
      '--source',
      `secret/app-config=${h.dir('denied')}`,
      '--source',
      `secret/allowed=${allowed}`,
    ]);
    const line = await r.cli.waitForLog((l) => l.msg === LINE);
    assert.equal(line.level, 'error');
    assert.equal(line.source, 'secret/shop/app-config');
    await waitFor(() => Object.keys(readTree(allowed)).length === 1, 'the granted source written');
    const res = await r.get('/readyz');
    assert.equal(res.status, 503);
    assert.deepEqual((JSON.parse(res.body) as { pending: string[] }).pending, ['secret/shop/app-config']);
    await r.stop();
  });

  void it('--once only warns when the source that cannot be read is optional', async () => {
    const r = await h.reloader(
      [
        '--once',
        '--once-timeout',
        '500ms',
        '--source',
        `secret/app-config=${h.dir('once-optional')}?optional=true`,
      ],
      {
        waitListening: false,
      },
    );
    assert.equal((await r.cli.exited).code, 0);
    const warn = await r.cli.waitForLog((l) => l.level === 'warn' && l.source === 'secret/shop/app-config');
    assert.match(
      String(warn.msg),
      /^optional secret\/shop\/app-config could not be synced within 0.5s: serviceaccount shop\/default cannot watch/,
    );
  });

  void it('--once fails with the same line', async () => {
    const r = await h.reloader(
      ['--once', '--once-timeout', '1s', '--source', `secret/app-config=${h.dir('once-denied')}`],
      { waitListening: false },
    );
    assert.equal((await r.cli.exited).code, 1);
    assert.ok(
      r.cli.stderr().includes(`error: secret/shop/app-config could not be synced within 1s: ${LINE}`),
      r.cli.stderr(),
    );
  });
});
