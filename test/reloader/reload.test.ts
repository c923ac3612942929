import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, afterEach, before, describe, it } from 'node:test';
import { AppMetricsReader } from '../../src/reloader/confirm.ts';
import { createConfirmMetrics, createReloaderMetrics } from '../../src/reloader/metrics.ts';
import { httpDelivery, signalDelivery } from '../../src/reloader/delivery.ts';
import { ReloadTrigger } from '../../src/reloader/reload.ts';
import { createLogger } from '../../src/shared/log.ts';
import { capturingLogger } from '../support/captured-log.ts';
import { waitFor } from '../support/wait.ts';
import { StandInApp } from './stand-in-app.ts';

/** A real HTTP reload endpoint whose answers each test scripts. */
class Receiver {
  readonly server: Server;
  hits: Array<{ method: string; url: string }> = [];
  handler: (req: IncomingMessage, res: ServerResponse, n: number) => void = (_req, res) => res.end();
  private waiters: Array<() => void> = [];
  constructor() {
    this.server = createServer((req, res) => {
      this.hits.push({ method: req.method ?? '', url: req.url ?? '' });
      this.handler(req, res, this.hits.length);
      for (const w of this.waiters) w();
    });
  }
  async listen(): Promise<string> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/-/reload`;
  }
  waitForHits(n: number, timeoutMs = 10_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`only ${this.hits.length} of ${n} requests arrived`)),
        timeoutMs,
      );
      const check = (): void => {
        if (this.hits.length >= n) {
          clearTimeout(timer);
          resolve();
        }
      };
      this.waiters.push(check);
      check();
    });
  }
}

function setup(url: string, opts: { timeoutMs?: number; baseMs?: number; maxMs?: number } = {}) {
  const { log, lines } = capturingLogger('test', 'info');
  const metrics = createReloaderMetrics();
  let hash = 'a'.repeat(64);
  const trigger = new ReloadTrigger({
    delivery: httpDelivery({ url: new URL(url), method: 'POST', timeoutMs: opts.timeoutMs ?? 5000 }),
    log,
    metrics,
    contentHash: () => hash,
    backoff: { baseMs: opts.baseMs ?? 10, maxMs: opts.maxMs ?? 40 },
  });
  return { trigger, metrics, lines, setHash: (h: string) => (hash = h) };
}

void describe('ReloadTrigger against a real HTTP endpoint', () => {
  const receiver = new Receiver();
  let url: string;
  const triggers: ReloadTrigger[] = [];
  const make = (opts?: Parameters<typeof setup>[1]) => {
    const s = setup(url, opts);
    triggers.push(s.trigger);
    return s;
  };

  before(async () => {
    url = await receiver.listen();
  });
  afterEach(() => {
    receiver.hits = [];
    receiver.handler = (_req, res) => res.end();
    for (const t of triggers.splice(0)) t.close();
  });
  after(() => {
    receiver.server.closeAllConnections();
    receiver.server.close();
  });

  void it('sends the configured request and records the content it applied', async () => {
    const { trigger, metrics, setHash } = make();
    setHash('0123456789abcdef'.repeat(4));
    trigger.request();
    await trigger.idle();
    assert.deepEqual(receiver.hits, [{ method: 'POST', url: '/-/reload' }]);
    assert.equal(metrics.reloads.get({ result: 'success' }), 1);
    assert.equal(metrics.lastReloadHash.get(), 0x0123456789ab);
    assert.match(
      metrics.registry.render(),
      /config_reloader_last_reload_content_info\{sha256="0123456789abcdef"\} 1/,
    );
    assert.ok(metrics.lastReloadSuccess.get() > 0);
  });

  void it('keeps one request in flight: many changes during it cause exactly one more, after it', async () => {
    const { trigger } = make();
    let release = (): void => {};
    receiver.handler = (_req, res, n) => {
      if (n === 1) release = () => res.end();
      else res.end();
    };
    trigger.request();
    await receiver.waitForHits(1);
    for (let i = 0; i < 20; i++) trigger.request();
    assert.equal(receiver.hits.length, 1, 'a second request went out while the first was in flight');
    release();
    await receiver.waitForHits(2);
    await trigger.idle();
    assert.equal(receiver.hits.length, 2);
  });

  void it('retries a failing endpoint with backoff until it answers 2xx: counts each attempt, warns once per reason, says when it recovered', async () => {
    const { trigger, metrics, lines } = make();
    // 429: come back later, for as long as it lasts (a 5xx three times in a row would be a rejection, below).
    receiver.handler = (_req, res, n) => {
      res.statusCode = n <= 3 ? 429 : 204;
      res.end();
    };
    trigger.request();
    await receiver.waitForHits(4);
    await trigger.idle();
    assert.equal(receiver.hits.length, 4);
    assert.equal(metrics.reloads.get({ result: 'failure' }), 3);
    assert.equal(metrics.reloads.get({ result: 'success' }), 1);
    const attempts = lines.filter((l) => typeof l.attempt === 'number');
    // Attempts 2 and 3 failed the same way: debug level only (not shown at info).
    assert.deepEqual(
      attempts.map((l) => [l.attempt, l.level]),
      [
        [1, 'warn'],
        [4, 'info'],
      ],
    );
    assert.equal(attempts[0]?.error, 'HTTP 429');
    assert.match(
      String(attempts[0]?.msg),
      new RegExp(
        `^reload request to POST ${url} failed \\(HTTP 429\\); retrying with backoff \\(check that the app is running`,
      ),
    );
    assert.equal(attempts[1]?.afterFailedAttempts, 3);
  });

  void it('times out a request that gets no answer and retries it', async () => {
    const { trigger, metrics, lines } = make({ timeoutMs: 200 });
    receiver.handler = (_req, res, n) => {
      if (n > 1) res.end(); // the first one hangs until the client gives up
    };
    trigger.request();
    await receiver.waitForHits(2);
    await trigger.idle();
    assert.equal(metrics.reloads.get({ result: 'failure' }), 1);
    assert.equal(metrics.reloads.get({ result: 'success' }), 1);
    assert.equal(lines.find((l) => l.attempt === 1)?.error, 'ETIMEDOUT');
  });

  void it('a newer change cuts a long backoff short', async () => {
    const { trigger, metrics } = make({ baseMs: 600_000, maxMs: 600_000 });
    receiver.handler = (_req, res, n) => {
      res.statusCode = n === 1 ? 500 : 200;
      res.end();
    };
    trigger.request();
    await receiver.waitForHits(1);
    // The first attempt failed and is waiting minutes to retry; new content must not wait for that.
    while (metrics.reloads.get({ result: 'failure' }) === 0) await new Promise((r) => setImmediate(r));
    trigger.request();
    await receiver.waitForHits(2);
    await trigger.idle();
    assert.equal(metrics.reloads.get({ result: 'success' }), 1);
  });

  void it('counts a refused connection as a failed attempt', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const s = setup(`http://127.0.0.1:${port}/reload`, { baseMs: 600_000, maxMs: 600_000 });
    s.trigger.request();
    while (s.metrics.reloads.get({ result: 'failure' }) === 0) await new Promise((r) => setTimeout(r, 5));
    s.trigger.close();
    await s.trigger.idle();
    assert.equal(s.lines.find((l) => l.attempt === 1)?.error, 'ECONNREFUSED');
  });

  // A bounded wait: before close() ended them, these waited out a 10-minute backoff or timeout.
  const bounded = { timeout: 10_000 };

  void it('close() ends a backoff wait at once: idle() resolves and no retry goes out', bounded, async () => {
    const { trigger, metrics } = make({ baseMs: 600_000, maxMs: 600_000 });
    receiver.handler = (_req, res) => {
      res.statusCode = 503;
      res.end();
    };
    trigger.request();
    await receiver.waitForHits(1);
    while (metrics.reloads.get({ result: 'failure' }) === 0) await new Promise((r) => setImmediate(r));
    trigger.close();
    await trigger.idle(); // would wait the 10-minute backoff if close() did not end it
    trigger.request(); // ignored once closed
    await trigger.idle();
    assert.equal(receiver.hits.length, 1);
  });

  void it(
    'close() aborts a request in flight on a kept-alive connection and does not send it again',
    bounded,
    async () => {
      const { trigger, metrics, lines } = make({ baseMs: 600_000, maxMs: 600_000, timeoutMs: 600_000 });
      receiver.handler = (_req, res, n) => {
        if (n === 1) {
          res.statusCode = 503;
          res.end();
        } // then: never answered
      };
      trigger.request();
      await receiver.waitForHits(1);
      while (metrics.reloads.get({ result: 'failure' }) === 0) await new Promise((r) => setImmediate(r));
      trigger.request(); // newer content: cuts the backoff short, sent on the kept-alive connection, hangs
      await receiver.waitForHits(2);
      trigger.close();
      await trigger.idle(); // would wait for the 10-minute timeout if close() did not abort the request
      await new Promise((r) => setTimeout(r, 50)); // time for a resend to arrive, if one were made
      assert.equal(receiver.hits.length, 2, 'the aborted request is not sent again');
      assert.equal(metrics.reloads.get({ result: 'failure' }), 1, 'an abandoned request is no failure');
      assert.ok(!lines.some((l) => l.attempt === 2 && l.level === 'warn'));
    },
  );

  for (const status of [404, 405, 401, 403, 400]) {
    void it(
      `HTTP ${status} is a rejection: one error line naming the URL and the status, counted, not retried until the next change`,
      bounded,
      async () => {
        const { trigger, metrics, lines } = make({ baseMs: 1, maxMs: 1 });
        receiver.handler = (_req, res) => {
          res.statusCode = status;
          res.end();
        };
        trigger.request();
        await trigger.idle(); // before the fix: never idle, it retried every millisecond
        assert.equal(receiver.hits.length, 1);
        assert.equal(metrics.reloads.get({ result: 'rejected' }), 1);
        assert.equal(metrics.reloads.get({ result: 'failure' }), 0);
        const logged = lines.filter((l) => l.attempt === 1);
        assert.equal(logged.length, 1);
        assert.equal(logged[0]?.level, 'error');
        assert.equal(logged[0]?.status, status);
        assert.equal(logged[0]?.url, url);
        assert.match(String(logged[0]?.msg), new RegExp(`POST ${url} answered HTTP ${status}; not retried`));
        trigger.request(); // the next change tries again, once
        await trigger.idle();
        assert.equal(receiver.hits.length, 2);
        assert.equal(metrics.reloads.get({ result: 'rejected' }), 2);
      },
    );
  }

  void it(
    'HTTP 500 three times in a row for the same content is a rejection: one error line, counted, not retried until the content changes',
    bounded,
    async () => {
      const { trigger, metrics, lines, setHash } = make({ baseMs: 1, maxMs: 1 });
      receiver.handler = (_req, res) => {
        res.statusCode = 500; // Prometheus' answer to a bad config
        res.end();
      };
      trigger.request();
      await trigger.idle(); // before the fix: never idle, it retried every millisecond for ever
      assert.equal(receiver.hits.length, 3);
      assert.equal(metrics.reloads.get({ result: 'failure' }), 2);
      assert.equal(metrics.reloads.get({ result: 'rejected' }), 1);
      const errors = lines.filter((l) => l.level === 'error');
      assert.equal(errors.length, 1);
      assert.equal(errors[0]?.status, 500);
      assert.equal(errors[0]?.attempt, 3);
      assert.match(
        String(errors[0]?.msg),
        new RegExp(
          `^the app answered HTTP 500 to 3 reload requests in a row for config a{16} \\(POST ${url}\\): taken as a rejection of this config; as far as the reloader knows, the app keeps running its previous config\\. Fix the Secret/ConfigMap .*not retried until the content changes$`,
        ),
      );
      // The next change is tried again, three times.
      setHash('d'.repeat(64));
      trigger.request();
      await trigger.idle();
      assert.equal(receiver.hits.length, 6);
      assert.equal(metrics.reloads.get({ result: 'rejected' }), 2);
    },
  );

  void it('502, 503 and 504 are never taken as a rejection: the app is not there or not ready yet', async () => {
    const { trigger, metrics } = make({ baseMs: 1, maxMs: 1 });
    // An app starting up: unavailable five times, then it reloads.
    const statuses = [503, 503, 502, 504, 503, 200];
    receiver.handler = (_req, res, n) => {
      res.statusCode = statuses[n - 1] ?? 200;
      res.end();
    };
    trigger.request();
    await receiver.waitForHits(statuses.length);
    await trigger.idle();
    assert.equal(metrics.reloads.get({ result: 'rejected' }), 0);
    assert.equal(metrics.reloads.get({ result: 'success' }), 1);
  });

  void it('a 5xx count starts again with other content, and after another failure', async () => {
    const { trigger, metrics, setHash } = make({ baseMs: 1, maxMs: 1 });
    // 500, 500, (new content) 500, 500, a refused connection stood in by 429, 500, 500, then 200.
    const statuses = [500, 500, 500, 500, 429, 500, 500, 200];
    receiver.handler = (_req, res, n) => {
      if (n === 2) setHash('e'.repeat(64)); // the content changes between the 2nd and 3rd attempt
      res.statusCode = statuses[n - 1] ?? 200;
      res.end();
    };
    trigger.request();
    await receiver.waitForHits(statuses.length);
    await trigger.idle();
    assert.equal(metrics.reloads.get({ result: 'rejected' }), 0, 'never three in a row for one content');
    assert.equal(metrics.reloads.get({ result: 'success' }), 1);
  });

  for (const status of [408, 429, 500, 503]) {
    void it(`HTTP ${status} keeps the backoff: retried until it succeeds`, async () => {
      const { trigger, metrics } = make();
      receiver.handler = (_req, res, n) => {
        res.statusCode = n <= 2 ? status : 200;
        res.end();
      };
      trigger.request();
      await receiver.waitForHits(3);
      await trigger.idle();
      assert.equal(metrics.reloads.get({ result: 'failure' }), 2);
      assert.equal(metrics.reloads.get({ result: 'rejected' }), 0);
      assert.equal(metrics.reloads.get({ result: 'success' }), 1);
    });
  }
});

