import type { LevelWithSilent } from 'pino';
import { findKubeconfig, parseDuration, parseFlags, parsePort, UsageError } from '../shared/cli.ts';
import { isLogLevel } from '../shared/log.ts';
import { RELOAD_SIGNALS, type ReloadSignal } from '../shared/reload-signal.ts';
import { DEFAULT_BACKOFF, type BackoffPolicy } from './backoff.ts';
import {
  isValidObjectName,
  parseSourceSpec,
  SourceSpecError,
  type SourceKind,
  type SourceSpec,
} from '../shared/source-spec.ts';

/** Where the API server and its credentials come from. */
export type ClusterConfig =
  | { mode: 'kubeconfig'; path: string }
  | { mode: 'in-cluster'; host: string; port: string; serviceAccountDir: string };

export interface ReloadConfig {
  url: URL;
  method: string;
  timeoutMs: number;
}

/** --reload-signal: the signal goes to --signal-container's main process (src/reloader/processes.ts finds it). */
export interface SignalConfig {
  signal: ReloadSignal;
  container: string;
}

/** --confirm-*: after a delivery, the app's own metrics say whether it applied the config. */
export interface ConfirmConfig {
  metricsUrl: URL;
  successMetric: string;
  timestampMetric?: string;
  timeoutMs: number;
  /**
   * --confirm-unchanged-keeps-timestamp: the app leaves its timestamp alone when a reload finds nothing to change
   * (VictoriaMetrics), so success 1 with no newer timestamp at the timeout is `unchanged`, not `unconfirmed`.
   */
  unchangedKeepsTimestamp?: boolean;
}

/** --events: Events go on the reloader's own pod (the downward API's env). */
export interface EventsConfig {
  podName: string;
  podUid: string;
  podNamespace: string;
}

/** One --restart-on-change: CONTAINER's main process gets SIGTERM when one of these objects' data changes. */
export interface RestartConfig {
  container: string;
  objects: Array<{ kind: SourceKind; name: string }>;
}

/** Everything the reloader needs, parsed once at start from flags and the environment and passed down. */
export interface ReloaderConfig {
  sources: SourceSpec[];
  /** From --namespace or POD_NAMESPACE; otherwise the kubeconfig context's or the in-cluster namespace file. */
  namespace?: string;
  cluster: ClusterConfig;
  /** HTTP delivery (--reload-url). Absent, with no `signal` either: files are written and no application is told. */
  reload?: ReloadConfig;
  /** Signal delivery (--reload-signal), instead of HTTP. */
  signal?: SignalConfig;
  /** Needs a delivery (`reload` or `signal`). */
  confirm?: ConfirmConfig;
  events?: EventsConfig;
  restarts: RestartConfig[];
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
directories (the kubelet's ..data symlink layout) and tells the application to reload (its reload URL,
or a signal), optionally confirming from its metrics that it applied the change.

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
  --reload-signal SIGNAL           send SIGHUP, SIGUSR1 or SIGUSR2 after each change instead of an HTTP
                                   request (not with --reload-url); needs --signal-container
  --signal-container NAME          the container whose main process gets the signal (the pod shares its
                                   process namespace; the container has the webhook's marker mount at
                                   /run/config-reloader/containers/NAME)
  --confirm-metrics-url URL        the app's Prometheus-text metrics, read after each reload to learn whether
                                   it applied the config (needs --confirm-success-metric and a delivery)
  --confirm-success-metric NAME    metric that is 1 when the app's last reload succeeded, 0 when it failed
  --confirm-timestamp-metric NAME  metric with the Unix time of the app's last successful reload (optional:
                                   applied then also means newer than before the reload)
  --confirm-unchanged-keeps-timestamp
                                   the app does not advance its timestamp when a reload finds nothing to change
                                   (VictoriaMetrics): success 1 and the same timestamp at the timeout then means
                                   it runs the delivered content (verdict unchanged); needs
                                   --confirm-timestamp-metric
  --confirm-timeout DURATION       how long to wait for the app's verdict after a reload (default 30s)
  --events                         record Kubernetes Events (ConfigApplied, ConfigRejected,
                                   ContainerRestarted) on this pod; needs env POD_NAME, POD_UID and
                                   POD_NAMESPACE and a Role that may create events
  --restart-on-change CONTAINER=KIND/NAME[,KIND/NAME...]
                                   repeatable: watch these objects (no files written) and send SIGTERM to
                                   CONTAINER's main process when one's data changes after the first sync, so
                                   that the kubelet restarts that container and it reads its env again
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
  'reload-signal': { type: 'string' },
  'signal-container': { type: 'string' },
  'confirm-metrics-url': { type: 'string' },
  'confirm-success-metric': { type: 'string' },
  'confirm-timestamp-metric': { type: 'string' },
  'confirm-unchanged-keeps-timestamp': { type: 'boolean', default: false },
  'confirm-timeout': { type: 'string', default: '30s' },
  events: { type: 'boolean', default: false },
  'restart-on-change': { type: 'string', multiple: true },
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

