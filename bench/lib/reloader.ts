/**
 * The reloader as its own process against the test Kubernetes API server (HTTPS, bearer token, RBAC by name;
 * in this process) or a real kube-apiserver, and a reload receiver (its own process). The receiver stamps each
 * reload request as it arrives, on the same monotonic clock as the API server's `sentAt` (or the bench's own
 * stamp of an update it sent), then reads the files the app would reload.
 */
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parse as parseYaml } from 'yaml';
import { TestApiServer } from '../../test/support/kube-apiserver/index.ts';
import { kubeconfigYaml, type KubeconfigParams } from '../../test/support/kube-apiserver/kubeconfig.ts';
import type { BenchContext } from './context.ts';
import { BENCH_DIR } from './paths.ts';
import { RELOADER_ENV } from '../../src/injection/build.ts';
import { waitFor } from '../../test/support/wait.ts';
import { spawnNode, waitForLine, type BenchChild } from './proc.ts';
import { nsToMs } from './stats.ts';

export const NS = 'bench';

export interface ReloadHit {
  /** process.hrtime.bigint() in the receiver when the request arrived (the same clock as the API's sentAt). */
  arrivedAt: bigint;
  /** The `version` key of every watched directory at that moment ('' when unreadable). */
  versions: string[];
  /** Every directory's `config.yaml` names the same version as its `version` key (no mixed content). */
  consistent: boolean;
  /** SHA-256 (base64) of every watched directory's `config.yaml` ('' when unreadable): the whole content. */
  digests: string[];
}

/** The app's reload endpoint (bench/receiver.ts, its own process): records each arrival and what the files held. */
export class ReloadReceiver {
  readonly hits: ReloadHit[] = [];
  url = '';
  private child: BenchChild | undefined;
  private waiters: Array<() => void> = [];

  async start(ctx: BenchContext, dirs: string[], label: string): Promise<void> {
    const child = spawnNode(join(BENCH_DIR, 'receiver.ts'), dirs, {
      stdoutFile: join(ctx.tmp, `receiver-${label}.log`),
      ipc: true,
    });
    this.child = child;
    this.url = await new Promise<string>((resolve, reject) => {
      child.proc.on(
        'message',
        (m: { url?: string; hit?: Omit<ReloadHit, 'arrivedAt'> & { arrivedAt: string } }) => {
          if (m.url) resolve(m.url);
          if (m.hit) {
            this.hits.push({ ...m.hit, arrivedAt: BigInt(m.hit.arrivedAt) });
            for (const w of this.waiters.splice(0)) w();
          }
        },
      );
      child.exited.then(
        ({ code }) => reject(new Error(`the reload receiver exited (${code}): ${child.stderr()}`)),
        reject,
      );
    });
  }

  /** Resolves with the first hit (from index `from` on) that matches. */
  async waitFor(match: (h: ReloadHit) => boolean, from = 0, timeoutMs = 10_000): Promise<ReloadHit> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.hits.slice(from).find(match);
      if (found) return found;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('timed out waiting for a reload request');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  async close(): Promise<void> {
    if (this.child?.proc.connected) this.child.proc.disconnect();
    await this.child?.stop();
  }
}

/** About 2 KiB of random configuration (two lines of base64), for a Secret the size of a typical config. */
export function benchPadding(): string {
  return `${randomBytes(768).toString('base64')}\n`.repeat(2);
}

/** The `config.yaml` of version `version`: the version line, then `configBytes`. */
export function benchConfig(version: number, configBytes: string): string {
  return `version: ${version}\n${configBytes}`;
}

/** SHA-256 (base64) of `content`, as the receiver reports each `config.yaml` (ReloadHit.digests). */
export function digest(content: string): string {
  return createHash('sha256').update(content).digest('base64');
}

/** A Secret whose two keys both name the version, padded to `size` bytes of config. */
export function benchSecret(name: string, version: number, configBytes: string): Record<string, unknown> {
  const config = benchConfig(version, configBytes);
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name, namespace: NS },
    data: {
      version: Buffer.from(String(version)).toString('base64'),
      'config.yaml': Buffer.from(config).toString('base64'),
    },
  };
}

export interface ApiSetup {
  api: TestApiServer;
  kubeconfig: string;
}

/**
 * Writes a token kubeconfig as JSON, which the reloader reads without loading a YAML parser: in a pod it uses
 * the in-cluster service account and never loads one, and a YAML kubeconfig would add about 4 MiB to what is
 * measured.
 */
export function writeJsonKubeconfig(path: string, params: KubeconfigParams): void {
  writeFileSync(path, JSON.stringify(parseYaml(kubeconfigYaml(params))), { mode: 0o600 });
}

/** The API server, with a service account that may get/list/watch exactly these Secrets (RBAC resourceNames). */
export async function startApi(ctx: BenchContext, secretNames: string[], label: string): Promise<ApiSetup> {
  // The real API server sends a bookmark about every minute; the test server's default (1 s) would keep an idle reloader busy.
  const api = await TestApiServer.start({ bookmarkIntervalMs: 60_000 });
  const token = api.addServiceAccount(NS, 'app', [
    { verbs: ['get', 'list', 'watch'], resource: 'secrets', namespace: NS, names: secretNames },
  ]);
  const kubeconfig = join(ctx.tmp, `kubeconfig-${label}.json`);
  writeJsonKubeconfig(kubeconfig, { server: api.url, caCert: api.caCert, token, namespace: NS });
  return { api, kubeconfig };
}

