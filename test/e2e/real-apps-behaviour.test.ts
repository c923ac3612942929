import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import type { RealApp } from '../support/apps.ts';
import { ruleNames, sampleValue, scrapeJobs, startApp, VM_METRICS_PAGES } from '../support/apps.ts';
import { waitFor } from '../support/wait.ts';

/**
 * What the reloader relies on in each app, pinned against the real binaries (test/apps, built by
 * `npm run apps:build`): how a reload is asked for, when it is done, what the app reports on /metrics, and that
 * a config it refuses leaves the previous one running. docs/e2e.md ("The real apps") records these facts.
 */

const dir = mkdtempSync(join(tmpdir(), 'real-apps-'));

/** A scrape config with one job; its target is a closed port, scraped once an hour: the job is what counts. */
const scrapeConfig = (job: string): string =>
  `global:\n  scrape_interval: 1h\nscrape_configs:\n  - job_name: ${job}\n    static_configs:\n      - targets: ["127.0.0.1:9"]\n`;
/** vmalert: alerting rules (recording rules would need -remoteWrite.url). */
const alertRules = (name: string, expr = 'up == 0'): string =>
  `groups:\n  - name: e2e\n    interval: 1m\n    rules:\n      - alert: ${name}\n        expr: ${expr}\n`;
const recordingRules = (name: string, expr = 'sum(up)'): string =>
  `groups:\n  - name: e2e\n    rules:\n      - record: ${name}\n        expr: ${expr}\n`;

const nowS = (): number => Date.now() / 1000;

let prometheus: RealApp | undefined;

before(async () => {
  const rules = join(dir, 'prometheus-rules.yml');
  await writeFile(rules, recordingRules('e2e:first'));
  prometheus = await startApp('prometheus', { file: rules });
});
after(async () => {
  await prometheus?.stop();
  rmSync(dir, { recursive: true, force: true });
});

void describe('real vmagent: -promscrape.config reloads', () => {
  const SUCCESS = 'vm_promscrape_config_last_reload_successful';
  const STAMP = 'vm_promscrape_config_last_reload_success_timestamp_seconds';
  const RELOADS = 'vm_promscrape_config_reloads_total';
  const ERRORS = 'vm_promscrape_config_reloads_errors_total';
  let app: RealApp;
  const file = join(dir, 'scrape.yml');

  before(async () => {
    await writeFile(file, scrapeConfig('first'));
    app = await startApp('vmagent', { file });
  });
  after(async () => app?.stop());

  const metricIs = (name: string, value: number): Promise<boolean> =>
    waitFor(async () => (await app.metric(name)) === value, `${name} = ${value}; log:\n${app.logTail()}`);

  void test('at start: success 1 and a whole-second timestamp', async () => {
    // /health answers a few ms before the scrape jobs are in place.
    await waitFor(async () => (await scrapeJobs(app)).join() === 'first', 'job first running');
    assert.equal(await app.metric(SUCCESS), 1);
    const stamp = (await app.metric(STAMP)) as number;
    assert.ok(Number.isInteger(stamp), `${STAMP} ${stamp} is whole seconds`);
    assert.ok(stamp <= nowS());
  });

  void test('POST /-/reload: 200 at once, the new scrape config runs, reloads_total +1, the timestamp lags the clock by up to about a second', async () => {
    const reloadsBefore = (await app.metricNow(RELOADS)) as number;
    await writeFile(file, scrapeConfig('second'));
    const askedAt = nowS();
    const res = await app.request('POST', '/-/reload');
    assert.equal(res.status, 200);
    await waitFor(async () => (await scrapeJobs(app)).includes('second'), 'job second running');
    assert.deepEqual(await scrapeJobs(app), ['second']);
    await metricIs(RELOADS, reloadsBefore + 1);
    const stamp = (await app.metric(STAMP)) as number;
    assert.ok(Number.isInteger(stamp));
    // lib/fasttime: a 1 s ticker's last tick, so up to a second behind floor(now); 2 s of slack for a busy machine.
    assert.ok(stamp >= Math.floor(askedAt) - 2, `${STAMP} ${stamp}, reload asked at ${askedAt}`);
    assert.ok(stamp <= nowS());
  });

  void test('/metrics is a copy up to 1 s old: a reload done since does not show at once', async (t) => {
    await writeFile(file, scrapeConfig('third'));
    // A page made after `madeAfter`: the app serves it again until a second has passed since it made it.
    const pages = async (): Promise<number | undefined> =>
      sampleValue(await app.metricsPage(), VM_METRICS_PAGES);
    const seen = await pages();
    let madeAfter = 0;
    let page = '';
    do {
      madeAfter = Date.now();
      page = await app.metricsPage();
    } while (sampleValue(page, VM_METRICS_PAGES) === seen);
    const reloadsBefore = sampleValue(page, RELOADS) as number;
    app.signal('SIGHUP');
    await waitFor(async () => (await scrapeJobs(app)).includes('third'), 'job third running');
    const reloads = await app.metric(RELOADS);
    const elapsed = Date.now() - madeAfter;
    if (elapsed < 1000) assert.equal(reloads, reloadsBefore, 'the same page as before the reload');
    else t.diagnostic(`the machine took ${elapsed} ms: the cached page could not be caught`);
    await metricIs(RELOADS, reloadsBefore + 1);
  });

  void test('SIGHUP: the new scrape config runs', async () => {
    await writeFile(file, scrapeConfig('fourth'));
    app.signal('SIGHUP');
    await waitFor(async () => (await scrapeJobs(app)).join() === 'fourth', 'job fourth alone running');
  });

  void test('a broken config: success 0, errors +1, the timestamp kept, the old scrape config still runs', async () => {
    const stampBefore = await app.metricNow(STAMP);
    const errorsBefore = (await app.metric(ERRORS)) as number;
    await writeFile(file, 'scrape_configs:\n  - job_name: broken\n    no_such_field: 1\n');
    assert.equal((await app.request('POST', '/-/reload')).status, 200, 'answered 200 all the same');
    await metricIs(SUCCESS, 0);
    assert.equal(await app.metric(ERRORS), errorsBefore + 1);
    assert.equal(await app.metric(STAMP), stampBefore);
    assert.deepEqual(await scrapeJobs(app), ['fourth']);
    assert.match(app.logTail(5), /cannot read .* on SIGHUP: .*continuing with the previous config/s);
  });

  void test('back to the config it runs: success 1 again, but no new timestamp and no reload counted ("nothing changed")', async () => {
    const stampBefore = await app.metricNow(STAMP);
    const reloadsBefore = await app.metric(RELOADS);
    await writeFile(file, scrapeConfig('fourth'));
    app.signal('SIGHUP');
    await metricIs(SUCCESS, 1);
    assert.equal(await app.metric(STAMP), stampBefore);
    assert.equal(await app.metric(RELOADS), reloadsBefore);
    assert.match(app.logTail(5), /nothing changed in/);
  });
});

