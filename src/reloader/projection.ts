import { cleanItemPath, DEFAULT_FILE_MODE, type SourceSpec } from '../shared/source-spec.ts';

/**
 * A file's content: its bytes, or a key's value as the API sent it (base64, or ConfigMap text), which the writer
 * decodes only while it hashes or writes that one file, so that no decoded copy of the whole object is held.
 */
export type Content = Buffer | { base64: string } | { text: string };

export interface PayloadFile {
  data: Content;
  mode: number;
  /** The content is gzip: the file holds it decompressed, streamed to disk by the writer. `key` names it in errors. */
  gunzip?: { key: string };
}

/** What goes into a source's directory: relative path → content and mode. */
export type Payload = Map<string, PayloadFile>;

/** The parts of a Secret or ConfigMap the reloader reads. */
export interface KubeObject {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string; uid?: string };
  data?: Record<string, string> | null;
  binaryData?: Record<string, string> | null;
}

/** The object cannot be projected as the source asks (a missing item key, a bad gzip key); names keys, never values. */
export class ProjectionError extends Error {}

const MiB = 1024 * 1024;
/** The most a source's gunzipped keys may decompress to, together, when no memory limit applies. */
export const MAX_GUNZIP_BYTES = 64 * MiB;
/** The least, however small the memory limit: small compressed configs keep working. */
export const MIN_GUNZIP_BYTES = 1 * MiB;
/**
 * What the sidecar needs under its memory limit besides gunzipped files: about 17 MiB idle, up to 22 MiB more
 * while it handles the largest objects it is sized for (docs/reloader.md, Memory), and room for the pages of
 * the Node binary it runs.
 */
export const GUNZIP_RESERVE_BYTES = 48 * MiB;

/**
 * The cap on what each gunzip source's keys decompress to, together. Decompressed data goes straight to the
 * files and costs no process memory, but in a `medium: Memory` emptyDir the files are charged to the sidecar's
 * memory limit, twice while a source swaps versions (the old and the new both exist). So the cap follows the
 * limit: what is left of it after the reserve, halved, shared by the gunzip sources; 64 MiB without a limit.
 * A 128Mi limit lets one gunzip source expand to 40 MiB; 96Mi, to 24 MiB.
 */
export function gunzipCap(memoryLimitBytes: number | undefined, gunzipSources: number): number {
  // process.constrainedMemory() is 0, or 2^64, when nothing limits the process.
  if (!memoryLimitBytes || memoryLimitBytes >= Number.MAX_SAFE_INTEGER || gunzipSources < 1)
    return MAX_GUNZIP_BYTES;
  const share = Math.floor((memoryLimitBytes - GUNZIP_RESERVE_BYTES) / (2 * gunzipSources));
  return Math.min(MAX_GUNZIP_BYTES, Math.max(MIN_GUNZIP_BYTES, share));
}

/** The bytes of a content (a decoded copy for an API value). */
export function contentBytes(content: Content): Buffer {
  if (Buffer.isBuffer(content)) return content;
  return 'base64' in content ? Buffer.from(content.base64, 'base64') : Buffer.from(content.text, 'utf8');
}

/** What a value is, for an error message: its type, never its content. */
function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

/**
 * The string values of `data` or `binaryData`, checked: the API holds strings there, but a server that does not
 * conform may send anything. A value of another type is an error naming the key and the type, never the value
 * (Node's own errors would quote it: "Received type number (12345)").
 */
function stringValues(field: 'data' | 'binaryData', values: unknown): Array<[string, string]> {
  if (values === undefined || values === null) return [];
  if (typeof values !== 'object' || Array.isArray(values))
    throw new ProjectionError(`${field} is ${typeName(values)}, not a map of keys to values`);
  const entries = Object.entries(values as Record<string, unknown>);
  for (const [key, value] of entries) {
    if (typeof value !== 'string')
      throw new ProjectionError(
        `key "${key}"${field === 'data' ? '' : ` in ${field}`} holds ${typeName(value)}, not a string`,
      );
  }
  return entries as Array<[string, string]>;
}

/** Every key of the object with its value: Secret `data` is base64; ConfigMap `data` is text, `binaryData` base64. */
function keysOf(kind: SourceSpec['kind'], object: KubeObject): Map<string, Content> {
  const keys = new Map<string, Content>();
  for (const [key, value] of stringValues('data', object.data))
    keys.set(key, kind === 'secret' ? { base64: value } : { text: value });
  if (kind === 'configmap') {
    for (const [key, value] of stringValues('binaryData', object.binaryData))
      keys.set(key, { base64: value });
  }
  return keys;
}

/** A gzip member starts with 1f 8b 08; anything else is refused here, the rest is checked while it is decompressed. */
function checkGzipHeader(key: string, content: Content): void {
  const head =
    Buffer.isBuffer(content) || 'text' in content
      ? contentBytes(content).subarray(0, 3)
      : Buffer.from(content.base64.slice(0, 4), 'base64');
  if (head.length < 3 || head[0] !== 0x1f || head[1] !== 0x8b || head[2] !== 0x08)
    throw new ProjectionError(`key "${key}" is not valid gzip`);
}

function put(payload: Payload, path: string, file: PayloadFile, key: string): void {
  if (path.startsWith('..') || path.split('/').some((p) => p === '' || p === '..')) {
    throw new ProjectionError(
      `key "${key}" would be written to "${path}", which is not a plain relative path`,
    );
  }
  if (payload.has(path)) throw new ProjectionError(`two keys would be written to the same path "${path}"`);
  payload.set(path, file);
}

/**
 * An item at the path the kubelet writes it to: path.Clean of the path it names (`./config.yaml` →
 * `config.yaml`), the last of several items at one path winning, as in the kubelet's payload map. A path the
 * kubelet would refuse never gets here: parseSourceSpec refuses it (itemPathProblem), as the webhook does.
 */
function putItem(payload: Payload, path: string, file: PayloadFile, key: string): void {
  const clean = cleanItemPath(path);
  if (clean === '.' || clean.startsWith('..'))
    throw new ProjectionError(
      `item "${key}" names the path "${path}", which the kubelet would not write either`,
    );
  payload.delete(clean); // the last one wins, and takes its place in the order
  payload.set(clean, file);
}

/**
 * The files of a source for one version of its object, as the kubelet projects a volume: every key at its
 * own name, or only the listed items at their paths; item mode, else defaultMode, else 0644. With gunzip,
 * keys ending in `.gz` are marked for decompression (and lose the suffix when written under their own name).
 * Values stay as the API sent them: the writer decodes one file at a time.
 */
export function projectObject(spec: SourceSpec, object: KubeObject): Payload {
  const keys = keysOf(spec.kind, object);
  const defaultMode = spec.defaultMode ?? DEFAULT_FILE_MODE;
  const payload: Payload = new Map();
  const file = (key: string, data: Content, mode: number): PayloadFile => {
    if (!spec.gunzip || !key.endsWith('.gz')) return { data, mode };
    checkGzipHeader(key, data);
    return { data, mode, gunzip: { key } };
  };
  if (spec.items) {
    const missing: string[] = [];
    for (const item of spec.items) {
      const data = keys.get(item.key);
      if (data === undefined) {
        if (!spec.optional) missing.push(item.key);
        continue;
      }
      putItem(payload, item.path, file(item.key, data, item.mode ?? defaultMode), item.key);
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
    put(payload, path, file(key, data, defaultMode), key);
  }
  return payload;
}
