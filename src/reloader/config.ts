import type { LevelWithSilent } from 'pino';
import { findKubeconfig, parseDuration, parseFlags, parsePort, UsageError } from '../shared/cli.ts';
import { isLogLevel } from '../shared/log.ts';
import { DEFAULT_BACKOFF, type BackoffPolicy } from './backoff.ts';
import { parseSourceSpec, SourceSpecError, type SourceSpec } from '../shared/source-spec.ts';

/** Where the API server and its credentials come from. */
export type ClusterConfig =
  | { mode: 'kubeconfig'; path: string }
  | { mode: 'in-cluster'; host: string; port: string; serviceAccountDir: string };

export interface ReloadConfig {
  url: URL;
  method: string;
  timeoutMs: number;
}

/** Everything the reloader needs, parsed once at start from flags and the environment and passed down. */
export interface ReloaderConfig {
  sources: SourceSpec[];
  /** From --namespace or POD_NAMESPACE; otherwise the kubeconfig context's or the in-cluster namespace file. */
  namespace?: string;
  cluster: ClusterConfig;
  /** Absent: files are written and no application is called. */
  reload?: ReloadConfig;
  once: boolean;
  onceTimeoutMs: number;
  listen: { host: string; port: number };
  logLevel: LevelWithSilent;
  healthTimeoutMs: number;
  /** How often the files on disk are checked against the newest object watched; 0 disables. */
  resyncMs: number;
  /**
   * The pod's fsGroup (--fs-group): every file and directory written gets this group, files mode | 0440 and
   * directories setgid + group r-x, as the kubelet does for Secret/ConfigMap volumes. Absent: exact modes.
   */
  fsGroup?: number;
  /** Hidden --backoff BASE[:MAX]: every retry's backoff (list/watch, writes, reloads); tests lengthen or shorten it. */
  backoff?: BackoffPolicy;
}

export const DEFAULT_SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export const RELOADER_HELP = `Usage: config-reloader-injector reloader --source KIND/NAME=DIR [--source ...] [flags]

Watches Secrets and ConfigMaps through the Kubernetes API, writes their keys atomically into
directories (the kubelet's ..data symlink layout) and calls the application's reload URL.

Flags:
  --source KIND/NAME=DIR[?PARAMS]  object to sync, repeatable; KIND secret or configmap; PARAMS joined by &:
                                   optional=true, defaultMode=0644, gunzip=true, item=KEY:PATH[:MODE] (repeatable)
  --namespace NAME                 namespace of every source (default $POD_NAMESPACE, else the kubeconfig
                                   context's namespace, else the in-cluster namespace file)
  --kubeconfig FILE                kubeconfig to use (default $KUBECONFIG's first file, else the in-cluster
                                   service account, else ~/.kube/config; the webhook looks in the same order)
  --reload-url URL                 http(s) URL called after each change (default: none, files only)
  --reload-method METHOD           HTTP method of the reload request (default POST)
  --reload-timeout DURATION        timeout of one reload request (default 5s)
  --once                           sync every source once, then exit (0, or 1 naming the source that failed)
  --once-timeout DURATION          how long --once keeps trying (default 30s)
  --listen [HOST]:PORT             address of /readyz, /healthz and /metrics (default :9533; port 0 picks one)
  --health-timeout DURATION        /healthz fails when no watch is open and the API server has not answered
                                   for this long (default 60s)
  --resync DURATION                compare the files on disk with the newest object watched this often and
                                   rewrite them if something else changed them (no API request); 0 disables
                                   (default 5m)
  --log-level LEVEL                fatal, error, warn, info, debug, trace or silent (default info)
  --fs-group GID                   the pod's fsGroup: files and directories get this group, files mode | 0440,
                                   directories setgid and group r-x, as the kubelet does (default: none, exact
                                   modes, the process's own group)
  -h, --help                       this help

Durations: 500ms, 5s, 2m, 1h, or a number of seconds.
`;

const FLAGS = {
  source: { type: 'string', multiple: true },
  namespace: { type: 'string' },
  kubeconfig: { type: 'string' },
  'reload-url': { type: 'string' },
  'reload-method': { type: 'string', default: 'POST' },
  'reload-timeout': { type: 'string', default: '5s' },
  once: { type: 'boolean', default: false },
  'once-timeout': { type: 'string', default: '30s' },
  listen: { type: 'string', default: ':9533' },
  'health-timeout': { type: 'string', default: '60s' },
  resync: { type: 'string', default: '5m' },
  'log-level': { type: 'string', default: 'info' },
  'fs-group': { type: 'string' },
  // Hidden: where the in-cluster CA, token and namespace files live (tests point it at a temp dir).
  'serviceaccount-dir': { type: 'string', default: DEFAULT_SERVICE_ACCOUNT_DIR },
  // Hidden: BASE[:MAX] of every retry's backoff (default 250ms:10s); tests make it long or short.
  backoff: { type: 'string' },
} as const;

const NAMESPACE_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const METHOD_RE = /^[A-Z]+$/;

export function isValidNamespace(name: string): boolean {
  return name.length <= 63 && NAMESPACE_RE.test(name);
}