void describe('ReloadTrigger with confirmation: close() ends the wait for a verdict at once', () => {
  const bounded = { timeout: 10_000 };
  const app = new StandInApp();
  before(async () => {
    await app.start();
  });
  after(async () => {
    await app.close();
  });

  const make = (timeoutMs: number) => {
    const metrics = createReloaderMetrics();
    const confirmConfig = {
      metricsUrl: new URL(app.metricsUrl),
      successMetric: app.successName,
      timestampMetric: app.timestampName,
      timeoutMs,
    };
    return new ReloadTrigger({
      delivery: httpDelivery({ url: new URL(app.reloadUrl), method: 'POST', timeoutMs: 5000 }),
      log: createLogger({ name: 'test', level: 'silent' }),
      metrics,
      contentHash: () => 'b'.repeat(64),
      confirm: {
        reader: new AppMetricsReader(confirmConfig),
        metrics: createConfirmMetrics(metrics.registry),
      },
    });
  };

  void it('while polling for a verdict that would take 10 minutes', bounded, async () => {
    app.mode = 'ignore'; // success stays 1, the timestamp never moves: polled until the timeout
    const trigger = make(600_000);
    trigger.request();
    await waitFor(() => app.reloads.length === 1, 'the delivery');
    trigger.close();
    await trigger.idle(); // would poll for 10 minutes if close() did not end it
  });

  void it('during the same-second wait', bounded, async () => {
    app.timestamp = Math.floor(Date.now() / 1000) + 1; // whole seconds: a wait of about 3 s before delivering
    const before = app.reloads.length;
    const reads = app.metricsReads;
    const trigger = make(600_000);
    trigger.request();
    await waitFor(() => app.metricsReads > reads, 'the baseline read'); // then the wait begins
    trigger.close();
    await trigger.idle();
    assert.equal(app.reloads.length, before, 'nothing delivered after close()');
  });
});

