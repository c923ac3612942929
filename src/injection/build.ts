import {
  ANNOTATIONS,
  SHARED_VOLUME,
  SIDECAR_CONTAINER,
  SIDECAR_INIT_CONTAINER,
  STATUS_INJECTED,
  TARGET_MARKER_VOLUME,
  TOKEN_VOLUME,
} from './annotations.ts';
import type { InjectionPlan } from './decide.ts';
import { KNOB_LIST } from './knob-table.ts';
import { PRESETS } from './presets.ts';
import { cloneJson, CopyOnWrite, isObject, stringOf, type JsonObject } from './json.ts';
import { ownTokenVolume, SERVICE_ACCOUNT_PATH } from './service-account.ts';
import { SHARED_DIR, VOLUMES_DIR } from './sources.ts';
import { targetMarkerPath } from '../shared/process-marker.ts';
import { formatSourceSpec } from '../shared/source-spec.ts';

/**
 * The injected pod, copy-on-write: every object and array on the way to a change is copied, everything else is
 * shared with the pod as received, which is never written to. The diff then skips shared subtrees by identity,
 * so its cost follows the size of the change, not of the pod.
 */
export function buildPod(original: JsonObject, plan: InjectionPlan): JsonObject {
  const { settings, sources, targets } = plan;
  const draft = new CopyOnWrite();
  const pod = draft.root(original);
  const spec = draft.object(pod, 'spec');
  const volumeMounts: JsonObject[] = [];

  const converted = new Map(sources.converted.map((c) => [c.name, c]));
  if (converted.size > 0) {
    const volumes = draft.array(spec, 'volumes');
    volumes.forEach((item, i) => {
      const entry = isObject(item) ? converted.get(stringOf(item.name) ?? '') : undefined;
      if (entry === undefined) return;
      // A new object without the source (delete would leave V8 a slow dictionary object to diff and encode).
      const { secret: _secret, configMap: _configMap, ...volume } = item as JsonObject;
      // Secrets stay in memory, never on the node's disk.
      volume.emptyDir = entry.fromSecret ? { medium: 'Memory' } : {};
      volumes[i] = volume;
      volumeMounts.push({ name: entry.name, mountPath: `${VOLUMES_DIR}/${entry.name}` });
    });
  }
  if (sources.explicit.length > 0) {
    const anySecret = sources.explicit.some((source) => source.kind === 'secret');
    draft
      .array(spec, 'volumes')
      .push({ name: SHARED_VOLUME, emptyDir: anySecret ? { medium: 'Memory' } : {} });
    volumeMounts.push({ name: SHARED_VOLUME, mountPath: SHARED_DIR });
    for (const list of ['initContainers', 'containers'] as const) {
      if (!Array.isArray(spec[list])) continue;
      const containers = draft.array(spec, list);
      containers.forEach((item, i) => {
        if (!isObject(item) || !targets.includes(stringOf(item.name) ?? '')) return;
        draft
          .array(draft.object(containers, i), 'volumeMounts')
          .push({ name: SHARED_VOLUME, mountPath: settings.mountPath, readOnly: true });
      });
    }
  }
  if (plan.tokenVolume === undefined) draft.array(spec, 'volumes').push(ownTokenVolume());
  volumeMounts.push({
    name: plan.tokenVolume ?? TOKEN_VOLUME,
    mountPath: SERVICE_ACCOUNT_PATH,
    readOnly: true,
  });

  if (plan.processes !== undefined) {
    // The sidecar finds each target's processes by the marker mount in their /proc/PID/mountinfo
    // (src/shared/process-marker.ts), in the process namespace they share.
    spec.shareProcessNamespace = true;
    draft
      .array(spec, 'volumes')
      .push({ name: TARGET_MARKER_VOLUME, emptyDir: { medium: 'Memory', sizeLimit: '1Ki' } });
    const marked = plan.processes.targets;
    for (const list of ['initContainers', 'containers'] as const) {
      if (!Array.isArray(spec[list])) continue;
      const containers = draft.array(spec, list);
      containers.forEach((item, i) => {
        const name = isObject(item) ? stringOf(item.name) : undefined;
        if (name === undefined || !marked.includes(name)) return;
        draft
          .array(draft.object(containers, i), 'volumeMounts')
          .push({ name: TARGET_MARKER_VOLUME, mountPath: targetMarkerPath(name), readOnly: true });
      });
    }
  }

  const sidecar: Sidecar = { plan, volumeMounts };
  const initContainers = draft.array(spec, 'initContainers');
  if (settings.sidecarMode === 'native') {
    initContainers.unshift(nativeSidecar(sidecar));
  } else {
    initContainers.unshift(legacyInitContainer(sidecar));
    draft.array(spec, 'containers').push(legacySidecar(sidecar));
  }
  draft.object(draft.object(pod, 'metadata'), 'annotations')[ANNOTATIONS.status] = STATUS_INJECTED;
  return pod;
}

export const PORT_NAME = 'reloader-http';

/**
 * The sidecar's process settings, in its container's env (the image is shared with the webhook, so not in the
 * image). Both keep the reloader near its idle footprint under large updates (docs/benchmarks.md):
 * - NODE_OPTIONS: V8's young generation otherwise grows to tens of MiB and keeps them;
 * - MALLOC_ARENA_MAX: glibc gives each thread that allocates (libuv's pool, V8's GC helpers) an arena of its own
 *   and keeps what they freed; two arenas hold about 3 MiB less after 1,000 updates of 512 KiB.
 */
export const RELOADER_ENV = {
  NODE_OPTIONS: '--max-semi-space-size=1',
  MALLOC_ARENA_MAX: '2',
} as const;

/** Seconds the native sidecar may take to make its first sync before the kubelet restarts it. */
export const STARTUP_SECONDS = 120;

