import type { KubeObject } from './types.ts';

/**
 * `metadata.managedFields`, as the real server's field manager keeps it for writes made over HTTP: one entry per
 * manager and operation, holding the fields that manager set (FieldsV1), the time its set last changed, sorted
 * like the real server sorts them. A manager is `?fieldManager=`, else the User-Agent up to its first `/`, else
 * `unknown`.
 *
 * Without the OpenAPI schema the field paths are an approximation that is exact for flat kinds (Secret, ConfigMap,
 * Namespace, Event, MutatingWebhookConfiguration): string maps (labels, annotations, data, ...) are granular with
 * a `.` entry for the map itself, known atomic fields (label selectors, rules, involvedObject) are one leaf, lists
 * of named objects are keyed by `k:{"name":...}`, other lists are atomic, and structs nested below the top get a
 * `.` entry. Pods differ in detail (containers' volumeMounts are keyed by mountPath in the real schema, and fields
 * added by admission are owned by the request's manager here).
 */

export interface FieldManager {
  manager: string;
  operation: 'Update' | 'Apply';
  /** For Apply: the applied configuration, whose fields the manager owns. */
  applied?: unknown;
}

interface Entry {
  manager: string;
  operation: string;
  apiVersion: string;
  time: string;
  fieldsType: 'FieldsV1';
  fieldsV1: Record<string, unknown>;
  subresource?: string;
}

const MAP_FIELDS = new Set(['labels', 'annotations', 'data', 'binaryData', 'stringData', 'nodeSelector']);
const ATOMIC_FIELDS = new Set([
  'involvedObject',
  'related',
  'namespaceSelector',
  'objectSelector',
  'selector',
  'rules',
]);
const SKIPPED_TOP = new Set(['apiVersion', 'kind', 'status']);
const SKIPPED_METADATA = new Set([
  'name',
  'namespace',
  'uid',
  'resourceVersion',
  'generation',
  'creationTimestamp',
  'deletionTimestamp',
  'deletionGracePeriodSeconds',
  'managedFields',
  'selfLink',
]);
/** Path segments are joined with a character no field name has. */
const SEP = '\u0000';
const MAX_MANAGER_LENGTH = 128;

const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** The manager of a request, as the real server names it. */
export function managerName(fieldManager: string | null, userAgent: string | undefined): string {
  if (fieldManager) return fieldManager;
  const prefix = (userAgent ?? '').split('/')[0] ?? '';
  return prefix === '' ? 'unknown' : prefix.slice(0, MAX_MANAGER_LENGTH);
}

/** metav1.Time has second precision: "2026-01-02T03:04:05.678Z" becomes "2026-01-02T03:04:05Z". */
export function toSeconds(time: string): string {
  return time.replace(/\.\d+Z$/, 'Z');
}

/** The fields of an object with a fingerprint of each leaf's value (markers `.` have none), by joined path. */
function fieldsOf(obj: KubeObject): Map<string, string> {
  const out = new Map<string, string>();
  for (const [k, v] of Object.entries(obj)) {
    if (SKIPPED_TOP.has(k) || v === undefined || v === null) continue;
    // A namespace's spec.finalizers is set by the server's strategy, not by the writer.
    if (k === 'spec' && obj.kind === 'Namespace' && obj.apiVersion === 'v1') continue;
    if (k === 'metadata' && isObj(v)) {
      const meta = Object.fromEntries(Object.entries(v).filter(([mk]) => !SKIPPED_METADATA.has(mk)));
      walk(meta, ['f:metadata'], out, 0);
    } else walk({ [k]: v }, [], out, 0);
  }
  return out;
}

function walk(obj: Record<string, unknown>, prefix: string[], out: Map<string, string>, depth: number): void {
  for (const [k, v] of Object.entries(obj)) {
    if (v === undefined || v === null) continue;
    const path = [...prefix, `f:${k}`];
    if (MAP_FIELDS.has(k) && isObj(v)) {
      out.set([...path, '.'].join(SEP), '');
      for (const [mk, mv] of Object.entries(v)) out.set([...path, `f:${mk}`].join(SEP), JSON.stringify(mv));
    } else if (Array.isArray(v) && !ATOMIC_FIELDS.has(k) && v.length > 0 && v.every(named)) {
      out.set([...path, '.'].join(SEP), '');
      for (const item of v as Array<Record<string, unknown>>) {
        const itemPath = [...path, `k:${JSON.stringify({ name: item.name })}`];
        out.set([...itemPath, '.'].join(SEP), '');
        walk(item, itemPath, out, depth + 1);
      }
    } else if (isObj(v) && !ATOMIC_FIELDS.has(k) && Object.keys(v).length > 0) {
      if (depth > 0) out.set([...path, '.'].join(SEP), '');
      walk(v, path, out, depth + 1);
    } else out.set(path.join(SEP), JSON.stringify(v));
  }
}