function parseSources(args: string[], restarts: number): SourceSpec[] {
  if (args.length === 0 && restarts === 0)
    throw new UsageError(
      'at least one --source KIND/NAME=DIR (or --restart-on-change) is required (see: config-reloader-injector reloader --help)',
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

function parseUrl(flag: string, raw: string, example: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UsageError(`--${flag} "${raw}" is not a URL such as ${example}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new UsageError(`--${flag} "${raw}" must be http:// or https://`);
  return url;
}

/** A container name as Kubernetes takes it (a DNS-1123 label). */
const CONTAINER_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

function containerName(flag: string, value: string): string {
  if (value.length > 63 || !CONTAINER_RE.test(value))
    throw new UsageError(
      `--${flag}: "${value}" is not a container name (lower-case letters, digits and '-', at most 63)`,
    );
  return value;
}

/** `HUP`, `sighup`, `SIGHUP` → `SIGHUP`; anything but the three reload signals is a UsageError. */
function parseReloadSignal(value: string): ReloadSignal {
  const upper = value.trim().toUpperCase();
  const name = upper.startsWith('SIG') ? upper : `SIG${upper}`;
  const found = RELOAD_SIGNALS.find((s) => s === name);
  if (!found)
    throw new UsageError(
      `--reload-signal "${value}" is not a reload signal: give SIGHUP, SIGUSR1 or SIGUSR2 (the one the app reloads on)`,
    );
  return found;
}

function parseSignal(values: Record<string, unknown>, http: boolean): SignalConfig | undefined {
  const raw = values['reload-signal'] as string | undefined;
  const container = values['signal-container'] as string | undefined;
  if (raw === undefined) {
    if (container !== undefined)
      throw new UsageError('--signal-container needs --reload-signal (which signal to send it)');
    return undefined;
  }
  if (http)
    throw new UsageError(
      '--reload-url and --reload-signal both given: the app is told one way, give one of them',
    );
  const signal = parseReloadSignal(raw);
  if (container === undefined)
    throw new UsageError(`--reload-signal ${signal} needs --signal-container NAME (whose process to signal)`);
  return { signal, container: containerName('signal-container', container) };
}

/** Prometheus metric names: `[a-zA-Z_:][a-zA-Z0-9_:]*`. */
const METRIC_NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

function metricName(flag: string, value: string): string {
  if (!METRIC_NAME_RE.test(value))
    throw new UsageError(
      `--${flag} "${value}" is not a metric name (letters, digits, '_' and ':'; no labels, no braces)`,
    );
  return value;
}

function parseConfirm(values: Record<string, unknown>, delivery: boolean): ConfirmConfig | undefined {
  // Checked even without confirmation: a typo must not wait for the day a metrics URL is added.
  const timeoutMs = positiveDuration('confirm-timeout', values['confirm-timeout'] as string);
  const url = values['confirm-metrics-url'] as string | undefined;
  const success = values['confirm-success-metric'] as string | undefined;
  const timestamp = values['confirm-timestamp-metric'] as string | undefined;
  const unchangedKeepsTimestamp = values['confirm-unchanged-keeps-timestamp'] as boolean;
  if (unchangedKeepsTimestamp && timestamp === undefined)
    throw new UsageError(
      "--confirm-unchanged-keeps-timestamp needs --confirm-timestamp-metric: it says what a timestamp that did not move means; add the app's timestamp metric, or drop the flag",
    );
  if (url === undefined && success === undefined) {
    if (timestamp !== undefined)
      throw new UsageError(
        '--confirm-timestamp-metric needs --confirm-metrics-url and --confirm-success-metric',
      );
    return undefined;
  }
  if (url === undefined)
    throw new UsageError(
      '--confirm-success-metric needs --confirm-metrics-url (where the app serves its metrics)',
    );
  if (success === undefined)
    throw new UsageError(
      '--confirm-metrics-url needs --confirm-success-metric (the metric that is 1 after a successful reload)',
    );
  if (!delivery)
    throw new UsageError(
      'confirmation (--confirm-metrics-url) needs a delivery: give --reload-url or --reload-signal',
    );
  return {
    metricsUrl: parseUrl('confirm-metrics-url', url, 'http://127.0.0.1:8429/metrics'),
    successMetric: metricName('confirm-success-metric', success),
    timestampMetric: timestamp === undefined ? undefined : metricName('confirm-timestamp-metric', timestamp),
    timeoutMs,
    ...(unchangedKeepsTimestamp ? { unchangedKeepsTimestamp } : {}),
  };
}

function parseEvents(on: boolean, env: NodeJS.ProcessEnv): EventsConfig | undefined {
  if (!on) return undefined;
  const need = (name: string): string => {
    const value = env[name];
    if (!value)
      throw new UsageError(
        `--events needs env ${name} (from the downward API; the webhook sets POD_NAME, POD_UID and POD_NAMESPACE)`,
      );
    return value;
  };
  const podName = need('POD_NAME');
  const podUid = need('POD_UID');
  const podNamespace = need('POD_NAMESPACE');
  if (!isValidNamespace(podNamespace))
    throw new UsageError(`--events: POD_NAMESPACE "${podNamespace}" is not a valid namespace name`);
  return { podName, podUid, podNamespace };
}

const RESTART_KINDS: Record<string, SourceKind> = { secret: 'secret', configmap: 'configmap' };

function parseRestarts(args: string[]): RestartConfig[] {
  const byContainer = new Map<string, RestartConfig>();
  for (const arg of args) {
    const eq = arg.indexOf('=');
    const usage = `--restart-on-change "${arg}" is not CONTAINER=KIND/NAME[,KIND/NAME...], e.g. app=secret/app-env,configmap/app-settings`;
    if (eq <= 0 || eq === arg.length - 1) throw new UsageError(usage);
    const container = containerName('restart-on-change', arg.slice(0, eq));
    const entry = byContainer.get(container) ?? { container, objects: [] };
    for (const part of arg.slice(eq + 1).split(',')) {
      const [kindText, name, ...rest] = part.split('/');
      const kind = RESTART_KINDS[kindText?.toLowerCase() ?? ''];
      if (kind === undefined || name === undefined || rest.length > 0)
        throw new UsageError(`${usage}: "${part}" is not KIND/NAME with KIND secret or configmap`);
      if (!isValidObjectName(name))
        throw new UsageError(
          `--restart-on-change "${arg}": "${name}" is not a Secret or ConfigMap name: a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters)`,
        );
      if (!entry.objects.some((o) => o.kind === kind && o.name === name)) entry.objects.push({ kind, name });
    }
    byContainer.set(container, entry);
  }
  return [...byContainer.values()];
}

function parseReload(values: Record<string, unknown>): ReloadConfig | undefined {
  // Method and timeout are checked even without a URL: a typo must not wait for the day a URL is added.
  const method = (values['reload-method'] as string).toUpperCase();
  if (!METHOD_RE.test(method))
    throw new UsageError(`--reload-method "${values['reload-method'] as string}" is not an HTTP method`);
  const timeoutMs = positiveDuration('reload-timeout', values['reload-timeout'] as string);
  const raw = values['reload-url'] as string | undefined;
  if (raw === undefined) return undefined;
  return { url: parseUrl('reload-url', raw, 'http://127.0.0.1:8080/-/reload'), method, timeoutMs };
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
  const restarts = parseRestarts(values['restart-on-change'] ?? []);
  const reload = parseReload(values);
  const signal = parseSignal(values, reload !== undefined);
  return {
    sources: parseSources(values.source ?? [], restarts.length),
    namespace,
    cluster: parseCluster(values, env),
    reload,
    signal,
    confirm: parseConfirm(values, reload !== undefined || signal !== undefined),
    events: parseEvents(values.events, env),
    restarts,
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
