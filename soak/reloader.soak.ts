import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startCli, type CliChild } from '../test/support/cli.ts';
import { TestApiServer, type KubeObject } from '../test/support/kube-apiserver/index.ts';
import { readTree, waitFor } from '../test/reloader/harness.ts';
import { rssOf } from './webhook-load.ts';

/**
 * Reloader soak: an hour of watch churn compressed into a few minutes against the test API server. One reloader
 * process syncs three sources (a Secret, a ConfigMap, an optional Secret that is deleted and re-created) while the
 * objects change every few tens of milliseconds, watches are dropped, the history is compacted after a write and
 * the watches dropped again (410 Gone, relist), and the application's reload endpoint flaps between 200 and 5xx.
 *
 * Every CHECKPOINT_MS the churn pauses with the endpoint healthy: the files must equal the objects and a successful
 * reload must have arrived after the last change, showing exactly those files (so every change the app could have
 * seen was followed by a reload). The reloader's RSS at the checkpoints must stay flat.
 *
 *   SOAK_RELOADER_SECONDS=180 (default) node --test soak/reloader.soak.ts
 */

const DURATION_MS = Number(process.env.SOAK_RELOADER_SECONDS ?? 180) * 1000;
const CHECKPOINT_MS = Math.min(30_000, DURATION_MS / 4);
const STEP_MS = 25;
const NS = 'soak';
const MiB = 1024 * 1024;

/** A deterministic pseudo-random sequence (mulberry32), so a failing run can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SEED = Number(process.env.SOAK_SEED ?? 6);
/**
 * The reloader's V8 heap is capped well below the sidecar's memory budget: on a large host V8 grows its heap lazily,
 * so RSS alone cannot tell garbage from a leak; with a cap, a leak ends in an out-of-memory crash.
 */
const HEAP_MB = Number(process.env.SOAK_RELOADER_HEAP_MB ?? 48);
const b64 = (s: string): string => Buffer.from(s).toString('base64');
/** Secret values carry this marker; none may appear in the reloader's output. */
const MARK = 'soak-secret-do-not-log';

interface Hit {
  /** The status this request was answered with. */
  status: number;
  /** What the watched directories held when it arrived. */
  files: Record<string, Record<string, string>>;
}

