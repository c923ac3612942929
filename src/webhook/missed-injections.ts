import { createHash, randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { CoreV1Event, KubeConfig } from '@kubernetes/client-node';
import {
  ANNOTATIONS,
  ANNOTATION_PREFIX,
  STATUS_INJECTED,
  readAnnotations,
} from '../injection/annotations.ts';
import type { InjectorConfig } from '../injection/config.ts';
import { injectPod, type OptIn } from '../injection/inject.ts';
import type { Logger } from '../shared/log.ts';
import type { Gauge, Registry } from '../shared/metrics.ts';
import { kubeHttp, statusMessage, type KubeHttp, type KubeResponse } from './kube-http.ts';
import { LEASE_COUNT_ANNOTATION, LEASE_SCANNED_AT_ANNOTATION, ScanLease } from './scan-lease.ts';

/**
 * Missed injections. With `failurePolicy: Ignore`, a pod created while the webhook was unreachable starts without
 * the sidecar. Two things catch it:
 *
 * - at admission, the ValidatingAdmissionPolicy of deploy/base (no process involved): the creator gets a
 *   warning and the audit log a record;
 * - for pods that are running (created by controllers, whose warnings nobody reads, or before the policy
 *   existed), this slow scan: one replica at a time (a Lease) lists the pods' metadata only
 *   (PartialObjectMetadataList), a page at a time, and fetches the full pod only for a candidate (opted in, no
 *   `config-reloader.io/status: injected`), to ask the injection core what the webhook would have done. It
 *   counts the misses in a gauge and records one Warning Event on each, naming the fix.
 *
 * What it keeps between scans does not grow with the cluster: the count, at most MAX_TRACKED_MISSES names of
 * missed pods, at most MAX_VERDICTS remembered candidates that were not misses (so they are not fetched again),
 * and the labelled namespaces' names. A page is dropped once read.
 *
 * RBAC: list pods and namespaces (cluster-wide), create events, get/update the Lease by name and create Leases
 * in the webhook's namespace.
 */

export const MISSED_INJECTIONS_METRIC = 'config_reloader_webhook_missed_injections';
export const LAST_SCAN_METRIC = 'config_reloader_webhook_missed_injections_last_scan_timestamp_seconds';
export const NAMESPACE_LABEL = 'config-reloader.io/injection';
export const NAMESPACE_LABEL_VALUE = 'enabled';
export const EVENT_REASON = 'ConfigReloaderNotInjected';
export const LEASE_NAME = 'config-reloader-injector-missed-injections';
/** `kubectl get --raw` sends the same; the real metadata client also offers protobuf first. */
export const METADATA_ACCEPT = 'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1';
const COMPONENT = 'config-reloader-injector';
/** Pods of the webhook itself: the MutatingWebhookConfiguration's objectSelector never sends them. */
const OWN_POD_LABEL = 'app.kubernetes.io/name';
const OWN_POD_LABEL_VALUE = 'config-reloader-injector';

export const SCAN_DEFAULTS = {
  /** How often the holder of the Lease scans; the other replicas read the result as often. */
  intervalMs: 5 * 60_000,
  /** Pods per page (kubectl's default chunk size). */
  pageSize: 500,
  /** Pause between two pages of a scan: at most 2 pages (1,000 pods) a second. */
  pageGapMs: 500,
  /** Pause between two candidate fetches: at most 10 a second. */
  fetchGapMs: 100,
  /** Delay of the first turn after start. */
  firstTurnDelayMs: 2_000,
};

/** Names of missed pods kept (for Events and logs); the count goes on beyond. */
export const MAX_TRACKED_MISSES = 1_000;
/** Candidates found not to be misses, remembered so that the next scans do not fetch them again. */
export const MAX_VERDICTS = 20_000;
/** Full pods fetched per scan at most; the rest waits for the next scan. */
export const MAX_FETCHES_PER_SCAN = 1_000;

export interface MissedInjection {
  optIn: OptIn;
  /** What a new pod of the same spec would get: injected, or denied with this message. */
  outcome: { action: 'patch' } | { action: 'deny'; message: string };
}

type Labels = Record<string, string> | undefined;

/** The metadata of a pod as a PartialObjectMetadataList item carries it. */
export interface PodMetadata {
  name?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: Array<{ kind: string; name: string; controller?: boolean }>;
  deletionTimestamp?: unknown;
}

export interface PodLike {
  metadata?: PodMetadata;
}

/**
 * Whether a pod missed its injection: it opted in (annotation, or namespace label without opting out), it does
 * not carry the status annotation, it is still running, and the webhook would patch or deny it today (a pod
 * with nothing to sync is skipped by the webhook too, so it did not miss anything). Pure.
 */
export function missedInjection(
  pod: unknown,
  namespaceLabels: Labels,
  config: InjectorConfig,
): MissedInjection | undefined {
  if (typeof pod !== 'object' || pod === null) return undefined;
  const p = pod as { metadata?: Record<string, unknown>; status?: { phase?: unknown } };
  const annotations = readAnnotations(p.metadata);
  if (annotations.get(ANNOTATIONS.status) === STATUS_INJECTED) return undefined;
  // Mirror pods of static pods never go through admission webhooks.
  if (annotations.has('kubernetes.io/config.mirror')) return undefined;
  if (p.metadata?.deletionTimestamp) return undefined;
  if (p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed') return undefined;
  const byAnnotation = annotations.get(ANNOTATIONS.inject)?.trim().toLowerCase() === 'true';
  const byNamespace = namespaceLabels?.[NAMESPACE_LABEL] === NAMESPACE_LABEL_VALUE;
  if (!byAnnotation && !byNamespace) return undefined;
  const optIn: OptIn = byAnnotation ? 'annotation' : 'namespace';
  const outcome = injectPod(pod, { optIn }, config);
  if (outcome.action === 'patch') return { optIn, outcome: { action: 'patch' } };
  if (outcome.action === 'deny') return { optIn, outcome: { action: 'deny', message: outcome.message } };
  return undefined;
}

/**
 * Whether a pod's metadata alone makes it a candidate (missedInjection may say yes once the full pod is read):
 * not excluded, not the webhook's own, opted in, not injected, not a mirror pod, not being deleted. Pure.
 */
export function isCandidate(
  meta: PodMetadata | undefined,
  labelledNamespaces: ReadonlySet<string>,
  excludedNamespaces: ReadonlySet<string>,
): OptIn | undefined {
  if (!meta?.namespace || !meta.name || !meta.uid) return undefined;
  if (excludedNamespaces.has(meta.namespace)) return undefined;
  if (meta.labels?.[OWN_POD_LABEL] === OWN_POD_LABEL_VALUE) return undefined;
  if (meta.deletionTimestamp) return undefined;
  const annotations = readAnnotations(meta);
  if (annotations.get(ANNOTATIONS.status) === STATUS_INJECTED) return undefined;
  if (annotations.has('kubernetes.io/config.mirror')) return undefined;
  const inject = annotations.get(ANNOTATIONS.inject)?.trim().toLowerCase();
  if (inject === 'true') return 'annotation';
  if (labelledNamespaces.has(meta.namespace) && inject !== 'false') return 'namespace';
  return undefined;
}

/** The `kubectl` command that recreates the pod with the sidecar, from its controller when it has one. */
export function restartHint(pod: PodLike): string {
  const { name = '', namespace = '', ownerReferences = [], labels = {} } = pod.metadata ?? {};
  const owner = ownerReferences.find((o) => o.controller) ?? ownerReferences[0];
  const ns = `-n ${namespace}`;
  if (owner?.kind === 'ReplicaSet') {
    const hash = labels['pod-template-hash'];
    if (hash && owner.name.endsWith(`-${hash}`)) {
      return `kubectl rollout restart deployment/${owner.name.slice(0, -hash.length - 1)} ${ns}`;
    }
  }
  if (owner && ['StatefulSet', 'DaemonSet', 'Deployment'].includes(owner.kind)) {
    return `kubectl rollout restart ${owner.kind.toLowerCase()}/${owner.name} ${ns}`;
  }
  if (owner) return `kubectl delete pod ${name} ${ns} (its ${owner.kind} ${owner.name} recreates it)`;
  return `recreate it: kubectl get pod ${name} ${ns} -o yaml > pod.yaml && kubectl replace --force -f pod.yaml`;
}

function eventMessage(pod: PodLike, missed: MissedInjection): string {
  const how =
    missed.optIn === 'annotation'
      ? `annotation ${ANNOTATIONS.inject}: "true"`
      : `namespace label ${NAMESPACE_LABEL}=${NAMESPACE_LABEL_VALUE}`;
  const head = `The pod opted in to config-reloader injection (${how}) but was created without the sidecar, most likely while the webhook was unreachable (failurePolicy: Ignore); its Secrets/ConfigMaps are not kept current.`;
  if (missed.outcome.action === 'deny') {
    return `${head} Recreating it now would be denied: ${missed.outcome.message}. Fix the annotations, then restart it: ${restartHint(pod)}`;
  }
  return `${head} Restart the pod to get the sidecar: ${restartHint(pod)}`;
}

/** One name per pod uid, so that replicas of the webhook record the Event once between them (409 for the others). */
function eventName(pod: PodLike): string {
  const name = pod.metadata?.name ?? 'pod';
  return `${name.slice(0, 200)}.${pod.metadata?.uid ?? ''}.not-injected`.replace(/\.+$/, '');
}

export function buildEvent(pod: PodLike, missed: MissedInjection, now: Date = new Date()): CoreV1Event {
  const { name, namespace, uid, resourceVersion } = pod.metadata ?? {};
  return {
    apiVersion: 'v1',
    kind: 'Event',
    metadata: { name: eventName(pod), namespace },
    involvedObject: { apiVersion: 'v1', kind: 'Pod', name, namespace, uid, resourceVersion },
    reason: EVENT_REASON,
    type: 'Warning',
    message: eventMessage(pod, missed),
    source: { component: COMPONENT },
    reportingComponent: COMPONENT,
    reportingInstance: hostname(),
    firstTimestamp: now,
    lastTimestamp: now,
    count: 1,
  };
}

/** Registers the gauge on the webhook's registry (createWebhookMetrics().registry). */
export function registerMissedInjectionsGauge(registry: Registry): Gauge {
  return registry.gauge(
    MISSED_INJECTIONS_METRIC,
    'Running pods that opted in to config-reloader injection but were created without the sidecar (restart them), as of the last scan by any replica.',
  );
}

export interface MissedInjectionScannerOptions {
  kubeConfig: KubeConfig;
  registry: Registry;
  log: Logger;
  config: InjectorConfig;
  /** Namespace of the Lease (the webhook's own). */
  namespace: string;
  /** Namespaces not looked at (the MutatingWebhookConfiguration's namespaceSelector excludes them too). */
  excludeNamespaces?: readonly string[];
  /** This replica in the Lease (default: $POD_NAME or the host name, and a random suffix). */
  identity?: string;
  intervalMs?: number;
  pageSize?: number;
  pageGapMs?: number;
  fetchGapMs?: number;
  firstTurnDelayMs?: number;
  /** Another client (tests); default: kubeHttp(kubeConfig). */
  http?: KubeHttp;
}

export interface ScanSummary {
  /** Pods listed (their metadata). */
  pods: number;
  pages: number;
  candidates: number;
  /** Full pods read. */
  fetched: number;
  /** Candidates left for the next scan (MAX_FETCHES_PER_SCAN reached). */
  deferred: number;
  missed: number;
  durationMs: number;
  /** The longest the event loop (which also answers admission) was held during the scan, in ms. */
  maxEventLoopDelayMs: number;
}

export interface MissedInjectionScanner {
  /** Resolves after this replica's first turn (a scan when it holds the Lease; reading the result otherwise). */
  readonly ready: Promise<void>;
  /** The missed pods of this replica's last scan, as namespace/name (at most MAX_TRACKED_MISSES). */
  missed(): string[];
  /** The count this replica reports (its own scan's, or the holder's from the Lease). */
  count(): number;
  /** Whether this replica held the Lease at its last turn. */
  holding(): boolean;
  /** The last scan of this replica, if any. */
  lastScan(): ScanSummary | undefined;
  /** Takes a turn now (between scheduled ones); resolves when it is done. */
  turnNow(): Promise<void>;
  stop(): Promise<void>;
}

class Aborted extends Error {}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (ms <= 0) return signal.aborted ? Promise.reject(new Aborted()) : Promise.resolve();
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(new Aborted());
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(new Aborted());
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** A list answer without its items (they were handed over one by one). */
interface MetadataList {
  kind?: string;
  metadata?: { continue?: string };
}

/** A scan that cannot go on (an API error): the turn ends, the next one starts over. */
class ScanError extends Error {
  readonly status: number | undefined;
  constructor(message: string, status?: number) {
    super(message);
    this.status = status;
    this.name = 'ScanError';
  }
}

function describeError(err: unknown): { code?: number | string; reason: string } {
  const e = err as { status?: number; code?: string; message?: string };
  return {
    ...(e.status ? { code: e.status } : e.code ? { code: e.code } : {}),
    reason: e.message ?? String(err),
  };
}

/** What identifies a candidate's verdict: the pod, how it opted in, and its config-reloader.io annotations. */
function verdictKey(meta: PodMetadata, optIn: OptIn): string {
  const ours = Object.entries(meta.annotations ?? {})
    .filter(([k]) => k.startsWith(ANNOTATION_PREFIX))
    .sort(([a], [b]) => (a < b ? -1 : 1));
  const digest = createHash('sha256').update(JSON.stringify(ours)).digest('base64url').slice(0, 16);
  return `${meta.uid ?? ''}/${optIn}/${digest}`;
}

export function startMissedInjectionScanner(opts: MissedInjectionScannerOptions): MissedInjectionScanner {
  const { log, config } = opts;
  const intervalMs = opts.intervalMs ?? SCAN_DEFAULTS.intervalMs;
  const pageSize = opts.pageSize ?? SCAN_DEFAULTS.pageSize;
  const pageGapMs = opts.pageGapMs ?? SCAN_DEFAULTS.pageGapMs;
  const fetchGapMs = opts.fetchGapMs ?? SCAN_DEFAULTS.fetchGapMs;
  const excluded = new Set(opts.excludeNamespaces ?? []);
  const http = opts.http ?? kubeHttp(opts.kubeConfig, `${COMPONENT}/missed-injections`);
  const identity = opts.identity ?? `${process.env.POD_NAME || hostname()}_${randomUUID().slice(0, 8)}`;
  const lease = new ScanLease({
    http,
    namespace: opts.namespace,
    name: LEASE_NAME,
    identity,
    // Renewed at least once an interval (more often during a long scan); taken over after two silent ones.
    durationMs: 2 * intervalMs + 30_000,
  });
  const gauge = registerMissedInjectionsGauge(opts.registry);
  const lastScanGauge = opts.registry.gauge(
    LAST_SCAN_METRIC,
    'When the last missed-injection scan by any replica ended (Unix seconds); 0 before the first.',
  );

  /** uid → namespace/name of the misses of the last scan (bounded). */
  let misses = new Map<string, string>();
  /** uids whose Event was recorded by this replica (a subset of misses). */
  let reported = new Set<string>();
  /** verdictKey of candidates that were not misses. */
  let verdicts = new Set<string>();
  let count = 0;
  let summary: ScanSummary | undefined;
  let scannedAt = 0;
  let lastLogged: number | undefined;
  let stopped = false;
  const abort = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;

  const setCount = (n: number, scannedAt: number): void => {
    count = n;
    gauge.set(n);
    lastScanGauge.set(scannedAt);
  };

  const call = async (path: string, accept?: string): Promise<KubeResponse> =>
    http.request({ path, accept, signal: abort.signal });

  /**
   * Every page of a metadata list, one at a time, each item handed to `onItem` as it is read (the page is never
   * held whole); `afterPage` runs between pages. A 410 on a continue token resumes with the one it offers.
   */
  const listPages = async (
    path: string,
    onItem: (meta: PodMetadata | undefined) => void,
    afterPage: () => Promise<void> = async () => {},
  ): Promise<number> => {
    let token: string | undefined;
    let pages = 0;
    for (;;) {
      if (pages > 0) await sleep(pageGapMs, abort.signal);
      const sep = path.includes('?') ? '&' : '?';
      const query = `limit=${pageSize}${token ? `&continue=${encodeURIComponent(token)}` : ''}`;
      let kind: unknown;
      const res = await http.request({
        path: `${path}${sep}${query}`,
        accept: METADATA_ACCEPT,
        signal: abort.signal,
        onItem: (item) => {
          // A server that ignores the Accept header sends full objects: refused before any is used.
          const form = (item as { kind?: unknown } | null)?.kind;
          if (form !== 'PartialObjectMetadata') {
            kind ??= form;
            return;
          }
          onItem((item as { metadata?: PodMetadata }).metadata);
        },
      });
      if (res.status === 410 && token) {
        // The continue token outlived etcd's compaction: the Status carries one for an inconsistent remainder.
        const next = (res.body as { metadata?: { continue?: string } } | undefined)?.metadata?.continue;
        if (!next) throw new ScanError(`list ${path}: ${statusMessage(res)}`, res.status);
        token = next;
        continue;
      }
      if (res.status !== 200) throw new ScanError(`list ${path}: ${statusMessage(res)}`, res.status);
      const list = res.body as MetadataList;
      if (list?.kind !== 'PartialObjectMetadataList' || kind !== undefined)
        throw new ScanError(
          `list ${path}: the API server answered ${String(list?.kind)} instead of PartialObjectMetadataList`,
        );
      pages++;
      await afterPage();
      token = list.metadata?.continue || undefined;
      if (!token) return pages;
    }
  };

  /** The full pod, or undefined when it is gone or was replaced (another uid); a list, so RBAC needs no get. */
  const fetchPod = async (meta: PodMetadata): Promise<Record<string, unknown> | undefined> => {
    const path = `/api/v1/namespaces/${encodeURIComponent(meta.namespace ?? '')}/pods?fieldSelector=${encodeURIComponent(`metadata.name=${meta.name ?? ''}`)}`;
    const res = await call(path);
    if (res.status !== 200)
      throw new ScanError(`list pod ${meta.namespace}/${meta.name}: ${statusMessage(res)}`, res.status);
    const items = (res.body as { items?: Array<Record<string, unknown>> })?.items ?? [];
    const pod = items[0];
    if (!pod || (pod.metadata as PodMetadata | undefined)?.uid !== meta.uid) return undefined;
    return pod;
  };

  const record = async (pod: PodLike, found: MissedInjection): Promise<boolean> => {
    const fields = { namespace: pod.metadata?.namespace, pod: pod.metadata?.name };
    const res = await http.request({
      method: 'POST',
      path: `/api/v1/namespaces/${encodeURIComponent(pod.metadata?.namespace ?? '')}/events`,
      body: buildEvent(pod, found),
      signal: abort.signal,
    });
    // Another replica (or this one before a restart) recorded it first.
    if (res.status === 409) return true;
    if (res.status !== 201 && res.status !== 200) {
      log.warn(
        { ...fields, code: res.status, reason: statusMessage(res) },
        'cannot record the missed-injection Event',
      );
      return false;
    }
    log.warn(
      { ...fields, optIn: found.optIn, fix: restartHint(pod) },
      'pod opted in but runs without the config-reloader sidecar; Event recorded',
    );
    return true;
  };

  const scan = async (): Promise<void> => {
    const started = Date.now();
    const loop = monitorEventLoopDelay({ resolution: 10 });
    loop.enable();
    try {
      await scanPages(started);
    } finally {
      loop.disable();
    }
    if (summary) summary.maxEventLoopDelayMs = Math.round(loop.max / 1e6);
    log[summary && summary.missed !== lastLogged ? 'info' : 'debug'](summary, 'missed-injection scan done');
    lastLogged = summary?.missed;
    // The result, for the other replicas' metric; losing the Lease here only means another replica scans next.
    await lease.renew(
      {
        [LEASE_COUNT_ANNOTATION]: String(count),
        [LEASE_SCANNED_AT_ANNOTATION]: new Date(scannedAt).toISOString(),
      },
      abort.signal,
    );
  };

  const scanPages = async (started: number): Promise<void> => {
    let lastRenew = started;
    const labelled = new Set<string>();
    await listPages(
      `/api/v1/namespaces?labelSelector=${encodeURIComponent(`${NAMESPACE_LABEL}=${NAMESPACE_LABEL_VALUE}`)}`,
      (meta) => {
        if (meta?.name) labelled.add(meta.name);
      },
    );
    const found = new Map<string, string>();
    const nextVerdicts = new Set<string>();
    const nextReported = new Set<string>();
    const s: ScanSummary = {
      pods: 0,
      pages: 0,
      candidates: 0,
      fetched: 0,
      deferred: 0,
      missed: 0,
      durationMs: 0,
      maxEventLoopDelayMs: 0,
    };
    // The candidates of the page being read (at most a page of metadata); every other item is dropped as read.
    let candidates: Array<{ meta: PodMetadata; optIn: OptIn; key: string }> = [];
    const onPod = (meta: PodMetadata | undefined): void => {
      s.pods++;
      const optIn = isCandidate(meta, labelled, excluded);
      if (!optIn || !meta) return;
      s.candidates++;
      const key = verdictKey(meta, optIn);
      if (verdicts.has(key)) {
        if (nextVerdicts.size < MAX_VERDICTS) nextVerdicts.add(key);
        return;
      }
      candidates.push({ meta, optIn, key });
    };
    const checkCandidates = async (): Promise<void> => {
      const batch = candidates;
      candidates = [];
      for (const { meta, key } of batch) {
        if (s.fetched >= MAX_FETCHES_PER_SCAN) {
          s.deferred++;
          continue;
        }
        if (s.fetched > 0) await sleep(fetchGapMs, abort.signal);
        s.fetched++;
        const pod = await fetchPod(meta);
        if (!pod) continue;
        const ns = meta.namespace ?? '';
        const miss = missedInjection(
          pod,
          labelled.has(ns) ? { [NAMESPACE_LABEL]: NAMESPACE_LABEL_VALUE } : undefined,
          config,
        );
        if (!miss) {
          if (nextVerdicts.size < MAX_VERDICTS) nextVerdicts.add(key);
          continue;
        }
        s.missed++;
        const uid = meta.uid ?? '';
        if (found.size < MAX_TRACKED_MISSES) found.set(uid, `${ns}/${meta.name ?? ''}`);
        if (reported.has(uid)) {
          nextReported.add(uid);
        } else if (await record(pod as PodLike, miss)) {
          if (found.has(uid)) nextReported.add(uid);
        }
      }
      // A long scan keeps the Lease, so no other replica starts one meanwhile.
      if (Date.now() - lastRenew > intervalMs / 2) {
        if (!(await lease.renew({}, abort.signal)))
          throw new ScanError('the Lease was taken over by another replica during the scan');
        lastRenew = Date.now();
      }
    };
    s.pages = await listPages('/api/v1/pods', onPod, checkCandidates);
    s.durationMs = Date.now() - started;
    misses = found;
    reported = nextReported;
    verdicts = nextVerdicts;
    summary = s;
    scannedAt = Date.now();
    setCount(s.missed, Math.floor(scannedAt / 1000));
  };

  /** Reads the holder's last result from the Lease, for a replica that does not scan. */
  const follow = (annotations: Record<string, string> | undefined): void => {
    const n = Number(annotations?.[LEASE_COUNT_ANNOTATION]);
    const at = Date.parse(annotations?.[LEASE_SCANNED_AT_ANNOTATION] ?? '');
    if (Number.isInteger(n) && n >= 0 && Number.isFinite(at)) setCount(n, Math.floor(at / 1000));
    misses = new Map();
    reported = new Set();
    verdicts = new Set();
  };

  let wasHolding: boolean | undefined;
  const turn = async (): Promise<boolean> => {
    try {
      const t = await lease.turn(abort.signal);
      const holding = t.role === 'holder';
      if (holding !== wasHolding)
        log.info(
          {
            lease: `${opts.namespace}/${LEASE_NAME}`,
            identity,
            ...(t.role === 'follower' ? { holder: t.holder } : {}),
          },
          holding
            ? 'missed-injection scan: this replica scans'
            : 'missed-injection scan: another replica scans',
        );
      wasHolding = holding;
      if (t.role === 'holder') await scan();
      else follow(t.lease.metadata.annotations);
      return true;
    } catch (err) {
      if (err instanceof Aborted || stopped) return true;
      log.warn(
        { ...describeError(err), retryInMs: Math.min(intervalMs, 30_000) },
        'missed-injection scan failed',
      );
      return false;
    }
  };

  const schedule = (ms: number): void => {
    if (stopped) return;
    clearTimeout(timer);
    timer = setTimeout(() => void runTurn(), ms);
    timer.unref();
  };

  const runTurn = (): Promise<void> => {
    if (running) return running;
    clearTimeout(timer);
    running = turn().then((ok) => {
      running = undefined;
      // ±10 %, so that replicas started together drift apart.
      schedule(ok ? intervalMs * (0.9 + Math.random() * 0.2) : Math.min(intervalMs, 30_000));
    });
    return running;
  };

  setCount(0, 0);
  const ready = new Promise<void>((resolve) => {
    timer = setTimeout(
      () => void runTurn().then(resolve),
      opts.firstTurnDelayMs ?? SCAN_DEFAULTS.firstTurnDelayMs,
    );
    timer.unref();
    abort.signal.addEventListener('abort', () => resolve(), { once: true });
  });

  return {
    ready,
    missed: () => [...misses.values()].sort(),
    count: () => count,
    holding: () => lease.holding,
    lastScan: () => summary,
    turnNow: async () => {
      if (running) await running;
      await runTurn();
    },
    stop: async () => {
      stopped = true;
      clearTimeout(timer);
      abort.abort();
      await running;
      try {
        await lease.release(AbortSignal.timeout(5_000));
      } catch (err) {
        log.debug(describeError(err), 'could not release the missed-injection Lease');
      }
      http.close();
    },
  };
}
