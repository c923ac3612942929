import { KNOBS } from './knob-table.ts';

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

export { DEFAULT_RELOADER_IMAGE, DEFAULT_RELOADER_PORT } from './knob-table.ts';
export { LOG_LEVELS } from './knobs.ts';

/** The defaults of the knob table (src/injection/knob-table.ts). */
export const DEFAULT_INJECTOR_CONFIG: InjectorConfig = Object.freeze({
  reloaderImage: KNOBS.reloaderImage.default,
  sidecarMode: KNOBS.sidecarMode.default,
  port: KNOBS.port.default,
  resources: Object.freeze({
    cpuRequest: KNOBS.cpuRequest.default,
    memoryRequest: KNOBS.memoryRequest.default,
    memoryLimit: KNOBS.memoryLimit.default,
  }),
  allowedReloadHosts: 'loopback',
}) as InjectorConfig;
