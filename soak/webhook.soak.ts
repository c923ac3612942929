import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { rssOf, runLoad, startWebhookProcess, type LoadReport } from './webhook-load.ts';

/**
 * Webhook soak, against the real process (`node src/cli.ts webhook`): SOAK_WEBHOOK_SECONDS (default 30) of
 * admission load with 1% malformed requests, the process's RSS sampled from /proc along the way, then a SIGTERM
 * during the load. Nothing may be lost, RSS must stay flat after the warm-up, and the process must exit 0.
 */

const DURATION_MS = Number(process.env.SOAK_WEBHOOK_SECONDS ?? 30) * 1000;
// At least ten RSS samples, however short the run is set.
const SAMPLE_MS = Math.min(5000, DURATION_MS / 10);
const MiB = 1024 * 1024;

void describe('webhook soak: the process under load with faults, then SIGTERM', () => {
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'webhook-soak-'));
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  void it(`${DURATION_MS / 1000} s of load: nothing lost, RSS flat, clean exit on SIGTERM`, async (t) => {
    const caFile = join(dir, 'ca.crt');
    const webhook = await startWebhookProcess(caFile, ['--shutdown-delay', '1s', '--log-level', 'info']);
    let exited = false;
    void webhook.exited.then(() => (exited = true));
    const ca = await readFile(caFile, 'utf8');
    const pid = webhook.child.pid!;
    const rss: number[] = [];
    const sampler = setInterval(() => {
      const v = rssOf(pid);
      if (v !== undefined && !exited) rss.push(v);
    }, SAMPLE_MS);
    try {
      const common = { url: webhook.url, ca, durationMs: DURATION_MS, malformedEvery: 100 };
      const steady = await Promise.all([
        runLoad({ ...common, concurrency: 12, keepAlive: true }),
        runLoad({ ...common, concurrency: 4, keepAlive: false }),
      ]);
      clearInterval(sampler);
      // Then the SIGTERM, with the load still on.
      const until = (): boolean => exited;
      const ending = Promise.all([
        runLoad({ ...common, durationMs: 60_000, concurrency: 8, keepAlive: true, until }),
        runLoad({ ...common, durationMs: 60_000, concurrency: 4, keepAlive: false, until }),
      ]);
      setTimeout(() => webhook.child.kill('SIGTERM'), 1000);
      const stopping = await ending;
      const exit = await webhook.exited;
      const show = (r: LoadReport): string =>
        JSON.stringify({ ...r.fates, ms: r.elapsedMs, lost: r.lost.slice(0, 3) });
      t.diagnostic(`steady: ${steady.map(show).join(' | ')}`);
      t.diagnostic(`during SIGTERM: ${stopping.map(show).join(' | ')}`);
      t.diagnostic(
        `webhook rss every ${SAMPLE_MS / 1000} s (MiB): ${rss.map((v) => (v / MiB).toFixed(1)).join(', ')}`,
      );
      for (const r of steady) {
        assert.deepEqual(r.lost, []);
        assert.equal(r.fates.ok, r.valid, 'every valid review answered while running');
        assert.equal(r.fates.rejected, r.malformed, 'every malformed request rejected with a 4xx');
      }
      for (const r of stopping) assert.deepEqual(r.lost, [], 'no review lost during the shutdown');
      assert.deepEqual(exit, { code: 0, signal: null });
      assert.ok(rss.length >= 3, 'RSS readable from /proc');
      // The first sample is the warm-up; after it, a generous bound (RSS also holds TLS state and malloc arenas).
      const growth = rss.at(-1)! - rss[1]!;
      assert.ok(growth < 64 * MiB, `webhook RSS grew ${(growth / MiB).toFixed(1)} MiB under steady load`);
    } finally {
      clearInterval(sampler);
      if (!exited) webhook.child.kill('SIGKILL');
      await webhook.exited;
    }
  });
});