/** `HOST:PORT`, `:PORT` or `PORT`; unlike the shared parser, port 0 (any free port) is allowed for tests. */
function parseListenAddress(value: string): { host: string; port: number } {
  const i = value.lastIndexOf(':');
  const host = i < 0 ? '' : value.slice(0, i).replace(/^\[(.*)\]$/, '$1');
  const portText = i < 0 ? value : value.slice(i + 1);
  const port = portText === '0' ? 0 : parsePort('listen', portText);
  return { host: host || '0.0.0.0', port };
}

function positiveDuration(flag: string, value: string, allowZero = false): number {
  const ms = parseDuration(flag, value);
  if (ms === 0 && !allowZero) throw new UsageError(`--${flag} must be longer than 0`);
  return ms;
}

function parseBackoff(value: string | undefined): BackoffPolicy | undefined {
  if (value === undefined) return undefined;
  const [base, max, ...rest] = value.split(':');
  if (base === undefined || rest.length > 0) throw new UsageError(`--backoff "${value}" is not BASE[:MAX]`);
  const baseMs = positiveDuration('backoff', base);
  const maxMs =
    max === undefined ? Math.max(baseMs, DEFAULT_BACKOFF.maxMs) : positiveDuration('backoff', max);
  if (maxMs < baseMs) throw new UsageError(`--backoff "${value}": MAX is shorter than BASE`);
  return { baseMs, maxMs };
}

/** Largest group ID Kubernetes accepts for fsGroup (and the largest the webhook passes). */
export const MAX_FS_GROUP = 2147483647;

function parseFsGroup(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const gid = /^\d{1,10}$/.test(value) ? Number(value) : NaN;
  if (!(gid <= MAX_FS_GROUP))
    throw new UsageError(
      `--fs-group "${value}" is not a group ID: give the pod's securityContext.fsGroup, an integer from 0 to ${MAX_FS_GROUP}`,
    );
  return gid;
}

function parseSources(args: string[]): SourceSpec[] {
  if (args.length === 0)
    throw new UsageError(
      'at least one --source KIND/NAME=DIR is required (see: config-reloader-injector reloader --help)',
    );
  const sources = args.map((arg) => {
    try {
      return parseSourceSpec(arg);
    } catch (err) {
      if (err instanceof SourceSpecError) throw new UsageError(err.message);
      throw err;
    }
  });
  const dirs = new Map<string, string>();
  for (const s of sources) {
    const dir = s.dir.replace(/\/+$/, '') || '/';
    const other = dirs.get(dir);
    if (other)
      throw new UsageError(
        `--source ${s.kind}/${s.name} and ${other} both write into ${s.dir}: give each source its own directory`,
      );
    dirs.set(dir, `${s.kind}/${s.name}`);
  }
  return sources;
}

function parseReload(values: Record<string, unknown>): ReloadConfig | undefined {
  // Method and timeout are checked even without a URL: a typo must not wait for the day a URL is added.
  const method = (values['reload-method'] as string).toUpperCase();
  if (!METHOD_RE.test(method))
    throw new UsageError(`--reload-method "${values['reload-method'] as string}" is not an HTTP method`);
  const timeoutMs = positiveDuration('reload-timeout', values['reload-timeout'] as string);
  const raw = values['reload-url'] as string | undefined;
  if (raw === undefined) return undefined;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UsageError(`--reload-url "${raw}" is not a URL such as http://127.0.0.1:8080/-/reload`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new UsageError(`--reload-url "${raw}" must be http:// or https://`);
  return { url, method, timeoutMs };
}

function parseCluster(values: Record<string, unknown>, env: NodeJS.ProcessEnv): ClusterConfig {
  const source = findKubeconfig(values.kubeconfig as string | undefined, env);
  if (source.kind === 'file') return { mode: 'kubeconfig', path: source.path };
  return {
    mode: 'in-cluster',
    host: source.host,
    port: source.port,
    serviceAccountDir: values['serviceaccount-dir'] as string,
  };
}

/** Flags and environment to a validated config; every problem is a UsageError naming the flag. `undefined` means --help. */
export function parseReloaderConfig(argv: string[], env: NodeJS.ProcessEnv): ReloaderConfig | undefined {
  const { values, positionals } = parseFlags('reloader', argv, FLAGS);
  if (values.help) return undefined;
  if (positionals.length > 0)
    throw new UsageError(
      `unexpected argument "${positionals[0]}" (see: config-reloader-injector reloader --help)`,
    );
  const logLevel = values['log-level'];
  if (!isLogLevel(logLevel))
    throw new UsageError(
      `--log-level "${logLevel}" is not one of fatal, error, warn, info, debug, trace, silent`,
    );
  const namespace = values.namespace ?? (env.POD_NAMESPACE || undefined);
  if (namespace !== undefined && !isValidNamespace(namespace))
    throw new UsageError(`namespace "${namespace}" is not a valid namespace name`);
  return {
    sources: parseSources(values.source ?? []),
    namespace,
    cluster: parseCluster(values, env),
    reload: parseReload(values),
    once: values.once,
    onceTimeoutMs: positiveDuration('once-timeout', values['once-timeout']),
    listen: parseListenAddress(values.listen),
    logLevel,
    healthTimeoutMs: positiveDuration('health-timeout', values['health-timeout']),
    resyncMs: positiveDuration('resync', values.resync, true),
    fsGroup: parseFsGroup(values['fs-group']),
    backoff: parseBackoff(values.backoff),
  };
}