/** The sidecar's input: the plan (its settings included), plus the mounts that buildPod made for it. */
interface Sidecar {
  plan: InjectionPlan;
  volumeMounts: JsonObject[];
}

/** The knobs that become a reloader argument one-to-one (knob-table.ts's `reloaderArg`). */
const ARG_KNOBS = KNOB_LIST.flatMap(({ reloaderArg }) => (reloaderArg !== undefined ? [reloaderArg] : []));

/** The reloader's command line; the image's entrypoint is the CLI, so `reloader` is the first argument. */
function reloaderArgs({ plan }: Sidecar): string[] {
  const { settings, sources } = plan;
  const args = [
    'reloader',
    `--listen=:${plan.port}`,
    ...[...sources.converted.map((c) => c.spec), ...sources.explicit].map(
      (source) => `--source=${formatSourceSpec(source)}`,
    ),
  ];
  if (plan.fsGroup !== undefined) args.push(`--fs-group=${plan.fsGroup}`);
  for (const { name, setting, requires } of ARG_KNOBS) {
    const value = settings[setting];
    if (value !== undefined && (requires === undefined || settings[requires] !== undefined))
      args.push(`--${name}=${String(value)}`);
  }
  // Only while the timestamp is the preset's own: how another metric behaves on an unchanged reload is unknown
  // (vmagent's relabel config, for one, advances it every time).
  const preset = settings.preset !== undefined ? PRESETS[settings.preset] : undefined;
  if (preset?.unchangedKeepsTimestamp && settings.timestampMetric === preset.timestampMetric)
    args.push('--confirm-unchanged-keeps-timestamp');
  for (const { container, objects } of plan.processes?.restarts ?? [])
    args.push(`--restart-on-change=${container}=${objects.join(',')}`);
  if (settings.events) args.push('--events');
  return args;
}

/** Passes the Pod Security Standard "restricted". */
export const SECURITY_CONTEXT = {
  runAsNonRoot: true,
  runAsUser: 65532,
  runAsGroup: 65532,
  allowPrivilegeEscalation: false,
  capabilities: { drop: ['ALL'] },
  seccompProfile: { type: 'RuntimeDefault' },
  readOnlyRootFilesystem: true,
} as const;

/**
 * SECURITY_CONTEXT, as the targets' user when the sidecar signals a container (process-targets.ts). The group stays
 * 65532: with the app's user and group the app could read the sidecar's /proc/PID/environ and /proc/PID/root, its
 * ServiceAccount token among them, while kill(2) needs only the user.
 */
function securityContext(plan: InjectionPlan): JsonObject {
  const context: JsonObject = cloneJson(SECURITY_CONTEXT);
  if (plan.processes !== undefined) context.runAsUser = plan.processes.uid;
  return context;
}

function container(name: string, sidecar: Sidecar, args: string[]): JsonObject {
  const { requests, limits } = sidecar.plan.settings.resources;
  const { image, imagePullPolicy } = sidecar.plan.settings;
  const resources: JsonObject = {};
  if (Object.keys(requests).length > 0) resources.requests = { ...requests };
  if (Object.keys(limits).length > 0) resources.limits = { ...limits };
  return {
    name,
    image,
    ...(imagePullPolicy !== undefined ? { imagePullPolicy } : {}),
    args,
    env: [
      {
        name: 'POD_NAMESPACE',
        valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } },
      },
      { name: 'POD_NAME', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.name' } } },
      // Only the Events the reloader records (--events) use it, as their involved object's uid.
      ...(sidecar.plan.settings.events
        ? [{ name: 'POD_UID', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.uid' } } }]
        : []),
      ...Object.entries(RELOADER_ENV).map(([name, value]) => ({ name, value })),
    ],
    resources,
    securityContext: securityContext(sidecar.plan),
    // The reloader logs why it failed; the kubelet shows that in the pod's status.
    terminationMessagePolicy: 'FallbackToLogsOnError',
    volumeMounts: cloneJson(sidecar.volumeMounts),
  };
}

function httpGet(path: string, port: number): JsonObject {
  return { path, port, scheme: 'HTTP' };
}

function withPortAndLiveness(result: JsonObject, { plan }: Sidecar): JsonObject {
  if (plan.declarePort) result.ports = [{ name: PORT_NAME, containerPort: plan.port, protocol: 'TCP' }];
  result.livenessProbe = {
    httpGet: httpGet('/healthz', plan.port),
    periodSeconds: 10,
    timeoutSeconds: 5,
    failureThreshold: 3,
  };
  return result;
}

/**
 * A native sidecar (Kubernetes 1.29+): the first init container, restartable. The kubelet starts the next init
 * container only when the startup probe passes, i.e. after the first sync, so the app never sees an empty directory.
 */
function nativeSidecar(sidecar: Sidecar): JsonObject {
  const result = withPortAndLiveness(container(SIDECAR_CONTAINER, sidecar, reloaderArgs(sidecar)), sidecar);
  result.restartPolicy = 'Always';
  result.startupProbe = {
    httpGet: httpGet('/readyz', sidecar.plan.port),
    periodSeconds: 1,
    timeoutSeconds: 1,
    failureThreshold: STARTUP_SECONDS,
  };
  return result;
}

/** Legacy mode, first part: an init container that syncs once and exits (init containers may have no probes). */
function legacyInitContainer(sidecar: Sidecar): JsonObject {
  return container(SIDECAR_INIT_CONTAINER, sidecar, [...reloaderArgs(sidecar), '--once']);
}

/** Legacy mode, second part: a regular container that keeps watching. */
function legacySidecar(sidecar: Sidecar): JsonObject {
  return withPortAndLiveness(container(SIDECAR_CONTAINER, sidecar, reloaderArgs(sidecar)), sidecar);
}
