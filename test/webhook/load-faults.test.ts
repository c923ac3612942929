import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { RunningServer } from '../../src/webhook/server.ts';
import { startTestWebhook } from '../support/webhook-server.ts';
import { httpsRequest } from '../support/https.ts';
import { runLoad, startWebhookProcess, type LoadReport } from '../../soak/webhook-load.ts';

/**
 * Sustained admission load with 1% malformed requests, and a SIGTERM to the webhook process in the middle of the
 * load. `npm test` runs 10 s of load; `npm run soak` runs the same checks for 30 s (soak/webhook-soak.ts).
 */

const LOAD_MS = Number(process.env.LOAD_SECONDS ?? 10) * 1000;
const MiB = 1024 * 1024;

// A full collection before each memory reading, so that only what is still referenced counts.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** V8 heap and Buffer memory still referenced after full collections. */
function memoryAfterGc(): { heap: number; external: number } {
  gc();
  gc();
  const m = process.memoryUsage();
  return { heap: m.heapUsed, external: m.external + m.arrayBuffers };
}

function summary(report: LoadReport): string {
  return JSON.stringify({
    ...report.fates,
    valid: report.valid,
    malformed: report.malformed,
    ms: report.elapsedMs,
    lost: report.lost.slice(0, 5),
  });
}

void describe('webhook under load with faults', () => {
  let server: RunningServer;
  let ca: string;

  before(async () => {
    ({ server, ca } = await startTestWebhook());
  });

  after(async () => {
    await server.close();
  });

  void it(`${LOAD_MS / 1000} s of load, 1% malformed: every valid review answered, every malformed one a 4xx, memory flat`, async (t) => {
    // Warm up (JIT, TLS session state, pools) before the first memory reading.
    await runLoad({
      url: server.url,
      ca,
      durationMs: 1000,
      concurrency: 8,
      malformedEvery: 100,
      keepAlive: true,
    });
    const before = memoryAfterGc();
    const [keepAlive, fresh] = await Promise.all([
      runLoad({
        url: server.url,
        ca,
        durationMs: LOAD_MS,
        concurrency: 12,
        malformedEvery: 100,
        keepAlive: true,
      }),
      // New connections too: TLS handshakes are where per-connection state would leak.
      runLoad({
        url: server.url,
        ca,
        durationMs: LOAD_MS,
        concurrency: 4,
        malformedEvery: 100,
        keepAlive: false,
      }),
    ]);
    const after = memoryAfterGc();
    const mib = (v: number): string => (v / MiB).toFixed(1);
    t.diagnostic(`keep-alive: ${summary(keepAlive)}`);
    t.diagnostic(`new connections: ${summary(fresh)}`);
    // RSS is only reported: it also holds the client's TLS state and malloc arenas glibc keeps; the heap and Buffer
    // memory left after a full collection is what a leak in the server would grow.
    t.diagnostic(
      `heapUsed ${mib(before.heap)} → ${mib(after.heap)} MiB, external+arrayBuffers ${mib(before.external)} → ${mib(after.external)} MiB, rss ${mib(process.memoryUsage().rss)} MiB`,
    );
    for (const report of [keepAlive, fresh]) {
      assert.deepEqual(report.lost, [], 'no request lost or answered wrongly');
      assert.equal(
        report.fates.refused + report.fates['stale-connection'],
        0,
        'no connection refused while the server runs',
      );
      assert.equal(report.fates.ok, report.valid);
      assert.equal(report.fates.rejected, report.malformed);
      assert.ok(report.malformed > 0 && report.valid > 0);
    }
    const requests = keepAlive.valid + keepAlive.malformed + fresh.valid + fresh.malformed;
    // Generous: a leak of a few hundred bytes per request would pass this only for a few thousand requests.
    assert.ok(
      after.heap - before.heap < 24 * MiB,
      `heapUsed grew by ${mib(after.heap - before.heap)} MiB over ${requests} requests`,
    );
    assert.ok(
      after.external - before.external < 24 * MiB,
      `Buffer memory grew by ${mib(after.external - before.external)} MiB over ${requests} requests`,
    );
    // And it still answers, with the counts to show for it.
    const metrics = await httpsRequest(`${server.url}/metrics`, { ca });
    assert.equal(metrics.status, 200);
    assert.match(
      metrics.body,
      /config_reloader_webhook_requests_total\{path="\/mutate",result="bad_request"\} [1-9]/,
    );
  });
});

void describe('SIGTERM to the webhook process during load', () => {
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'webhook-sigterm-'));
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  for (const shutdownDelay of ['0s', '1s']) {
    void it(`with --shutdown-delay ${shutdownDelay}: no in-flight review is lost, the process exits 0`, async (t) => {
      const caFile = join(dir, `ca-${shutdownDelay}.crt`);
      const webhook = await startWebhookProcess(caFile, ['--shutdown-delay', shutdownDelay]);
      let exited = false;
      void webhook.exited.then(() => (exited = true));
      const ca = await readFile(caFile, 'utf8');
      try {
        let answered = 0;
        let signalled = false;
        // SIGTERM once enough reviews were answered (a condition, not a time), then keep the load on until the process is gone.
        const onFate = (): void => {
          if (++answered === 600 && !signalled) {
            signalled = true;
            webhook.child.kill('SIGTERM');
          }
        };
        const common = {
          url: webhook.url,
          ca,
          durationMs: 60_000,
          malformedEvery: 100,
          until: () => exited,
          onFate,
        };
        const [keepAlive, fresh] = await Promise.all([
          runLoad({ ...common, concurrency: 8, keepAlive: true }),
          runLoad({ ...common, concurrency: 4, keepAlive: false }),
        ]);
        const exit = await webhook.exited;
        t.diagnostic(`keep-alive: ${summary(keepAlive)}`);
        t.diagnostic(`new connections: ${summary(fresh)}`);
        assert.ok(signalled, 'the SIGTERM was sent during the load');
        assert.deepEqual(exit, { code: 0, signal: null });
        for (const report of [keepAlive, fresh]) {
          // Every request either got its full answer, or never reached the server (refused, or written to a
          // keep-alive connection the server had already closed): none cut mid-response, none answered 503.
          assert.deepEqual(report.lost, [], 'a review was lost');
          assert.ok(report.fates.ok > 0);
        }
        assert.ok(webhook.lines.some((l) => l.msg === 'shutting down: finishing in-flight reviews'));
        assert.ok(webhook.lines.some((l) => l.msg === 'stopped'));
        // After the exit, connections are refused.
        const late = await runLoad({
          url: webhook.url,
          ca,
          durationMs: 200,
          concurrency: 2,
          malformedEvery: 100,
          keepAlive: false,
        });
        assert.equal(late.fates.ok, 0);
        assert.equal(late.fates.refused, late.valid + late.malformed);
      } finally {
        if (!exited) webhook.child.kill('SIGKILL');
        await webhook.exited;
      }
    });
  }
});