void describe('real vmalert: -rule reloads', () => {
  const SUCCESS = 'vmalert_config_last_reload_successful';
  const STAMP = 'vmalert_config_last_reload_success_timestamp_seconds';
  const RELOADS = 'vmalert_config_last_reload_total';
  const ERRORS = 'vmalert_config_last_reload_errors_total';
  let app: RealApp;
  const file = join(dir, 'vmalert-rules.yml');

  before(async () => {
    await writeFile(file, alertRules('First'));
    app = await startApp('vmalert', { file, datasourceUrl: (prometheus as RealApp).url });
  });
  after(async () => app?.stop());

  const metricIs = (name: string, value: number): Promise<boolean> =>
    waitFor(async () => (await app.metric(name)) === value, `${name} = ${value}; log:\n${app.logTail()}`);

  void test('at start: success 1, a whole-second timestamp, the rules loaded', async () => {
    assert.deepEqual(await ruleNames(app), ['First']);
    assert.equal(await app.metric(SUCCESS), 1);
    assert.ok(Number.isInteger(await app.metric(STAMP)));
  });

  void test('POST /-/reload: 200 at once, the new rules run, reloads +1', async () => {
    const reloadsBefore = (await app.metricNow(RELOADS)) as number;
    await writeFile(file, alertRules('Second'));
    assert.equal((await app.request('POST', '/-/reload')).status, 200);
    await waitFor(async () => (await ruleNames(app)).join() === 'Second', 'rule Second alone');
    await metricIs(RELOADS, reloadsBefore + 1);
    assert.equal(await app.metric(SUCCESS), 1);
  });

  void test('GET /-/reload reloads too', async () => {
    await writeFile(file, alertRules('Third'));
    assert.equal((await app.request('GET', '/-/reload')).status, 200);
    await waitFor(async () => (await ruleNames(app)).join() === 'Third', 'rule Third alone');
  });

  void test('SIGHUP: the new rules run', async () => {
    await writeFile(file, alertRules('Fourth'));
    app.signal('SIGHUP');
    await waitFor(async () => (await ruleNames(app)).join() === 'Fourth', 'rule Fourth alone');
  });

  void test('a rule that does not parse: 200 all the same, then success 0, errors +1, the timestamp kept, the old rules still run', async () => {
    const stampBefore = await app.metricNow(STAMP);
    const errorsBefore = (await app.metric(ERRORS)) as number;
    await writeFile(file, alertRules('Broken', 'up =='));
    assert.equal((await app.request('POST', '/-/reload')).status, 200);
    await metricIs(SUCCESS, 0);
    assert.equal(await app.metric(ERRORS), errorsBefore + 1);
    assert.equal(await app.metric(STAMP), stampBefore);
    assert.deepEqual(await ruleNames(app), ['Fourth']);
    assert.match(app.logTail(10), /cannot parse configuration file/);
  });

  void test('back to the rules it runs: success 1, no new timestamp, but the reload is counted', async () => {
    const stampBefore = await app.metricNow(STAMP);
    const reloadsBefore = (await app.metricNow(RELOADS)) as number;
    await writeFile(file, alertRules('Fourth'));
    app.signal('SIGHUP');
    await metricIs(SUCCESS, 1);
    await metricIs(RELOADS, reloadsBefore + 1);
    assert.equal(await app.metric(STAMP), stampBefore);
  });
});

