import { hostname } from 'node:os';
import {
  CoreV1Api,
  makeInformer,
  type CoreV1Event,
  type KubeConfig,
  Observable,
  type ObservableMiddleware,
  type RequestContext,
  type ResponseContext,
  type V1Namespace,
  type V1Pod,
} from '@kubernetes/client-node';
import { ANNOTATIONS, STATUS_INJECTED, readAnnotations } from '../injection/annotations.ts';
import type { InjectorConfig } from '../injection/config.ts';
import { injectPod, type OptIn } from '../injection/inject.ts';
import type { Logger } from '../shared/log.ts';
import type { Gauge, Registry } from '../shared/metrics.ts';
import { describeApiError } from './api-errors.ts';

/**
 * Missed injections. With `failurePolicy: Ignore`, a pod created while the webhook was unreachable starts without
 * the sidecar and nothing says so. This watches every pod (and every namespace, for the label), finds those that
 * opted in and that the webhook would patch (or deny) but that lack `config-reloader.io/status: injected`, counts
 * them in a gauge and records one Warning Event on each, naming the fix.
 *
 * RBAC: get/list/watch pods and namespaces (cluster-wide), create events; nothing more.
 */

export const MISSED_INJECTIONS_METRIC = 'config_reloader_webhook_missed_injections';
export const NAMESPACE_LABEL = 'config-reloader.io/injection';
export const NAMESPACE_LABEL_VALUE = 'enabled';
export const EVENT_REASON = 'ConfigReloaderNotInjected';
const COMPONENT = 'config-reloader-injector';

/** Every outbound call gets a deadline; watches have client-node's own inactivity timeout. */
const REQUEST_TIMEOUT_MS = 15_000;
const MAX_RESTART_DELAY_MS = 30_000;

export interface MissedInjection {
  optIn: OptIn;
  /** What a new pod of the same spec would get: injected, or denied with this message. */
  outcome: { action: 'patch' } | { action: 'deny'; message: string };
}

type Labels = Record<string, string> | undefined;

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