/** The application's reload endpoint, whose answer the soak flips; records each request with the files it would reload. */
class FlappingEndpoint {
  readonly hits: Hit[] = [];
  status = 200;
  watched: string[] = [];
  url = '';
  private server: Server | undefined;

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      this.hits.push({
        status: this.status,
        files: Object.fromEntries(this.watched.map((d) => [d, readTree(d)])),
      });
      req.resume();
      res.statusCode = this.status;
      res.end();
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/-/reload`;
  }

  async close(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}

interface Model {
  /** The content each directory must end with: key → text. */
  a: Record<string, string>;
  b: Record<string, string>;
  c: Record<string, string>;
  cExists: boolean;
}

void describe('reloader soak: compressed watch churn', () => {
  let api: TestApiServer;
  let receiver: FlappingEndpoint;
  let root: string;
  let cli: CliChild;
  const dirs = { a: '', b: '', c: '' };

  before(async () => {
    api = await TestApiServer.start({ bookmarkIntervalMs: 500, historySize: 512 });
    root = await mkdtemp(join(tmpdir(), 'reloader-soak-'));
    const kubeconfig = join(root, 'kubeconfig');
    const token = api.addServiceAccount(NS, 'app', [
      { verbs: ['get', 'list', 'watch'], resource: 'secrets', namespace: NS, names: ['soak-a', 'soak-c'] },
      { verbs: ['get', 'list', 'watch'], resource: 'configmaps', namespace: NS, names: ['soak-b'] },
    ]);
    await api.writeKubeconfig(kubeconfig, { token, namespace: NS });
    receiver = new FlappingEndpoint();
    await receiver.start();
    dirs.a = join(root, 'a');
    dirs.b = join(root, 'b');
    dirs.c = join(root, 'c');
    receiver.watched.push(dirs.a, dirs.b, dirs.c);
    api.create(secretObj('soak-a', { v: `${MARK}-a-0` }));
    api.create({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'soak-b', namespace: NS },
      data: { v: 'b-0' },
    });
    api.create(secretObj('soak-c', { v: `${MARK}-c-0` }));
    cli = startCli(
      [
        'reloader',
        '--kubeconfig',
        kubeconfig,
        '--namespace',
        NS,
        '--source',
        `secret/soak-a=${dirs.a}`,
        '--source',
        `configmap/soak-b=${dirs.b}`,
        '--source',
        `secret/soak-c=${dirs.c}?optional=true`,
        '--reload-url',
        receiver.url,
        '--reload-timeout',
        '1s',
        '--resync',
        '10s',
        '--listen',
        '127.0.0.1:0',
        '--log-level',
        'info',
      ],
      { env: { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --max-old-space-size=${HEAP_MB}`.trim() } },
    );
    await cli.waitForLog((l) => typeof l.address === 'string');
  });

  after(async () => {
    if (cli.child.exitCode === null) cli.child.kill('SIGTERM');
    await cli.exited;
    await api.close();
    await receiver.close();
    await rm(root, { recursive: true, force: true });
  });

  function secretObj(name: string, data: Record<string, string>): KubeObject {
    return {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name, namespace: NS },
      data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, b64(v)])),
    };
  }

  void it(`${DURATION_MS / 1000} s of churn: files match the objects, every change reloaded, memory flat`, async (t) => {
    const random = prng(SEED);
    const model: Model = { a: { v: `${MARK}-a-0` }, b: { v: 'b-0' }, c: { v: `${MARK}-c-0` }, cExists: true };
    let version = 0;
    const counts = { a: 0, b: 0, cDeleted: 0, cCreated: 0, drops: 0, expired: 0, flaps: 0 };
    const rss: number[] = [];
    const pid = cli.child.pid!;

    const updateA = (): void => {
      version++;
      // Sometimes a key appears or goes, sometimes a large value: the layout changes, not only the content.
      model.a = { v: `${MARK}-a-${version}` };
      if (random() < 0.3) model.a[`k${version % 5}`] = `${MARK}-extra-${version}`;
      if (random() < 0.05) model.a.big = `${MARK}-${'x'.repeat(256 * 1024)}-${version}`;
      api.update(secretObj('soak-a', model.a));
      counts.a++;
    };

    const checkpoint = async (label: string): Promise<void> => {
      receiver.status = 200;
      if (!model.cExists) {
        version++;
        model.c = { v: `${MARK}-c-${version}` };
        api.create(secretObj('soak-c', model.c));
        model.cExists = true;
        counts.cCreated++;
      }
      const lastChange = receiver.hits.length;
      const expected = { [dirs.a]: model.a, [dirs.b]: model.b, [dirs.c]: model.c };
      const equal = (files: Record<string, Record<string, string>>): boolean =>
        Object.entries(expected).every(
          ([d, want]) => JSON.stringify(sortKeys(files[d] ?? {})) === JSON.stringify(sortKeys(want)),
        );
      await waitFor(
        () => equal({ [dirs.a]: readTree(dirs.a), [dirs.b]: readTree(dirs.b), [dirs.c]: readTree(dirs.c) }),
        `${label}: files equal to the objects`,
        60_000,
      );
      // The app was told: a successful reload arrived after the last change and saw exactly these files.
      await waitFor(
        () => receiver.hits.slice(lastChange).some((h) => h.status === 200 && equal(h.files)),
        `${label}: a successful reload showing the final files`,
        60_000,
      );
      const sample = rssOf(pid);
      if (sample !== undefined) rss.push(sample);
    };

    const started = Date.now();
    let nextCheckpoint = started + CHECKPOINT_MS;
    while (Date.now() - started < DURATION_MS) {
      const r = random();
      if (r < 0.4) updateA();
      else if (r < 0.65) {
        version++;
        model.b = { v: `b-${version}`, ...(random() < 0.5 ? { flag: String(version % 2 === 0) } : {}) };
        api.update({
          apiVersion: 'v1',
          kind: 'ConfigMap',
          metadata: { name: 'soak-b', namespace: NS },
          data: model.b,
        });
        counts.b++;
      } else if (r < 0.75) {
        if (model.cExists) {
          api.delete('secrets', NS, 'soak-c');
          model.cExists = false; // the reloader keeps the files of a deleted object
          counts.cDeleted++;
        } else {
          version++;
          model.c = { v: `${MARK}-c-${version}` };
          api.create(secretObj('soak-c', model.c));
          model.cExists = true;
          counts.cCreated++;
        }
      } else if (r < 0.83) {
        api.dropWatches();
        counts.drops++;
      } else if (r < 0.88) {
        // A write the watches miss, then compaction: resuming from the old resourceVersion gets 410 Gone.
        updateA();
        api.compact();
        api.dropWatches();
        counts.expired++;
      } else if (r < 0.95) {
        receiver.status = receiver.status === 200 ? (random() < 0.5 ? 500 : 503) : 200;
        counts.flaps++;
      }
      await sleep(STEP_MS);
      if (Date.now() >= nextCheckpoint) {
        await checkpoint(`checkpoint at ${Math.round((Date.now() - started) / 1000)} s`);
        nextCheckpoint = Date.now() + CHECKPOINT_MS;
      }
    }
    await checkpoint('the end');

    const reloads = receiver.hits.length;
    const successes = receiver.hits.filter((h) => h.status === 200).length;
    t.diagnostic(`churn: ${JSON.stringify(counts)}; reload requests ${reloads} (${successes} answered 200)`);
    t.diagnostic(`reloader rss at checkpoints (MiB): ${rss.map((v) => (v / MiB).toFixed(1)).join(', ')}`);
    assert.ok(
      counts.drops > 0 && counts.expired > 0 && counts.cDeleted > 0 && counts.flaps > 0,
      'every kind of churn happened',
    );
    // Memory flat: the first checkpoint is the warm-up (V8 grows its heap to a working size); from the second one
    // to the end, a generous bound that a leak of a few hundred bytes per change would still exceed over an hour.
    assert.ok(rss.length >= 3, 'RSS readable from /proc at three checkpoints or more');
    const growth = rss.at(-1)! - rss[1]!;
    assert.ok(growth < 32 * MiB, `reloader RSS grew ${(growth / MiB).toFixed(1)} MiB after the warm-up`);
    // Still healthy, and no Secret value in anything it printed.
    const output = cli.stdout() + cli.stderr();
    assert.ok(!output.includes(MARK), 'a Secret value appeared in the reloader output');
    assert.ok(
      !output.includes(b64(MARK).slice(0, 16)),
      'a base64 Secret value appeared in the reloader output',
    );
    assert.equal(cli.child.exitCode, null, 'the reloader is still running');
  });
});

function sortKeys(o: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(o).sort(([x], [y]) => x.localeCompare(y)));
}
