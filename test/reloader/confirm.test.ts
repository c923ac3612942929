/**
 * Confirmation through the real command: the reloader delivers the reload to a stand-in app, reads its metrics,
 * and reports applied, rejected or unconfirmed, with the per-source metrics, the log lines and Events. The
 * config is a Secret, so the harness also proves that nothing of it (nor the app's 500 body quoting it) is logged.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import {
  Harness,
  logLines,
  NS,
  POD_ENV,
  RW,
  secret,
  secretValue,
  waitFor,
  waitReady,
  type ReloaderProcess,
} from './harness.ts';
import { StandInApp } from './stand-in-app.ts';

const SOURCE = (name: string): string => `secret/${NS}/${name}`;

/** Waits for `rounds` resync rounds after now: time in which a retry, had there been one, would have gone out. */
async function resyncRounds(r: ReloaderProcess, rounds: number): Promise<void> {
  const at = r.cli.stdout().length;
  await waitFor(
    () =>
      r.cli
        .stdout()
        .slice(at)
        .split('\n')
        .filter((l) => l.includes('"msg":"resync')).length >= rounds,
    `${rounds} resync rounds`,
  );
}

void describe('confirmation that the app applied the config', () => {
  let h: Harness;
  let app: StandInApp;
  let n = 0;
  before(async () => {
    h = await Harness.start([
      { verbs: RW, resource: 'secrets', namespace: NS },
      { verbs: ['create'], resource: 'events', namespace: NS },
    ]);
  });
  beforeEach(async () => {
    app = new StandInApp();
    await app.start();
  });
  afterEach(async () => {
    await app.close();
  });
  after(async () => {
    await h.close();
  });

  /** A Secret `config.yaml` synced into a fresh directory, the app reading it; a running, ready reloader. */
  async function setup(
    extra: string[] = [],
    flags: Parameters<StandInApp['flags']>[0] = {},
  ): Promise<{ r: ReloaderProcess; name: string; update: (label: string) => void }> {
    const name = `conf-${++n}`;
    const dir = h.dir(name);
    app.file = join(dir, 'config.yaml');
    h.api.create(secret(name, { 'config.yaml': secretValue(`good-${name}-0`) }));
    const r = await h.reloader(
      [
        '--source',
        `secret/${name}=${dir}`,
        '--backoff',
        '20ms:40ms',
        '--resync',
        '100ms',
        ...app.flags(flags),
        ...extra,
      ],
      { reloadUrl: false, env: POD_ENV },
    );
    await waitReady(r);
    return { r, name, update: (label) => h.api.update(secret(name, { 'config.yaml': secretValue(label) })) };
  }

  void it('applied: one info line with the hash, the time from the change and the app timestamp; per-source metrics and an Event', async () => {
    const { r, name, update } = await setup(['--events']);
    const source = SOURCE(name);
    // The content the app started with counts as applied.
    assert.equal(await r.metric(`config_reloader_source_applied{source="${source}"}`), 1);
    // Not read yet: no sample, rather than a 0 that reads as a failed reload.
    assert.equal(await r.metric('config_reloader_app_last_reload_successful'), undefined);
    const before = app.timestamp as number;
    update(`good-${name}-1`);
    const line = await r.cli.waitForLog((l) => l.msg === 'the app applied the new config');
    assert.equal(line.level, 'info');
    assert.match(String(line.contentHash), /^[0-9a-f]{16}$/);
    assert.equal(typeof line.changeToAppliedMs, 'number');
    assert.ok((line.appTimestamp as number) > before, 'the timestamp after the reload');
    assert.equal(line.delivery, 'http');
    assert.equal(app.reloads.length, 1);
    assert.equal(await r.metric('config_reloader_confirmations_total{result="applied"}'), 1);
    assert.equal(await r.metric(`config_reloader_source_applied{source="${source}"}`), 1);
    assert.equal(await r.metric('config_reloader_change_to_applied_seconds_count'), 1);
    assert.equal(await r.metric('config_reloader_app_last_reload_successful'), 1);
    assert.equal(await r.metric('config_reloader_app_last_reload_success_timestamp_seconds'), app.timestamp);
    assert.equal(await r.metric('config_reloader_reload_delivery_info{delivery="http"}'), 1);
    const info = (await r.get('/metrics')).body
      .split('\n')
      .filter((l) => l.startsWith(`config_reloader_source_applied_content_info{source="${source}"`));
    assert.equal(info.length, 1, 'one series per source');
    assert.match(info[0] as string, /sha256="[0-9a-f]{16}"\} 1$/);
    const event = await waitFor(
      () => h.api.list('events', NS).find((e) => (e as { reason?: string }).reason === 'ConfigApplied'),
      'a ConfigApplied event',
    );
    const e = event as unknown as Record<string, Record<string, unknown> | string>;
    assert.equal(e.type, 'Normal');
    assert.equal(e.reportingComponent, 'config-reloader');
    assert.deepEqual(e.involvedObject, {
      apiVersion: 'v1',
      kind: 'Pod',
      name: 'web-0',
      namespace: NS,
      uid: POD_ENV.POD_UID,
    });
    assert.match(
      String(e.message),
      new RegExp(`^The app applied config ${String(line.contentHash)} \\(POST `),
    );
    await r.stop();
  });

  void it('rejected by an async app (success 1 → 0): one error line, Event, not retried until the next change', async () => {
    const { r, name, update } = await setup(['--events']);
    const source = SOURCE(name);
    update(`broken-${name}-1`);
    const line = await r.cli.waitForLog((l) => /^the app rejected the new config/.test(String(l.msg)));
    assert.equal(line.level, 'error');
    assert.equal(line.successValue, 0);
    assert.equal(line.metricsUrl, app.metricsUrl);
    assert.equal(line.status, undefined, 'the app answered 200');
    assert.match(
      String(line.msg),
      /: app_config_last_reload_successful = 0 at http:\/\/127\.0\.0\.1:\d+\/metrics\. It keeps running its previous config; fix the Secret\/ConfigMap .*Not retried until the content changes$/,
    );
    assert.equal(await r.metric('config_reloader_confirmations_total{result="rejected"}'), 1);
    assert.equal(await r.metric(`config_reloader_source_applied{source="${source}"}`), 0);
    await resyncRounds(r, 5);
    assert.equal(app.reloads.length, 1, 'a rejected config is not delivered again');
    assert.equal(logLines(r, /^the app rejected/).length, 1);
    const rejected = await waitFor(
      () => h.api.list('events', NS).find((e) => (e as { reason?: string }).reason === 'ConfigRejected'),
      'a ConfigRejected event',
    );
    assert.equal((rejected as unknown as { type: string }).type, 'Warning');
    // The fix is delivered and applied; the app goes back to success 1 without a newer timestamp, as
    // VictoriaMetrics does when the config is the one it kept running: success after a failure is news enough.
    app.bump = false;
    update(`good-${name}-2`);
    await r.cli.waitForLog((l) => l.msg === 'the app applied the new config');
    assert.equal(app.reloads.length, 2);
    assert.equal(await r.metric(`config_reloader_source_applied{source="${source}"}`), 1);
    await r.stop();
  });

  void it('rejected by a synchronous app (HTTP 500 and success 0): at once, with the status, never the body', async () => {
    app.mode = 'sync';
    const { r, name, update } = await setup();
    update(`broken-${name}-1`);
    const line = await r.cli.waitForLog((l) => /^the app rejected the new config/.test(String(l.msg)));
    assert.equal(line.status, 500);
    assert.match(
      String(line.msg),
      /POST http:\/\/127\.0\.0\.1:\d+\/-\/reload answered HTTP 500 and app_config_last_reload_successful = 0/,
    );
    assert.equal(await r.metric('config_reloader_reloads_total{result="rejected"}'), 1);
    assert.equal(await r.metric('config_reloader_reloads_total{result="failure"}'), undefined);
    await resyncRounds(r, 5);
    assert.equal(app.reloads.length, 1, 'not retried');
    assert.doesNotMatch(r.cli.stdout(), /failed to reload config/, 'the body is not logged');
    await r.stop();
  });

  void it('unconfirmed: the success metric is missing (named, with the fix), not retried', async () => {
    app.success = undefined;
    app.mode = 'ignore'; // a reload would make the metric appear
    const { r, name, update } = await setup([], { timeout: '500ms' });
    update(`good-${name}-1`);
    const line = await r.cli.waitForLog((l) => /^could not confirm/.test(String(l.msg)));
    assert.equal(line.level, 'warn');
    assert.match(String(line.reason), /no metric app_config_last_reload_successful$/);
    assert.match(String(line.msg), /check the metric name/);
    assert.match(String(line.msg), /Not retried: the reload was delivered$/);
    assert.equal(await r.metric('config_reloader_confirmations_total{result="unconfirmed"}'), 1);
    await resyncRounds(r, 3);
    assert.equal(app.reloads.length, 1);
    await r.stop();
  });

  void it('unconfirmed: the metrics URL does not answer (named, with the fix)', async () => {
    const closed = createServer();
    await new Promise<void>((res) => closed.listen(0, '127.0.0.1', res));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((res) => closed.close(() => res()));
    const { r, name, update } = await setup(['--confirm-metrics-url', `http://127.0.0.1:${port}/metrics`], {
      timeout: '500ms',
    });
    update(`good-${name}-1`);
    const line = await r.cli.waitForLog((l) => /^could not confirm/.test(String(l.msg)));
    assert.match(
      String(line.reason),
      new RegExp(`^cannot read http://127.0.0.1:${port}/metrics: ECONNREFUSED$`),
    );
    assert.match(String(line.msg), /check config-reloader\.io\/metrics-url/);
    assert.equal(app.reloads.length, 1, 'delivered all the same');
    await r.stop();
  });

  void it('unconfirmed: success stays 1 and the timestamp does not advance', async () => {
    app.mode = 'ignore';
    const { r, name, update } = await setup([], { timeout: '500ms' });
    update(`good-${name}-1`);
    const line = await r.cli.waitForLog((l) => /^could not confirm/.test(String(l.msg)));
    assert.match(
      String(line.reason),
      /^app_config_last_reload_successful is 1 but app_config_last_reload_success_timestamp_seconds stayed at 1700000000.25 \(not after 1700000000.25\) for 0.5s$/,
    );
    assert.equal(await r.metric(`config_reloader_source_applied{source="${SOURCE(name)}"}`), 0);
    await resyncRounds(r, 3);
    assert.equal(app.reloads.length, 1);
    await r.stop();
  });

  void it('unchanged (--confirm-unchanged-keeps-timestamp): the app reloads and keeps its timestamp; one info line, counted as applied, not retried, no Event', async () => {
    // VictoriaMetrics after a comment-only edit: success 1, the timestamp as it was.
    app.bump = false;
    const { r, name, update } = await setup(['--confirm-unchanged-keeps-timestamp', '--events'], {
      timeout: '500ms',
    });
    const source = SOURCE(name);
    const contentInfo = async (): Promise<string[]> =>
      (await r.get('/metrics')).body
        .split('\n')
        .filter((l) => l.startsWith(`config_reloader_source_applied_content_info{source="${source}"`));
    const started = await contentInfo();
    const eventPosts = (): number =>
      h.api.requests.filter((q) => q.method === 'POST' && q.path.endsWith('/events')).length;
    const postsBefore = eventPosts();
    update(`good-${name}-1`);
    const line = await r.cli.waitForLog((l) => /^the app found nothing to change/.test(String(l.msg)));
    assert.equal(line.level, 'info');
    assert.equal(line.appTimestamp, 1_700_000_000.25);
    assert.match(
      String(line.msg),
      /^the app found nothing to change in config [0-9a-f]{16}: app_config_last_reload_successful is 1 and app_config_last_reload_success_timestamp_seconds is still 1700000000\.25 0\.5s after the reload, so it reloaded and its effective config is the one it was running \(VictoriaMetrics keeps its timestamp for edits it does not use: .*\)\. Counted as applied$/,
    );
    assert.equal(app.reloads.length, 1);
    assert.equal(await r.metric('config_reloader_confirmations_total{result="unchanged"}'), 1);
    assert.equal(await r.metric('config_reloader_confirmations_total{result="unconfirmed"}'), undefined);
    assert.equal(await r.metric(`config_reloader_source_applied{source="${source}"}`), 1);
    const now = await contentInfo();
    assert.equal(now.length, 1, 'one series per source');
    assert.notDeepEqual(now, started, 'the delivered content is the applied content');
    // The time to the timeout is not a time to apply.
    assert.equal(await r.metric('config_reloader_change_to_applied_seconds_count'), undefined);
    await resyncRounds(r, 3);
    assert.equal(app.reloads.length, 1, 'not retried');
    assert.equal(logLines(r, /^could not confirm/).length, 0, 'no warning');
    assert.equal(eventPosts(), postsBefore, 'no Event');
    await r.stop();
  });

  void it('without --confirm-unchanged-keeps-timestamp the same app is unconfirmed: a warning, applied stays 0', async () => {
    app.bump = false;
    const { r, name, update } = await setup([], { timeout: '500ms' });
    update(`good-${name}-1`);
    const line = await r.cli.waitForLog((l) => /^could not confirm/.test(String(l.msg)));
    assert.equal(line.level, 'warn');
    assert.match(
      String(line.msg),
      /needs --confirm-unchanged-keeps-timestamp, which the VictoriaMetrics presets pass/,
    );
    assert.equal(app.reloads.length, 1, 'the app did reload');
    assert.equal(await r.metric('config_reloader_confirmations_total{result="unconfirmed"}'), 1);
    assert.equal(await r.metric('config_reloader_confirmations_total{result="unchanged"}'), undefined);
    assert.equal(await r.metric(`config_reloader_source_applied{source="${SOURCE(name)}"}`), 0);
    assert.equal(logLines(r, /^the app found nothing to change/).length, 0);
    await r.stop();
  });

  void it('a newer change ends the wait for a verdict: it is delivered at once and gets the verdict', async () => {
    app.mode = 'ignore'; // no verdict for 10 minutes, unless a newer change ends the wait
    const { r, name, update } = await setup([], { timeout: '10m' });
    update(`good-${name}-1`);
    await waitFor(() => app.reloads.length === 1, 'the first delivery');
    app.mode = 'async';
    update(`good-${name}-2`);
    const applied = await r.cli.waitForLog((l) => l.msg === 'the app applied the new config');
    assert.equal(app.reloads.length, 2);
    const superseded = logLines(r, /^a newer change came before the app's verdict/);
    assert.equal(superseded.length, 1);
    assert.notEqual(superseded[0]?.contentHash, applied.contentHash);
    assert.equal(await r.metric('config_reloader_confirmations_total{result="unconfirmed"}'), undefined);
    // The time from the first change, still unapplied when the second came, to the apply of both.
    assert.equal(await r.metric('config_reloader_change_to_applied_seconds_count'), 1);
    await r.stop();
  });

  void it("a verdict cut short: the next baseline is read once the app's 1 s-old metrics copy shows the older reload, so its result does not decide the newer delivery", async () => {
    // VictoriaMetrics: /metrics is a copy made at most once a second. A broken config, then at once a good one
    // the app takes its time to load. Read at once, the baseline for the good one was the copy from before the
    // broken one (success 1); the next copy showed the broken one's 0, taken for the good config's rejection: a
    // ConfigRejected on a good config, never retried.
    app.copyMs = 1000;
    const { r, name, update } = await setup([], { timeout: '10s' });
    update(`broken-${name}-1`);
    await waitFor(() => app.reloads.length === 1 && app.success === 0, 'the broken config loaded');
    app.reloadDelayMs = 2500;
    update(`good-${name}-2`);
    const verdict = await r.cli.waitForLog(
      (l) => l.msg === 'the app applied the new config' || /^the app rejected/.test(String(l.msg)),
    );
    assert.equal(logLines(r, /^a newer change came before the app's verdict/).length, 1, 'superseded');
    assert.equal(verdict.msg, 'the app applied the new config');
    assert.equal(app.reloads.length, 2);
    assert.ok(
      (app.reloads[1] as number) - (app.reloads[0] as number) >= 1100,
      'the good config delivered once the copy was newer than the broken one',
    );
    assert.equal(logLines(r, /^the app rejected/).length, 0);
    await r.stop();
  });

  void it('a whole-second app timestamp within 2 s of now makes the delivery wait until it is 2 s old, then applies', async () => {
    // VictoriaMetrics: whole seconds. A reload in the same second as the last would report the same one.
    app.clock = () => Math.floor(Date.now() / 1000);
    const { r, name, update } = await setup();
    // A second ahead of now (a fake timestamp): the reloader reads it within 3 s even on a loaded machine.
    const baseline = Math.floor(Date.now() / 1000) + 1;
    app.timestamp = baseline;
    update(`good-${name}-1`);
    const applied = await r.cli.waitForLog((l) => l.msg === 'the app applied the new config');
    const wait = logLines(r, /^waiting for the app's whole-second reload timestamp/);
    assert.equal(wait.length, 1);
    assert.equal(wait[0]?.appTimestamp, baseline);
    assert.equal(app.reloads.length, 1);
    assert.ok(
      (app.reloads[0] as number) >= (baseline + 2) * 1000,
      'delivered only once the baseline is 2 s old',
    );
    assert.ok((applied.appTimestamp as number) > baseline);
    await r.stop();
  });

  void it('a fractional or old timestamp makes no wait', async () => {
    const { r, name, update } = await setup();
    app.timestamp = Math.floor(Date.now() / 1000) - 60;
    update(`good-${name}-1`);
    await r.cli.waitForLog((l) => l.msg === 'the app applied the new config');
    app.timestamp = Date.now() / 1000 - 0.5; // fractional (Prometheus), within 2 s: not a second's resolution
    update(`good-${name}-2`);
    await waitFor(() => logLines(r, /^the app applied the new config$/).length === 2, 'the second apply');
    assert.equal(logLines(r, /^waiting for the app's whole-second/).length, 0);
    await r.stop();
  });
});

void describe('--events without the permission to create events', () => {
  let h: Harness;
  let app: StandInApp;
  before(async () => {
    h = await Harness.start([{ verbs: RW, resource: 'secrets', namespace: NS }]);
    app = new StandInApp();
    await app.start();
  });
  after(async () => {
    await app.close();
    await h.close();
  });

  void it('warns once naming the Role to grant, and tries no more events', async () => {
    const dir = h.dir('ev');
    app.file = join(dir, 'config.yaml');
    h.api.create(secret('ev', { 'config.yaml': secretValue('good-ev-0') }));
    const r = await h.reloader(['--source', `secret/ev=${dir}`, '--events', ...app.flags()], {
      reloadUrl: false,
      env: POD_ENV,
    });
    await waitReady(r);
    h.api.update(secret('ev', { 'config.yaml': secretValue('good-ev-1') }));
    const warn = await r.cli.waitForLog((l) => /^cannot record events/.test(String(l.msg)));
    assert.equal(warn.level, 'warn');
    assert.match(
      String(warn.msg),
      /^cannot record events: serviceaccount shop\/default may not create events in namespace shop; grant it a Role with verbs \[create\] on resource events/,
    );
    h.api.update(secret('ev', { 'config.yaml': secretValue('good-ev-2') }));
    await waitFor(() => logLines(r, /^the app applied the new config$/).length === 2, 'the second apply');
    assert.equal(logLines(r, /^cannot record events/).length, 1);
    const posts = h.api.requests.filter((q) => q.method === 'POST' && q.path.endsWith('/events'));
    assert.equal(posts.length, 1, 'no event tried after the 403');
    assert.equal(posts[0]?.status, 403);
    await r.stop();
  });
});
