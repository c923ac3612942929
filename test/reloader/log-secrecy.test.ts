import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import {
  b64,
  Harness,
  NS,
  POD_ENV,
  RW,
  secret,
  secretValue,
  secretValuesMade,
  waitFor,
  waitReady,
} from './harness.ts';
import { StandInApp } from './stand-in-app.ts';

/**
 * Drives one reloader at --log-level=trace through every path that logs (sync, updates, bad gzip, a missing
 * item key, deletion, 410, dropped watches, API errors, forbidden, failing reloads, --once failures) and
 * checks that no Secret value, raw or base64, is in any of its output.
 */
void describe('reloader logs never contain Secret data', () => {
  let h: Harness;
  before(async () => {
    h = await Harness.start([
      { verbs: RW, resource: 'secrets', namespace: NS, names: ['leak-a', 'leak-gz', 'leak-items'] },
    ]);
  });
  after(async () => {
    await h.close(); // asserts again, over every process this file started
  });

  void it('at trace level, across updates, errors and faults', async () => {
    const a = h.dir('a');
    const gz = h.dir('gz');
    const items = h.dir('items');
    h.api.create(secret('leak-a', { password: secretValue('pw'), 'token.txt': secretValue('tok') }));
    // `.gz` keys that are not gzip: the error names the key, not the bytes.
    h.api.create(secret('leak-gz', { 'conf.gz': secretValue('not-gzip') }));
    h.api.create(secret('leak-items', { present: secretValue('present') }));
    const r = await h.reloader(
      [
        '--source',
        `secret/leak-a=${a}`,
        '--source',
        `secret/leak-gz=${gz}?gunzip=true`,
        '--source',
        `secret/leak-items=${items}?item=present:p&item=absent:x`,
        '--source',
        `secret/leak-denied=${h.dir('denied')}`,
      ],
      { watch: [a] },
    );
    await r.cli.waitForLog((l) => l.source === 'secret/shop/leak-gz' && /not valid gzip/.test(String(l.msg)));
    await r.cli.waitForLog(
      (l) => l.source === 'secret/shop/leak-items' && /no key "absent"/.test(String(l.msg)),
    );
    await r.cli.waitForLog((l) => l.source === 'secret/shop/leak-denied' && l.code === 403);

    h.receiver.status = 500;
    h.api.update(secret('leak-a', { password: secretValue('pw2') }));
    await r.cli.waitForLog((l) =>
      /^reload request to POST \S+ failed \(HTTP 500\); retrying/.test(String(l.msg)),
    );
    h.receiver.status = 200;
    await waitFor(
      async () => (await r.metric('config_reloader_reloads_total{result="success"}')) === 1,
      'a successful reload',
    );

    h.api.update({ ...secret('leak-gz', {}), data: { 'conf.gz': b64(gzipSync(secretValue('gz-plain'))) } });
    h.api.dropWatches();
    h.api.delete('secrets', NS, 'leak-a');
    h.api.create(secret('leak-a', { password: secretValue('pw3') }));
    await h.api.stop();
    h.api.update(secret('leak-a', { password: secretValue('pw4') }));
    h.api.compact();
    await h.api.restart();
    await r.cli.waitForLog((l) => l.msg === 'the watch expired (410 Gone): listing again');
    h.api.failRequests(500, { count: 2, paths: /leak-a/ });
    h.api.dropWatches();
    const last = secretValue('pw5');
    h.api.update(secret('leak-a', { password: last }));
    await waitFor(
      () => h.receiver.hits.some((x) => x.files[a]?.password === last),
      'the last update reloaded',
    );
    await r.stop();

    const once = await h.reloader(
      ['--once', '--once-timeout', '500ms', '--source', `secret/leak-items=${h.dir('once')}?item=absent:x`],
      { waitListening: false },
    );
    assert.equal((await once.cli.exited).code, 1);

    const out = h.output();
    assert.match(out, /"level":"trace"/, 'trace lines were logged, so the check covers them');
    assert.match(out, /"msg":"watch event"/);
    assert.equal(secretValuesMade(), 9);
    h.assertNoSecretInLogs();
  });
});

