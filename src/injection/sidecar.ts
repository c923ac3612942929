import { SIDECAR_CONTAINER, SIDECAR_INIT_CONTAINER } from './annotations.ts';
import { cloneJson, type JsonObject } from './json.ts';
import type { ReloadMethod } from './reload-url.ts';
import { formatSourceSpec, type SourceSpec } from '../shared/source-spec.ts';

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

export interface SidecarSpec {
  image: string;
  imagePullPolicy?: string;
  port: number;
  /** Declare the port (with its name) on the container; off when the name is taken in the pod. */
  declarePort: boolean;
  sources: SourceSpec[];
  reloadUrl?: string;
  reloadMethod: ReloadMethod;
  logLevel?: string;
  /** The pod's fsGroup: the reloader gives the files it writes this group and group-read, as the kubelet does. */
  fsGroup?: number;
  resources: { requests: Record<string, string>; limits: Record<string, string> };
  volumeMounts: JsonObject[];
}

/** The reloader's command line; the image's entrypoint is the CLI, so `reloader` is the first argument. */
export function reloaderArgs(spec: SidecarSpec): string[] {
  const args = [
    'reloader',
    `--listen=:${spec.port}`,
    ...spec.sources.map((source) => `--source=${formatSourceSpec(source)}`),
  ];
  if (spec.fsGroup !== undefined) args.push(`--fs-group=${spec.fsGroup}`);
  if (spec.reloadUrl !== undefined)
    args.push(`--reload-url=${spec.reloadUrl}`, `--reload-method=${spec.reloadMethod}`);
  if (spec.logLevel !== undefined) args.push(`--log-level=${spec.logLevel}`);
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

function container(name: string, spec: SidecarSpec, args: string[]): JsonObject {
  const resources: JsonObject = {};
  if (Object.keys(spec.resources.requests).length > 0) resources.requests = { ...spec.resources.requests };
  if (Object.keys(spec.resources.limits).length > 0) resources.limits = { ...spec.resources.limits };
  return {
    name,
    image: spec.image,
    ...(spec.imagePullPolicy !== undefined ? { imagePullPolicy: spec.imagePullPolicy } : {}),
    args,
    env: [
      {
        name: 'POD_NAMESPACE',
        valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } },
      },
      { name: 'POD_NAME', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.name' } } },
      ...Object.entries(RELOADER_ENV).map(([name, value]) => ({ name, value })),
    ],
    resources,
    securityContext: cloneJson(SECURITY_CONTEXT),
    // The reloader logs why it failed; the kubelet shows that in the pod's status.
    terminationMessagePolicy: 'FallbackToLogsOnError',
    volumeMounts: cloneJson(spec.volumeMounts),
  };
}

function httpGet(path: string, port: number): JsonObject {
  return { path, port, scheme: 'HTTP' };
}

function withPortAndLiveness(result: JsonObject, spec: SidecarSpec): JsonObject {
  if (spec.declarePort) result.ports = [{ name: PORT_NAME, containerPort: spec.port, protocol: 'TCP' }];
  result.livenessProbe = {
    httpGet: httpGet('/healthz', spec.port),
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
export function nativeSidecar(spec: SidecarSpec): JsonObject {
  const result = withPortAndLiveness(container(SIDECAR_CONTAINER, spec, reloaderArgs(spec)), spec);
  result.restartPolicy = 'Always';
  result.startupProbe = {
    httpGet: httpGet('/readyz', spec.port),
    periodSeconds: 1,
    timeoutSeconds: 1,
    failureThreshold: STARTUP_SECONDS,
  };
  return result;
}

/** Legacy mode, first part: an init container that syncs once and exits (init containers may have no probes). */
export function legacyInitContainer(spec: SidecarSpec): JsonObject {
  return container(SIDECAR_INIT_CONTAINER, spec, [...reloaderArgs(spec), '--once']);
}

/** Legacy mode, second part: a regular container that keeps watching. */
export function legacySidecar(spec: SidecarSpec): JsonObject {
  return withPortAndLiveness(container(SIDECAR_CONTAINER, spec, reloaderArgs(spec)), spec);
}
