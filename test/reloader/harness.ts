/**
 * Runs the reloader as a real child process against the test API server and a real HTTP reload endpoint.
 * Every Secret value a test makes comes from `secretValue()`; closing the harness asserts that none of them,
 * nor its base64 form, appears anywhere in any reloader's stdout or stderr.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, get, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startCli, type CliChild } from '../support/cli.ts';
import { TestApiServer, type Grant, type KubeObject } from '../support/kube-apiserver/index.ts';
import { waitFor } from '../support/wait.ts';

export { waitFor };

export const NS = 'shop';

/** The preload that drops a reloader's privileges (Harness.reloader's `runAsUid`). */
const RUN_AS_UID = fileURLToPath(new URL('./run-as-uid.ts', import.meta.url));

const values = new Set<string>();

/** A distinctive value to put in a Secret; it must never show up in a log. */
export function secretValue(label: string): string {
  const v = `${label}-${randomBytes(6).toString('hex')}-do-not-log`;
  values.add(v);
  return v;
}

export function secretValuesMade(): number {
  return values.size;
}

export const b64 = (v: string | Buffer): string => Buffer.from(v).toString('base64');

export function secret(
  name: string,
  data: Record<string, string>,
  extra: Partial<KubeObject> = {},
): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name, namespace: NS },
    data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, b64(v)])),
    ...extra,
  };
}

export function configMap(
  name: string,
  data: Record<string, string>,
  binaryData: Record<string, Buffer> = {},
): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name, namespace: NS },
    data,
    binaryData: Object.fromEntries(Object.entries(binaryData).map(([k, v]) => [k, b64(v)])),
  };
}

