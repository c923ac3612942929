/**
 * The reloader as its own process against the test Kubernetes API server (HTTPS, bearer token, RBAC by name;
 * in this process) and a reload receiver (its own process). The receiver stamps each reload request as it
 * arrives, on the same monotonic clock as the API server's `sentAt`, then reads the files the app would reload.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { TestApiServer } from '../../test/support/kube-apiserver/index.ts';
import type { BenchContext } from './context.ts';
import { BENCH_DIR } from './paths.ts';
import { RELOADER_ENV } from '../../src/injection/sidecar.ts';
import { waitFor } from '../../test/support/wait.ts';
import { spawnNode, waitForLine, type BenchChild } from './proc.ts';

export const NS = 'bench';

export interface ReloadHit {
  /** process.hrtime.bigint() in the receiver when the request arrived (the same clock as the API's sentAt). */
  arrivedAt: bigint;
  /** The `version` key of every watched directory at that moment ('' when unreadable). */
  versions: string[];
  /** Every directory's `config.yaml` names the same version as its `version` key (no mixed content). */
  consistent: boolean;
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
        (m: { url?: string; hit?: { arrivedAt: string; versions: string[]; consistent: boolean } }) => {
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

/** A Secret whose two keys both name the version, padded to `size` bytes of config. */
export function benchSecret(name: string, version: number, configBytes: string): Record<string, unknown> {
  const config = `version: ${version}\n${configBytes}`;
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

/** The API server, with a service account that may get/list/watch exactly these Secrets (RBAC resourceNames). */
export async function startApi(ctx: BenchContext, secretNames: string[], label: string): Promise<ApiSetup> {
  // The real API server sends a bookmark about every minute; the test server's default (1 s) would keep an idle reloader busy.
  const api = await TestApiServer.start({ bookmarkIntervalMs: 60_000 });
  const token = api.addServiceAccount(NS, 'app', [
    { verbs: ['get', 'list', 'watch'], resource: 'secrets', namespace: NS, names: secretNames },
  ]);
  const kubeconfig = join(ctx.tmp, `kubeconfig-${label}.json`);
  await api.writeKubeconfig(kubeconfig, { token, namespace: NS });
  // JSON, which the reloader reads without loading a YAML parser: in a pod it uses the in-cluster service
  // account and never loads one, and a YAML kubeconfig would add about 4 MiB to what is measured here.
  writeFileSync(kubeconfig, JSON.stringify(parseYaml(readFileSync(kubeconfig, 'utf8'))), { mode: 0o600 });
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

/** Starts `reloader` (default log level, as deployed) with one `--source secret/NAME=DIR` per entry. */
export async function startReloader(
  ctx: BenchContext,
  setup: ApiSetup,
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
  await waitFor(() => setup.api.openWatches >= sources.length, 'every watch to be open', 30_000);
  return { child, address, startToReadyMs, startToLogMs };
}