export interface ReloaderRun {
  child: BenchChild;
  /** host:port of /readyz, /healthz, /metrics. */
  address: string;
  /** From spawn to the first 200 from /readyz, in ms (polled every 2 ms). */
  startToReadyMs: number;
  /** From spawn to its `starting` log line: Node's own start plus loading the modules, before any API call. */
  startToLogMs: number;
}

function httpText(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    get(url, { agent: false }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

/** The sum of every series of a metric in the reloader's /metrics (e.g. a histogram's `_sum` or `_count`). */
export async function metricTotal(address: string, name: string): Promise<number> {
  const text = await httpText(`http://${address}/metrics`);
  let total = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `))
      total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

function status(url: string): Promise<number> {
  return new Promise((resolve) => {
    get(url, { agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    }).on('error', () => resolve(0));
  });
}

/**
 * Starts `reloader` (default log level, as deployed) with one `--source secret/NAME=DIR` per entry; resolves
 * once it is ready and every watch is open: as the test API server counts them (`setup.api`), or else as the
 * reloader's own `config_reloader_watches_open` gauge says (set when the API server answered the watch).
 */
export async function startReloader(
  ctx: BenchContext,
  setup: { kubeconfig: string; api?: Pick<TestApiServer, 'openWatches'> },
  sources: Array<{ name: string; dir: string }>,
  opts: {
    reloadUrl?: string;
    nodeArgs?: string[];
    label: string;
    extraArgs?: string[];
    env?: NodeJS.ProcessEnv;
  },
): Promise<ReloaderRun> {
  const started = performance.now();
  const startedWall = Date.now();
  const child = spawnNode(
    ctx.cli.cli,
    [
      'reloader',
      '--kubeconfig',
      setup.kubeconfig,
      '--namespace',
      NS,
      ...sources.flatMap((s) => ['--source', `secret/${s.name}=${s.dir}`]),
      ...(opts.reloadUrl ? ['--reload-url', opts.reloadUrl] : []),
      '--listen',
      '127.0.0.1:0',
      ...(opts.extraArgs ?? []),
    ],
    {
      stdoutFile: join(ctx.tmp, `reloader-${opts.label}.log`),
      ...(opts.nodeArgs ? { nodeArgs: opts.nodeArgs } : {}),
      // The settings the injected sidecar runs with (its container env), so the figures are the deployed ones.
      env: { ...RELOADER_ENV, ...opts.env },
    },
  );
  const line = await waitForLine(child, (l) => typeof l.address === 'string', 30_000);
  const address = String(line.address);
  await waitFor(
    async () => (await status(`http://${address}/readyz`)) === 200,
    'the reloader to be ready',
    30_000,
    2,
  );
  const startToReadyMs = performance.now() - started;
  const starting = await waitForLine(child, (l) => l.msg === 'starting');
  const startToLogMs = Date.parse(String(starting.time)) - startedWall;
  const { api } = setup;
  await waitFor(
    async () =>
      (api ? api.openWatches : await metricTotal(address, 'config_reloader_watches_open')) >= sources.length,
    'every watch to be open',
    30_000,
  );
  return { child, address, startToReadyMs, startToLogMs };
}

/** When one update left the bench, on the receiver's clock (process.hrtime). */
export interface UpdateStamp {
  version: number;
  /** The update left: the test API server wrote its watch event, or the request to a real one was sent. */
  sentAt: bigint;
  /** A real API server's answer (its status line) arrived. */
  answeredAt?: bigint;
}

export interface SingleUpdates {
  /** ms from each update's `sentAt` to its reload request arriving. */
  fromSent: number[];
  /** ms from each update's `answeredAt` to its reload (negative: the reload came first); [] without answers. */
  fromAnswer: number[];
  /** ms from `sentAt` to `answeredAt`; [] without answers. */
  answer: number[];
  /** Reloads that found an older version. */
  stale: number;
  /** Reloads that found the two keys at different versions. */
  mixed: number;
  /** Reloads whose `config.yaml` was not, byte for byte, the one of that update. */
  notWhole: number;
  /** Reloads that failed any of the three checks. */
  wrong: number;
}

/**
 * `count` updates one at a time, the single-update figure of both propagation sections: `update()` makes the
 * next version (1, 2, …) of a Secret watched into one directory and resolves with its stamps; the next update
 * follows once its reload arrived (and its answer, if any) and 10 ms. Every reload must find that version,
 * both keys, and `config.yaml` whole (`config(version)`).
 */
export async function singleUpdates(
  receiver: ReloadReceiver,
  count: number,
  update: () => UpdateStamp | Promise<UpdateStamp>,
  config: (version: number) => string,
): Promise<SingleUpdates> {
  const out: SingleUpdates = {
    fromSent: [],
    fromAnswer: [],
    answer: [],
    stale: 0,
    mixed: 0,
    notWhole: 0,
    wrong: 0,
  };
  for (let i = 0; i < count; i++) {
    const from = receiver.hits.length;
    // Together: the reload may arrive before the API server's answer.
    const [stamp, hit] = await Promise.all([update(), receiver.waitFor(() => true, from)]);
    out.fromSent.push(nsToMs(hit.arrivedAt - stamp.sentAt));
    if (stamp.answeredAt !== undefined) {
      out.fromAnswer.push(nsToMs(hit.arrivedAt - stamp.answeredAt));
      out.answer.push(nsToMs(stamp.answeredAt - stamp.sentAt));
    }
    const stale = hit.versions[0] !== String(stamp.version);
    const notWhole = hit.digests[0] !== digest(config(stamp.version));
    if (stale) out.stale++;
    if (!hit.consistent) out.mixed++;
    if (notWhole) out.notWhole++;
    if (stale || !hit.consistent || notWhole) out.wrong++;
    await sleep(10);
  }
  return out;
}