function named(item: unknown): boolean {
  return isObj(item) && typeof item.name === 'string';
}

/** The paths of a FieldsV1 document. */
function pathsOf(fields: unknown, prefix: string[] = [], out = new Set<string>()): Set<string> {
  if (!isObj(fields)) return out;
  for (const [k, v] of Object.entries(fields)) {
    const path = [...prefix, k];
    if (isObj(v) && Object.keys(v).length > 0) pathsOf(v, path, out);
    else out.add(path.join(SEP));
  }
  return out;
}

function toFieldsV1(paths: Iterable<string>): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  for (const path of [...paths].sort()) {
    let node = root;
    for (const seg of path.split(SEP)) {
      node[seg] ??= {};
      node = node[seg] as Record<string, unknown>;
    }
  }
  return root;
}

/** Incoming entries as the server would decode them: well-formed ones only, times at second precision. */
function decodeEntries(value: unknown): Entry[] {
  if (!Array.isArray(value)) return [];
  return value
    .filter((e): e is Entry => isObj(e) && typeof e.manager === 'string' && e.manager !== '')
    .map((e) => ({ ...e, ...(typeof e.time === 'string' ? { time: toSeconds(e.time) } : {}) }));
}

/** The real server's order: Apply before Update, then older first, then by manager, apiVersion, subresource. */
function compareEntries(a: Entry, b: Entry): number {
  const keys = (e: Entry): string[] => [
    e.operation,
    e.time ?? '',
    e.manager,
    e.apiVersion,
    e.subresource ?? '',
  ];
  const [ka, kb] = [keys(a), keys(b)];
  for (let i = 0; i < ka.length; i++) {
    if ((ka[i] as string) < (kb[i] as string)) return -1;
    if ((ka[i] as string) > (kb[i] as string)) return 1;
  }
  return 0;
}

/**
 * Sets `obj.metadata.managedFields` for a write of `obj` (already defaulted) over `live` (undefined for a
 * create). Entries sent in the request replace the live ones when they are a non-empty list (`[{}]` clears
 * them); otherwise the live ones carry over. With a manager, the fields this write changed move to its entry.
 */
export function trackManagedFields(
  obj: KubeObject,
  live: KubeObject | undefined,
  who: FieldManager | undefined,
  now: string,
): void {
  const meta = obj.metadata;
  const sent = meta.managedFields;
  let entries =
    Array.isArray(sent) && sent.length > 0
      ? decodeEntries(sent)
      : decodeEntries(live?.metadata.managedFields ?? []);
  if (who) {
    const after = fieldsOf(obj);
    const before = live ? fieldsOf(live) : new Map<string, string>();
    const changed = new Set<string>();
    if (who.operation === 'Apply' && isObj(who.applied)) {
      for (const path of fieldsOf(who.applied as KubeObject).keys()) if (after.has(path)) changed.add(path);
    } else {
      for (const [path, value] of after) if (before.get(path) !== value) changed.add(path);
    }
    const removed = [...before.keys()].filter((path) => !after.has(path));
    const apiVersion = obj.apiVersion;
    let mine: Entry | undefined;
    const next: Entry[] = [];
    for (const entry of entries) {
      if (entry.manager === who.manager && entry.operation === who.operation && !entry.subresource) {
        mine = entry;
        continue;
      }
      const owned = pathsOf(entry.fieldsV1);
      const kept = [...owned].filter((p) => !changed.has(p) && !removed.includes(p));
      if (kept.length === owned.size) next.push(entry);
      else if (kept.length > 0) next.push({ ...entry, fieldsV1: toFieldsV1(kept) });
    }
    if (changed.size > 0 || mine) {
      const owned = new Set([...pathsOf(mine?.fieldsV1), ...changed]);
      for (const p of removed) owned.delete(p);
      if (owned.size > 0) {
        const unchanged = mine !== undefined && changed.size === 0 && removed.length === 0;
        next.push(
          unchanged
            ? (mine as Entry)
            : {
                manager: who.manager,
                operation: who.operation,
                apiVersion,
                time: changed.size > 0 || !mine ? now : mine.time,
                fieldsType: 'FieldsV1',
                fieldsV1: toFieldsV1(owned),
              },
        );
      }
    }
    entries = next.sort(compareEntries);
  }
  if (entries.length > 0) meta.managedFields = entries;
  else delete meta.managedFields;
}