void describe('real Prometheus: rule_files reloads', () => {
  const SUCCESS = 'prometheus_config_last_reload_successful';
  const STAMP = 'prometheus_config_last_reload_success_timestamp_seconds';
  const app = (): RealApp => prometheus as RealApp;
  const file = join(dir, 'prometheus-rules.yml');

  void test('at start: success 1, a timestamp with sub-second digits', async () => {
    assert.deepEqual(await ruleNames(app()), ['e2e:first']);
    assert.equal(await app().metric(SUCCESS), 1);
    const stamp = (await app().metric(STAMP)) as number;
    assert.ok(stamp > 1e9 && stamp <= nowS());
    assert.ok(!Number.isInteger(stamp), `${STAMP} ${stamp} has a fraction`);
  });

  void test('POST /-/reload is synchronous: when it answers 200 the new rules run and the timestamp moved', async () => {
    const stampBefore = (await app().metric(STAMP)) as number;
    await writeFile(file, recordingRules('e2e:second'));
    const res = await app().request('POST', '/-/reload');
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(await ruleNames(app()), ['e2e:second']);
    assert.ok(((await app().metric(STAMP)) as number) > stampBefore);
    assert.equal(await app().metric(SUCCESS), 1);
  });

  void test('a reload of unchanged files moves the timestamp too', async () => {
    const stampBefore = (await app().metric(STAMP)) as number;
    assert.equal((await app().request('PUT', '/-/reload')).status, 200);
    assert.ok(((await app().metric(STAMP)) as number) > stampBefore);
  });

  void test('GET /-/reload: 405', async () => {
    assert.equal((await app().request('GET', '/-/reload')).status, 405);
  });

  void test('a rule that does not parse: 500 naming the failure, success 0, the timestamp kept, the old rules still run', async () => {
    const stampBefore = await app().metric(STAMP);
    await writeFile(file, recordingRules('e2e:broken', 'sum(up'));
    const res = await app().request('POST', '/-/reload');
    assert.equal(res.status, 500);
    assert.match(
      res.text,
      /failed to reload config: one or more errors occurred while applying the new configuration/,
    );
    assert.equal(await app().metric(SUCCESS), 0);
    assert.equal(await app().metric(STAMP), stampBefore);
    assert.deepEqual(await ruleNames(app()), ['e2e:second']);
    // The parse error itself is in the log, not in the answer.
    assert.match(app().logTail(10), /e2e:broken.*could not parse expression/);
  });

  void test('SIGHUP: the new rules run, success 1 again', async () => {
    await writeFile(file, recordingRules('e2e:third'));
    app().signal('SIGHUP');
    await waitFor(async () => (await ruleNames(app())).join() === 'e2e:third', 'rule e2e:third alone');
    await waitFor(async () => (await app().metric(SUCCESS)) === 1, `${SUCCESS} = 1`);
  });

  void test('without --web.enable-lifecycle: POST /-/reload answers 403 "Lifecycle API is not enabled."', async () => {
    const other = await startApp('prometheus', { file, noLifecycle: true });
    try {
      const res = await other.request('POST', '/-/reload');
      assert.equal(res.status, 403);
      assert.equal(res.text, 'Lifecycle API is not enabled.');
    } finally {
      await other.stop();
    }
  });
});
