/**
 * The real applications the reloader reloads (vmagent, vmalert, Prometheus), built from the Go modules pinned in
 * test/apps (build.sh, cached outside the clone), started as processes on free 127.0.0.1 ports with their files
 * in a temp dir. Each keeps its log in that dir for failure messages, and is stopped by its PID: by stop(), and
 * on the test process's exit or termination however it ends.
 *
 * `file` is the one file the reloader keeps current for the app: vmagent's -promscrape.config, vmalert's
 * -rule, Prometheus' rule file (its prometheus.yml, written here, names it in rule_files).
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, request } from 'node:http';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from './cli.ts';
import { freePort } from './control-plane/index.ts';
import { builtOnce, spawnLogged, terminate } from './spawned.ts';

export type AppKind = 'vmagent' | 'vmalert' | 'prometheus';

export interface AppOptions {
  /**
   * The file the app reloads; it must exist before the app starts (each app refuses to start without it).
   * vmagent runs without one (no -promscrape.config), e.g. when only its environment matters.
   */
  file?: string;
  /** The environment on top of PATH (the container's, as the pod gives it). */
  env?: Record<string, string>;
  /**
   * A mount point the app's mount namespace has, as the webhook's marker volume is in a signal target's container
   * (src/shared/process-marker.ts): the app then runs in a mount namespace of its own (`unshare -m`, root only)
   * with a tmpfs at this path, over a tmpfs on /run so that nothing is created on this machine's /run.
   */
  mountPoint?: string;
  /** vmalert: the Prometheus-compatible datasource its rules query (required by vmalert). */
  datasourceUrl?: string;
  /** Prometheus: leave out --web.enable-lifecycle (its /-/reload then answers 403). */
  noLifecycle?: boolean;
  /** The 127.0.0.1 port to listen on (one chosen before, e.g. for a reloader started first); default a free one. */
  port?: number;
  /** More flags, after the harness's own (e.g. vmagent's -envflag.enable: its flags from the environment). */
  args?: string[];
}

export interface HttpAnswer {
  status: number;
  text: string;
}