/**
 * The lines of issue 14 at trace level: signal delivery failing (the lookup's sentence), restarts failing, the
 * app's verdicts (applied; rejected by a synchronous app whose 500 body quotes the Secret; unconfirmed; unchanged), the events
 * 403. The config the app reads is the Secret itself, so a line quoting the app's answer or the files would leak it.
 */
void describe('reloader logs never contain Secret data: delivery, confirmation, events, restarts', () => {
  let h: Harness;
  const app = new StandInApp();
  before(async () => {
    h = await Harness.start([{ verbs: RW, resource: 'secrets', namespace: NS }]);
    await app.start();
  });
  after(async () => {
    await app.close();
    await h.close(); // asserts over every output
  });

  void it('at trace level, across verdicts, failed signals and restarts, and a forbidden event', async () => {
    const dir = h.dir('c');
    app.file = join(dir, 'config.yaml');
    app.mode = 'sync';
    h.api.create(secret('leak-c', { 'config.yaml': secretValue('good-0') }));
    h.api.create(secret('leak-env', { PASSWORD: secretValue('env-0') }));
    const r = await h.reloader(
      [
        '--source',
        `secret/leak-c=${dir}`,
        '--restart-on-change',
        `nobody-${process.pid}=secret/leak-env`,
        '--events',
        '--backoff',
        '20ms:40ms',
        ...app.flags({ timeout: '300ms' }),
      ],
      { reloadUrl: false, env: POD_ENV },
    );
    await waitReady(r);
    h.api.update(secret('leak-c', { 'config.yaml': secretValue('good-1') }));
    await r.cli.waitForLog((l) => l.msg === 'the app applied the new config');
    await r.cli.waitForLog((l) => /^cannot record events/.test(String(l.msg)));
    h.api.update(secret('leak-c', { 'config.yaml': secretValue('broken-2') }));
    await r.cli.waitForLog((l) => /^the app rejected the new config/.test(String(l.msg)));
    app.mode = 'ignore';
    app.success = 1; // and a timestamp that does not move: unconfirmed
    h.api.update(secret('leak-c', { 'config.yaml': secretValue('good-3') }));
    await r.cli.waitForLog((l) => /^could not confirm/.test(String(l.msg)));
    h.api.update(secret('leak-env', { PASSWORD: secretValue('env-1') }));
    await r.cli.waitForLog((l) => /^cannot restart container/.test(String(l.msg)));
    await r.stop();

    const signal = await h.reloader(
      [
        '--source',
        `secret/leak-c=${h.dir('s')}`,
        '--reload-signal',
        'HUP',
        '--signal-container',
        `nobody-${process.pid}`,
        '--backoff',
        '20ms:40ms',
      ],
      { reloadUrl: false },
    );
    await waitReady(signal);
    h.api.update(secret('leak-c', { 'config.yaml': secretValue('good-4') }));
    await signal.cli.waitForLog(
      (l) => l.msg === 'reload not delivered again, same reason: retrying with backoff',
    );
    await signal.stop();

    // The app reloads and keeps its timestamp: the unchanged verdict's line.
    app.mode = 'async';
    app.bump = false;
    const keeps = await h.reloader(
      [
        '--source',
        `secret/leak-c=${h.dir('u')}`,
        '--backoff',
        '20ms:40ms',
        ...app.flags({ timeout: '300ms' }),
        '--confirm-unchanged-keeps-timestamp',
      ],
      { reloadUrl: false },
    );
    await waitReady(keeps);
    h.api.update(secret('leak-c', { 'config.yaml': secretValue('good-5') }));
    await keeps.cli.waitForLog((l) => /^the app found nothing to change/.test(String(l.msg)));
    await keeps.stop();
    assert.match(h.output(), /"msg":"reload signal not delivered: no process of container/);
    assert.match(h.output(), /"msg":"the app found nothing to change in config /);
    h.assertNoSecretInLogs();
  });
});
