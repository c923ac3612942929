/** The pod annotations this project reads and writes; docs/annotations.md describes each one. */

export const ANNOTATION_PREFIX = 'config-reloader.io/';

export const ANNOTATIONS = {
  inject: 'config-reloader.io/inject',
  status: 'config-reloader.io/status',
  volumes: 'config-reloader.io/volumes',
  secrets: 'config-reloader.io/secrets',
  configmaps: 'config-reloader.io/configmaps',
  mountPath: 'config-reloader.io/mount-path',
  containers: 'config-reloader.io/containers',
  reloadUrl: 'config-reloader.io/reload-url',
  reloadMethod: 'config-reloader.io/reload-method',
  sidecarMode: 'config-reloader.io/sidecar-mode',
  port: 'config-reloader.io/port',
  cpuRequest: 'config-reloader.io/cpu-request',
  cpuLimit: 'config-reloader.io/cpu-limit',
  memoryRequest: 'config-reloader.io/memory-request',
  memoryLimit: 'config-reloader.io/memory-limit',
  gunzip: 'config-reloader.io/gunzip',
  logLevel: 'config-reloader.io/log-level',
} as const;

export const STATUS_INJECTED = 'injected';

/** Names of everything injection adds to a pod; a pod that already has one of them but no status annotation is denied. */
export const SIDECAR_CONTAINER = 'config-reloader';
export const SIDECAR_INIT_CONTAINER = 'config-reloader-init';
export const SHARED_VOLUME = 'config-reloader';
export const TOKEN_VOLUME = 'config-reloader-api-access';

export const DEFAULT_MOUNT_PATH = '/etc/config-reloader';

/** The string-valued annotations of a raw pod's metadata (other values are ignored, as the API server would reject them). */
export function readAnnotations(metadata: unknown): Map<string, string> {
  const result = new Map<string, string>();
  if (typeof metadata !== 'object' || metadata === null) return result;
  const annotations = (metadata as Record<string, unknown>).annotations;
  if (typeof annotations !== 'object' || annotations === null || Array.isArray(annotations)) return result;
  for (const [key, value] of Object.entries(annotations)) {
    if (typeof value === 'string') result.set(key, value);
  }
  return result;
}

/** A comma-separated annotation list: trimmed, empty entries dropped, duplicates removed. */
export function parseList(value: string | undefined): string[] {
  if (value === undefined) return [];
  return [
    ...new Set(
      value
        .split(',')
        .map((part) => part.trim())
        .filter((part) => part.length > 0),
    ),
  ];
}
