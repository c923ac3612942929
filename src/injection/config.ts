/** Cluster-wide defaults of the injector; pod annotations override some of them (see docs/annotations.md). */
export interface InjectorConfig {
  /** The project's own image: the sidecar runs its `reloader` subcommand. */
  reloaderImage: string;
  imagePullPolicy?: 'Always' | 'IfNotPresent' | 'Never';
  /** `native`: a restartable init container (Kubernetes >= 1.29); `legacy`: a sync-once init container plus a regular container. */
  sidecarMode: 'native' | 'legacy';
  /** The sidecar's health/metrics port; the next free one is used when a container of the pod declares it. */
  port: number;
  resources: { cpuRequest?: string; cpuLimit?: string; memoryRequest?: string; memoryLimit?: string };
  /** `loopback`: a reload URL must point into the pod (127.0.0.0/8, ::1, localhost), so an annotation cannot make the sidecar call other services. */
  allowedReloadHosts: 'loopback' | 'any';
  reloaderLogLevel?: string;
}

export const DEFAULT_RELOADER_IMAGE = 'config-reloader-injector:0.1.0';
export const DEFAULT_RELOADER_PORT = 9533;

export const DEFAULT_INJECTOR_CONFIG: InjectorConfig = Object.freeze({
  reloaderImage: DEFAULT_RELOADER_IMAGE,
  sidecarMode: 'native',
  port: DEFAULT_RELOADER_PORT,
  // 128Mi holds the idle reloader (about 17 MiB anonymous, 64 MiB RSS), the peak of the largest object (22 MiB more)
  // and the files of memory-backed sources twice during a swap: Secrets up to 1 MiB and 1,000 keys, or one gunzip
  // source expanding to 40 MiB (the reloader derives its gunzip cap from this limit; docs/reloader.md#memory).
  resources: Object.freeze({ cpuRequest: '10m', memoryRequest: '48Mi', memoryLimit: '128Mi' }),
  allowedReloadHosts: 'loopback',
}) as InjectorConfig;

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const;