/** The `kubectl` command that recreates the pod with the sidecar, from its controller when it has one. */
export function restartHint(pod: V1Pod): string {
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

function eventMessage(pod: V1Pod, missed: MissedInjection): string {
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
function eventName(pod: V1Pod): string {
  const name = pod.metadata?.name ?? 'pod';
  return `${name.slice(0, 200)}.${pod.metadata?.uid ?? ''}.not-injected`.replace(/\.+$/, '');
}

export function buildEvent(pod: V1Pod, missed: MissedInjection, now: Date = new Date()): CoreV1Event {
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
    'Running pods that opted in to config-reloader injection but were created without the sidecar (restart them).',
  );
}

export interface MissedInjectionWatcherOptions {
  kubeConfig: KubeConfig;
  registry: Registry;
  log: Logger;
  config: InjectorConfig;
  /** Namespaces not looked at (the MutatingWebhookConfiguration's namespaceSelector excludes them too). */
  excludeNamespaces?: readonly string[];
}

export interface MissedInjectionWatcher {
  /** Resolves once pods and namespaces have been listed and every pod looked at. */
  readonly ready: Promise<void>;
  /** The pods counted now, as namespace/name. */
  missed(): string[];
  stop(): Promise<void>;
}

function timeoutOptions(ms: number): {
  middleware: ObservableMiddleware[];
  middlewareMergeStrategy: 'append';
} {
  return {
    middleware: [
      {
        pre: (ctx: RequestContext) => {
          ctx.setSignal(AbortSignal.timeout(ms));
          return new Observable(Promise.resolve(ctx));
        },
        post: (ctx: ResponseContext) => new Observable(Promise.resolve(ctx)),
      },
    ],
    middlewareMergeStrategy: 'append',
  };
}

export function startMissedInjectionWatcher(opts: MissedInjectionWatcherOptions): MissedInjectionWatcher {
  const { kubeConfig, log, config } = opts;
  const excluded = new Set(opts.excludeNamespaces ?? []);
  const gauge = registerMissedInjectionsGauge(opts.registry);
  const core = kubeConfig.makeApiClient(CoreV1Api);
  const timeout = (): ReturnType<typeof timeoutOptions> => timeoutOptions(REQUEST_TIMEOUT_MS);

  const namespaces = makeInformer<V1Namespace>(kubeConfig, '/api/v1/namespaces', () =>
    core.listNamespace({}, timeout()),
  );
  const pods = makeInformer<V1Pod>(kubeConfig, '/api/v1/pods', () =>
    core.listPodForAllNamespaces({}, timeout()),
  );

  /** uid → namespace/name of the pods counted now. */
  const missed = new Map<string, string>();
  /** uids whose Event was recorded (or is being recorded); forgotten when the pod goes. */
  const reported = new Set<string>();
  let stopped = false;
  let namespacesSynced = false;

  const update = (): void => gauge.set(missed.size);

  const record = async (pod: V1Pod, found: MissedInjection): Promise<void> => {
    const uid = pod.metadata?.uid ?? '';
    reported.add(uid);
    const fields = { namespace: pod.metadata?.namespace, pod: pod.metadata?.name };
    try {
      await core.createNamespacedEvent(
        { namespace: pod.metadata?.namespace ?? '', body: buildEvent(pod, found) },
        timeout(),
      );
      log.warn(
        { ...fields, optIn: found.optIn, fix: restartHint(pod) },
        'pod opted in but runs without the config-reloader sidecar; Event recorded',
      );
    } catch (err) {
      const described = describeApiError(err);
      // Another webhook replica recorded it first.
      if (described.code === 409) return;
      // Try again on the pod's next change (or the next relist).
      reported.delete(uid);
      log.warn({ ...fields, ...described }, 'cannot record the missed-injection Event');
    }
  };

  const evaluate = (pod: V1Pod): void => {
    const uid = pod.metadata?.uid;
    const namespace = pod.metadata?.namespace;
    if (!uid || !namespace || !namespacesSynced) return;
    let found: MissedInjection | undefined;
    if (!excluded.has(namespace)) {
      const labels = namespaces.get(namespace)?.metadata?.labels;
      // The informer hands out class instances; the injection core reads plain JSON, as the webhook receives it.
      found = missedInjection(JSON.parse(JSON.stringify(pod)), labels, config);
    }
    if (!found) {
      if (missed.delete(uid)) update();
      return;
    }
    if (!missed.has(uid)) {
      missed.set(uid, `${namespace}/${pod.metadata?.name ?? ''}`);
      update();
    }
    if (!reported.has(uid) && !stopped) void record(pod, found);
  };

  const forget = (pod: V1Pod): void => {
    const uid = pod.metadata?.uid ?? '';
    reported.delete(uid);
    if (missed.delete(uid)) update();
  };

  pods.on('add', evaluate);
  pods.on('update', evaluate);
  pods.on('delete', forget);
  const reevaluateNamespace = (ns: V1Namespace): void => {
    for (const pod of pods.list(ns.metadata?.name ?? '')) evaluate(pod);
  };
  namespaces.on('add', reevaluateNamespace);
  namespaces.on('update', reevaluateNamespace);
  namespaces.on('delete', reevaluateNamespace);

  // client-node's informers stop on an error and are restarted by their user; back off while the API is down.
  const restarter = (name: string, informer: { start(): Promise<void> }): ((err: unknown) => void) => {
    let delay = 500;
    let timer: NodeJS.Timeout | undefined;
    return (err: unknown) => {
      if (stopped) return;
      log.warn({ informer: name, ...describeApiError(err), retryInMs: delay }, 'watch failed; listing again');
      clearTimeout(timer);
      timer = setTimeout(() => {
        if (!stopped) informer.start().catch(() => {});
      }, delay);
      timer.unref();
      delay = Math.min(delay * 2, MAX_RESTART_DELAY_MS);
    };
  };
  namespaces.on('error', restarter('namespaces', namespaces));
  pods.on('error', restarter('pods', pods));
  // A successful (re)connection resets nothing here: client-node reports it as 'connect' before listing.

  update();
  const ready = (async () => {
    await namespaces.start();
    namespacesSynced = true;
    await pods.start();
    for (const pod of pods.list()) evaluate(pod);
  })();
  ready.catch((err: unknown) =>
    log.warn(describeApiError(err), 'missed-injection watcher: first list failed; retrying'),
  );

  return {
    ready,
    missed: () => [...missed.values()].sort(),
    stop: async () => {
      stopped = true;
      await Promise.all([pods.stop(), namespaces.stop()]);
    },
  };
}