export interface RealApp {
  readonly kind: AppKind;
  readonly pid: number;
  /** http://127.0.0.1:PORT */
  readonly url: string;
  /** The app's own temp dir (its data, its log, Prometheus' prometheus.yml). */
  readonly dir: string;
  readonly file: string | undefined;
  /** Resolves when the process has exited (e.g. after a signal someone else sent), with how it ended. */
  exited(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  request(method: string, path: string): Promise<HttpAnswer>;
  /**
   * The value of a sample on the app's /metrics (`name` or `name{labels}` as the app writes it), undefined when
   * it has none. VictoriaMetrics apps serve a copy of the page up to 1 s old (lib/appmetrics): this may be that.
   */
  metric(name: string): Promise<number | undefined>;
  /** The same, from a page the app made after this call (for VictoriaMetrics apps, up to a second later). */
  metricNow(name: string): Promise<number | undefined>;
  /** The whole /metrics page as served. */
  metricsPage(): Promise<string>;
  /** The last lines of the app's log (stdout and stderr). */
  logTail(lines?: number): string;
  /** Sends a signal to the app's PID. */
  signal(signal: NodeJS.Signals): void;
  /** SIGTERM, then SIGKILL after 5 s; resolves when the process is gone and its dir removed. */
  stop(): Promise<void>;
}

/** The folder with the three binaries, building them on first use (`npm run apps:build`; npm test runs it first). */
export function appBinaries(): string {
  return builtOnce(join(REPO_ROOT, 'test/apps/build.sh'), 'vmagent, vmalert and Prometheus');
}

function tail(file: string, lines: number): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** One HTTP request to 127.0.0.1, no keep-alive; a refused connection answers status 0 with the error. */
export function httpRequest(method: string, url: string): Promise<HttpAnswer> {
  return new Promise((resolve) => {
    const req = request(url, { method, agent: false, timeout: 10_000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${url}: no answer in 10 s`)));
    req.on('error', (err) => resolve({ status: 0, text: err.message }));
    req.end();
  });
}

/**
 * The value of a sample in Prometheus text, `name` with its labels exactly as written (or none). Go writes floats as `%g` does: Prometheus' timestamp
 * gauge reads `1.7961873724072528e+09`, VictoriaMetrics' counters plain integers.
 */
export function sampleValue(text: string, name: string): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (!/^\s/.test(rest)) continue;
    const value = Number(rest.trim().split(/\s+/)[0]);
    if (!Number.isNaN(value)) return value;
  }
  return undefined;
}

/**
 * vmagent needs somewhere to send what it scrapes (-remoteWrite.url is required); this accepts and drops it,
 * as a remote storage that is up would.
 */
async function startRemoteWriteSink(): Promise<{ url: string; close: () => Promise<void> }> {
  const server: Server = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(204).end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}/api/v1/write`,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * `bin args` run in a new mount namespace with a tmpfs mounted at `mountPoint` (and one on /run under it, when
 * the point is under /run). unshare and sh exec, so the PID spawned is the app's.
 */
function inMountNamespace(mountPoint: string, bin: string, args: string[]): [string, string[]] {
  if (process.getuid?.() !== 0)
    throw new Error(
      `a mount point for the app (${mountPoint}, a signal target's marker) needs a mount namespace of its own, which only root can make here (unshare -m): run the end-to-end tests as root, as CI does`,
    );
  if (!/^\/[A-Za-z0-9._/-]+$/.test(mountPoint))
    throw new Error(`mount point ${mountPoint}: an absolute path of letters, digits, ., _, - and / only`);
  const run = mountPoint.startsWith('/run/') ? 'mount -t tmpfs -o size=64k,mode=755 tmpfs /run && ' : '';
  const script = `${run}mkdir -p ${mountPoint} && mount -t tmpfs -o size=4k,mode=755 tmpfs ${mountPoint} && exec "$0" "$@"`;
  return ['unshare', ['-m', '--propagation', 'private', 'sh', '-c', script, bin, ...args]];
}

/** VictoriaMetrics' count of /metrics requests: each newly made page shows another value. */
export const VM_METRICS_PAGES = 'vm_http_requests_total{path="/metrics"}';

/** The path each app answers 200 on once it serves. */
const READY_PATH: Record<AppKind, string> = {
  vmagent: '/health',
  vmalert: '/health',
  prometheus: '/-/ready',
};

export async function startApp(kind: AppKind, opts: AppOptions): Promise<RealApp> {
  const bin = join(appBinaries(), kind);
  const dir = await mkdtemp(join(tmpdir(), `app-${kind}-`));
  const port = opts.port ?? (await freePort());
  const url = `http://127.0.0.1:${port}`;
  const logFile = join(dir, `${kind}.log`);
  const sink = kind === 'vmagent' ? await startRemoteWriteSink() : undefined;

  let args: string[];
  if (kind === 'vmagent') {
    args = [
      ...(opts.file ? [`-promscrape.config=${opts.file}`] : []),
      `-httpListenAddr=127.0.0.1:${port}`,
      `-remoteWrite.url=${sink?.url}`,
      `-remoteWrite.tmpDataPath=${join(dir, 'remote-write')}`,
    ];
  } else if (!opts.file) {
    throw new Error(`${kind} needs file (its ${kind === 'vmalert' ? '-rule' : 'rule'} file)`);
  } else if (kind === 'vmalert') {
    if (!opts.datasourceUrl) throw new Error('vmalert needs datasourceUrl (it refuses to start without one)');
    args = [
      `-rule=${opts.file}`,
      `-httpListenAddr=127.0.0.1:${port}`,
      `-datasource.url=${opts.datasourceUrl}`,
      '-notifier.blackhole',
    ];
  } else {
    const config = join(dir, 'prometheus.yml');
    // A 1 s evaluation interval: rules run soon after a reload, so a test sees them evaluated.
    await writeFile(config, `global:\n  evaluation_interval: 1s\nrule_files:\n  - ${opts.file}\n`);
    args = [
      `--config.file=${config}`,
      `--web.listen-address=127.0.0.1:${port}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      ...(opts.noLifecycle ? [] : ['--web.enable-lifecycle']),
    ];
  }

  args.push(...(opts.args ?? []));
  const [file, argv] = opts.mountPoint ? inMountNamespace(opts.mountPoint, bin, args) : [bin, args];
  const spawned = spawnLogged(file, argv, {
    logFile,
    cwd: dir,
    env: { PATH: process.env.PATH ?? '/usr/bin', ...opts.env },
  });
  const { child, exited } = spawned;
  const running = (): boolean => child.exitCode === null && child.signalCode === null;

  const stop = async (): Promise<void> => {
    await terminate(spawned, 5_000);
    await sink?.close();
    await rm(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + 30_000;
  for (;;) {
    if (!running()) {
      const message = `${kind} exited (${child.exitCode ?? child.signalCode}) before it served; its log ends:\n${tail(logFile, 20)}`;
      await stop();
      throw new Error(message);
    }
    if ((await httpRequest('GET', `${url}${READY_PATH[kind]}`)).status === 200) break;
    if (Date.now() > deadline) {
      const message = `${kind} did not answer ${READY_PATH[kind]} within 30 s; its log ends:\n${tail(logFile, 20)}`;
      await stop();
      throw new Error(message);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }

  const metricsPage = async (): Promise<string> => {
    const res = await httpRequest('GET', `${url}/metrics`);
    if (res.status !== 200) throw new Error(`GET ${url}/metrics: ${res.status} ${res.text.slice(0, 200)}`);
    return res.text;
  };

  return {
    kind,
    pid: child.pid as number,
    url,
    dir,
    file: opts.file,
    exited: () => exited,
    request: (method, path) => httpRequest(method, `${url}${path}`),
    metricsPage,
    metric: async (name) => sampleValue(await metricsPage(), name),
    metricNow: async (name) => {
      if (kind === 'prometheus') return sampleValue(await metricsPage(), name);
      // Each page counts the /metrics requests made until it was made: a count we have not seen is a new page.
      const count = (text: string): number | undefined => sampleValue(text, VM_METRICS_PAGES);
      const first = count(await metricsPage());
      const until = Date.now() + 10_000;
      for (;;) {
        const text = await metricsPage();
        if (count(text) !== first) return sampleValue(text, name);
        if (Date.now() > until) throw new Error(`${kind} served the same /metrics page for 10 s`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
    logTail: (lines = 30) => tail(logFile, lines),
    signal: (signal) => {
      if (!running()) throw new Error(`${kind} is not running; its log ends:\n${tail(logFile, 20)}`);
      process.kill(child.pid as number, signal);
    },
    stop,
  };
}

/** The rule names the app runs (vmalert's and Prometheus' /api/v1/rules have the same shape). */
export async function ruleNames(app: RealApp): Promise<string[]> {
  const res = await app.request('GET', '/api/v1/rules');
  if (res.status !== 200)
    throw new Error(`GET ${app.url}/api/v1/rules: ${res.status} ${res.text.slice(0, 200)}`);
  const body = JSON.parse(res.text) as { data: { groups: Array<{ rules: Array<{ name: string }> }> } };
  return body.data.groups.flatMap((g) => g.rules.map((r) => r.name)).sort();
}

/** The scrape jobs (pools) the app runs, from /api/v1/targets (vmagent's and Prometheus' have the same shape). */
export async function scrapeJobs(app: RealApp): Promise<string[]> {
  const res = await app.request('GET', '/api/v1/targets');
  if (res.status !== 200)
    throw new Error(`GET ${app.url}/api/v1/targets: ${res.status} ${res.text.slice(0, 200)}`);
  const body = JSON.parse(res.text) as { data: { activeTargets: Array<{ scrapePool: string }> } };
  return [...new Set(body.data.activeTargets.map((t) => t.scrapePool))].sort();
}