void describe('ReloadTrigger delivering a signal (a stand-in for the process lookup)', () => {
  void it('a lookup that fails is retried with backoff: one warning with its sentence, then a line when it recovers', async () => {
    const { log, lines } = capturingLogger('test', 'info');
    const metrics = createReloaderMetrics();
    const sent: string[] = [];
    let calls = 0;
    const trigger = new ReloadTrigger({
      delivery: signalDelivery({ signal: 'SIGHUP', container: 'app' }, (container, signal) => {
        calls++;
        // The process count changes from one lookup to the next: still the same failure.
        if (calls <= 3)
          return Promise.reject(
            new Error(`no process of container "${container}" among ${40 + calls} processes: ...`),
          );
        sent.push(`${signal} ${container}`);
        return Promise.resolve({ pid: 42, command: '/bin/app' });
      }),
      log,
      metrics,
      contentHash: () => 'c'.repeat(64),
      backoff: { baseMs: 5, maxMs: 10 },
    });
    trigger.request();
    await waitFor(() => sent.length === 1, 'the signal sent');
    await trigger.idle();
    trigger.close();
    assert.deepEqual(sent, ['SIGHUP app']);
    assert.equal(metrics.reloads.get({ result: 'failure' }), 3);
    assert.equal(metrics.delivery.get({ delivery: 'signal' }), 1);
    const logged = lines.filter((l) => typeof l.attempt === 'number');
    assert.deepEqual(
      logged.map((l) => [l.attempt, l.level, l.msg]),
      [
        [
          1,
          'warn',
          'reload signal not delivered: no process of container "app" among 41 processes: ...; retrying with backoff (repeats of this failure are logged at debug level)',
        ],
        [4, 'info', 'reload signal sent'],
      ],
    );
    assert.equal(logged[1]?.afterFailedAttempts, 3);
    assert.equal(logged[1]?.pid, 42);
    assert.equal(logged[1]?.delivery, 'signal');
  });

  void it('close() during the process lookup: the sender gets the abort, so no signal goes out after it', async () => {
    const metrics = createReloaderMetrics();
    const sent: string[] = [];
    let looking = (): void => {};
    const lookupStarted = new Promise<void>((r) => (looking = r));
    const trigger = new ReloadTrigger({
      // As signalContainer does: a lookup that takes a moment, then the abort checked right before kill().
      delivery: signalDelivery({ signal: 'SIGHUP', container: 'app' }, async (container, signal, opts) => {
        looking();
        await new Promise((r) => setTimeout(r, 20));
        opts?.signal?.throwIfAborted();
        sent.push(`${signal} ${container}`);
        return { pid: 42, command: '/bin/app' };
      }),
      log: createLogger({ name: 'test', level: 'silent' }),
      metrics,
      contentHash: () => 'c'.repeat(64),
    });
    trigger.request();
    await lookupStarted;
    trigger.close();
    await trigger.idle();
    assert.deepEqual(sent, [], 'a signal went out after close()');
    assert.equal(metrics.reloads.get({ result: 'success' }), 0);
  });
});
