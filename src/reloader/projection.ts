import { DEFAULT_FILE_MODE, type SourceSpec } from '../shared/source-spec.ts';

/** What goes into a source's directory: relative path → bytes and mode. */
export type Payload = Map<string, { data: Buffer; mode: number }>;

/** The parts of a Secret or ConfigMap the reloader reads. */
export interface KubeObject {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string; uid?: string };
  data?: Record<string, string> | null;
  binaryData?: Record<string, string> | null;
}

/** The object cannot be projected as the source asks (a missing item key, a bad gzip key); names keys, never values. */
export class ProjectionError extends Error {}

/** Decompressed keys may not grow past this (a gzip bomb in a ConfigMap must not take the pod down). */
export const MAX_GUNZIPPED_BYTES = 64 * 1024 * 1024;

/** Every key of the object with its bytes: Secret `data` is base64; ConfigMap `data` is text, `binaryData` base64. */
function keysOf(kind: SourceSpec['kind'], object: KubeObject): Map<string, Buffer> {
  const keys = new Map<string, Buffer>();
  for (const [key, value] of Object.entries(object.data ?? {})) {
    keys.set(key, kind === 'secret' ? Buffer.from(value, 'base64') : Buffer.from(value, 'utf8'));
  }
  if (kind === 'configmap') {
    for (const [key, value] of Object.entries(object.binaryData ?? {}))
      keys.set(key, Buffer.from(value, 'base64'));
  }
  return keys;
}

function gunzip(key: string, data: Buffer): Buffer {
  try {
    // Loaded on first use: most sidecars never gunzip, and zlib costs memory in every pod.
    return process.getBuiltinModule('node:zlib').gunzipSync(data, { maxOutputLength: MAX_GUNZIPPED_BYTES });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ProjectionError(
      code === 'ERR_BUFFER_TOO_LARGE'
        ? `key "${key}" decompresses to more than ${MAX_GUNZIPPED_BYTES} bytes`
        : `key "${key}" is not valid gzip`,
    );
  }
}

function put(payload: Payload, path: string, data: Buffer, mode: number, key: string): void {
  if (path.startsWith('..') || path.split('/').some((p) => p === '' || p === '..')) {
    throw new ProjectionError(
      `key "${key}" would be written to "${path}", which is not a plain relative path`,
    );
  }
  if (payload.has(path)) throw new ProjectionError(`two keys would be written to the same path "${path}"`);
  payload.set(path, { data, mode });
}

/**
 * The files of a source for one version of its object, as the kubelet projects a volume: every key at its
 * own name, or only the listed items at their paths; item mode, else defaultMode, else 0644. With gunzip,
 * keys ending in `.gz` are decompressed (and lose the suffix when written under their own name).
 */
export function projectObject(spec: SourceSpec, object: KubeObject): Payload {
  const keys = keysOf(spec.kind, object);
  const defaultMode = spec.defaultMode ?? DEFAULT_FILE_MODE;
  const payload: Payload = new Map();
  const unzip = (key: string, data: Buffer): Buffer =>
    spec.gunzip && key.endsWith('.gz') ? gunzip(key, data) : data;
  if (spec.items) {
    const missing: string[] = [];
    for (const item of spec.items) {
      const data = keys.get(item.key);
      if (data === undefined) {
        if (!spec.optional) missing.push(item.key);
        continue;
      }
      put(payload, item.path, unzip(item.key, data), item.mode ?? defaultMode, item.key);
    }
    if (missing.length > 0) {
      throw new ProjectionError(
        `the object has no key ${missing.map((k) => `"${k}"`).join(', ')} named in item=`,
      );
    }
    return payload;
  }
  for (const [key, data] of keys) {
    const path = spec.gunzip && key.endsWith('.gz') ? key.slice(0, -3) : key;
    put(payload, path, unzip(key, data), defaultMode, key);
  }
  return payload;
}