/** `name -> content` of the regular files a directory shows through its symlinks (what an app reads). */
export function readTree(dir: string, prefix = ''): Record<string, string> {
  const out: Record<string, string> = {};
  let names: string[];
  try {
    names = readdirSync(join(dir, prefix));
  } catch {
    return out;
  }
  for (const name of names) {
    if (!prefix && name.startsWith('..')) continue;
    const rel = prefix ? `${prefix}/${name}` : name;
    try {
      out[rel] = readFileSync(join(dir, rel), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EISDIR') Object.assign(out, readTree(dir, rel));
    }
  }
  return out;
}

export interface ReloadHit {
  method: string;
  url: string;
  /** Date.now() when it arrived. */
  at: number;
  /** What the watched directories held when the request arrived. */
  files: Record<string, Record<string, string>>;
}

/** The application's reload endpoint: records each request with a snapshot of the files it would reload. */
export class ReloadReceiver {
  readonly hits: ReloadHit[] = [];
  status = 200;
  /** Requests are recorded but never answered (an app that hangs). */
  hang = false;
  watched: string[] = [];
  private server: Server | undefined;
  url = '';

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      this.hits.push({
        method: req.method ?? '',
        url: req.url ?? '',
        at: Date.now(),
        files: Object.fromEntries(this.watched.map((d) => [d, readTree(d)])),
      });
      if (this.hang) return;
      res.statusCode = this.status;
      res.end();
    });
    await new Promise<void>((r) => this.server?.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/-/reload`;
  }

  async close(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}

export interface HttpAnswer {
  status: number;
  body: string;
}

export function httpGet(url: string): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    get(url, { agent: false }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
}

export interface ReloaderProcess {
  cli: CliChild;
  /** `host:port` of /readyz, /healthz and /metrics (not with --once). */
  address: string;
  get(path: string): Promise<HttpAnswer>;
  /** The value of one metric series in /metrics, e.g. `config_reloader_writes_total{source="secret/shop/a"}`. */
  metric(series: string): Promise<number | undefined>;
  /** SIGTERM, then the exit code. */
  stop(): Promise<number | null>;
}

export const RW: Grant['verbs'] = ['get', 'list', 'watch'];

/** The downward-API env the webhook gives the sidecar, for --events (POD_UID is the pod's uid). */
export const POD_ENV = {
  POD_NAME: 'web-0',
  POD_UID: '6f1c3a2e-0000-4000-8000-000000000001',
  POD_NAMESPACE: NS,
};

/** The JSON log lines of a reloader whose message matches `msg`, parsed, in order. */
export function logLines(r: ReloaderProcess, msg: RegExp): Array<Record<string, unknown>> {
  return r.cli
    .stdout()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => msg.test(String(l.msg)));
}

/** Resolves once the reloader's /readyz answers 200. */
export const waitReady = (r: ReloaderProcess): Promise<unknown> =>
  waitFor(async () => (await r.get('/readyz')).status === 200, '/readyz 200');

export class Harness {
  api!: TestApiServer;
  receiver = new ReloadReceiver();
  root = '';
  kubeconfig = '';
  private readonly children: CliChild[] = [];
  private n = 0;

  static async start(
    grants: Grant[] = [
      { verbs: RW, resource: 'secrets', namespace: NS },
      { verbs: RW, resource: 'configmaps', namespace: NS },
    ],
  ): Promise<Harness> {
    const h = new Harness();
    h.api = await TestApiServer.start();
    h.root = await mkdtemp(join(tmpdir(), 'reloader-it-'));
    h.kubeconfig = join(h.root, 'kubeconfig');
    await h.api.writeKubeconfig(h.kubeconfig, {
      token: h.api.addServiceAccount(NS, 'default', grants),
      namespace: NS,
    });
    await h.receiver.start();
    return h;
  }

  /** Lets a reloader run as another uid read the kubeconfig and reach directories under the root. */
  shareWithOtherUsers(): void {
    chmodSync(this.root, 0o755);
    chmodSync(this.kubeconfig, 0o644);
  }

  /** A fresh directory path under the harness root (not created: the reloader creates it). */
  dir(label: string): string {
    return join(this.root, `${label}-${++this.n}`);
  }

  /** Every output the reloaders produced so far, for assertions on log lines. */
  output(): string {
    return this.children.map((c) => c.stdout() + c.stderr()).join('\n');
  }

  /** Starts `reloader` with the harness's kubeconfig and receiver, trace logging and a free status port. */
  async reloader(
    args: string[],
    opts: {
      watch?: string[];
      waitListening?: boolean;
      /**
       * Run as this uid (and gid) when the tests run as root, so that file permissions apply to the reloader: the
       * harness root and kubeconfig must then be readable by it (`shareWithOtherUsers`).
       */
      runAsUid?: number;
      /** Extra environment (POD_NAME, POD_UID, POD_NAMESPACE for --events). */
      env?: NodeJS.ProcessEnv;
      /** false: no --reload-url to the harness's receiver (signal delivery, or another app). */
      reloadUrl?: boolean;
    } = {},
  ): Promise<ReloaderProcess> {
    this.receiver.watched.push(...(opts.watch ?? []));
    const env: NodeJS.ProcessEnv = {
      ...opts.env,
      ...(opts.runAsUid !== undefined && process.getuid?.() === 0
        ? {
            TEST_RUN_AS_UID: String(opts.runAsUid),
            NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=${RUN_AS_UID}`.trim(),
          }
        : {}),
    };
    const cli = startCli(
      [
        'reloader',
        '--kubeconfig',
        this.kubeconfig,
        ...(opts.reloadUrl === false ? [] : ['--reload-url', this.receiver.url]),
        '--listen',
        '127.0.0.1:0',
        '--log-level',
        'trace',
        ...args,
      ],
      { env },
    );
    this.children.push(cli);
    let address = '';
    if (opts.waitListening !== false) {
      address = String((await cli.waitForLog((l) => typeof l.address === 'string')).address);
    }
    const getPath = (path: string): Promise<HttpAnswer> => httpGet(`http://${address}${path}`);
    return {
      cli,
      address,
      get: getPath,
      metric: async (series) => {
        const line = (await getPath('/metrics')).body.split('\n').find((l) => l.startsWith(`${series} `));
        return line === undefined ? undefined : Number(line.slice(series.length + 1));
      },
      stop: async () => {
        if (cli.child.exitCode === null) cli.child.kill('SIGTERM');
        return (await cli.exited).code;
      },
    };
  }

  assertNoSecretInLogs(): void {
    const out = this.output();
    for (const v of values) {
      assert.ok(!out.includes(v), 'a Secret value appeared in the reloader output');
      assert.ok(!out.includes(b64(v)), 'a base64-encoded Secret value appeared in the reloader output');
    }
  }

  async close(): Promise<void> {
    for (const c of this.children)
      if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL');
    await Promise.all(this.children.map((c) => c.exited));
    await this.api.close();
    await this.receiver.close();
    await rm(this.root, { recursive: true, force: true });
    this.assertNoSecretInLogs();
  }
}
