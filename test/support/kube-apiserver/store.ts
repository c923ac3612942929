import { randomUUID } from 'node:crypto';
import type { ResourceDef } from './resources.ts';
import { groupVersion } from './resources.ts';
import type { FieldManager } from './managed-fields.ts';
import { toSeconds, trackManagedFields } from './managed-fields.ts';
import {
  KubeError,
  alreadyExists,
  badRequest,
  conflict,
  expired,
  invalid,
  invalidCauses,
  notFound,
} from './status.ts';
import type { KubeObject } from './types.ts';

/** A change as etcd records it: the object after the change (for DELETED, the last state at the deletion's revision). */
export interface StoredEvent {
  rv: number;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  def: ResourceDef;
  object: KubeObject;
  /** The state before this change (absent for ADDED): lets a watch with a selector turn MODIFIED into ADDED/DELETED. */
  prev?: KubeObject;
}

export interface WriteOptions {
  dryRun?: boolean;
  /** Who writes, for managedFields (HTTP writes); the direct API passes none and tracks no fields. */
  manager?: FieldManager;
}

const SUBDOMAIN_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const SUBDOMAIN_WHY =
  "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_WHY =
  "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const GENERATE_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789';

function resourceKey(def: ResourceDef): string {
  return `${def.group}/${def.resource}`;
}

function objectKey(namespace: string | undefined, name: string): string {
  return `${namespace ?? ''}/${name}`;
}

function now(): string {
  return new Date().toISOString().replace(/\.\d+Z$/, 'Z');
}

function withoutRv(obj: KubeObject): string {
  const { resourceVersion: _rv, ...meta } = obj.metadata;
  return JSON.stringify({ ...obj, metadata: meta });
}

/**
 * Objects plus a global, etcd-like revision counter and a bounded history of changes, so that a watch can
 * resume from a recent resourceVersion and an old one is answered with 410 Gone, as the real server does.
 */
export class Store {
  /** The newest revision; every write increments it, like etcd's. */
  rv = 1;
  /** Watches and Exact lists may start at any revision >= this one; older ones are "compacted". */
  compactedRv = 1;
  readonly historySize: number;
  readonly #objects = new Map<string, Map<string, KubeObject>>();
  #history: StoredEvent[] = [];
  readonly #listeners = new Set<(ev: StoredEvent) => void>();

  constructor(historySize: number) {
    this.historySize = historySize;
  }

  subscribe(fn: (ev: StoredEvent) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  get(def: ResourceDef, namespace: string | undefined, name: string): KubeObject | undefined {
    return this.#table(def).get(objectKey(def.namespaced ? namespace : undefined, name));
  }

  /**
   * Current objects of one resource (optionally one namespace), sorted by namespace/name like an etcd range.
   * `shared`: the stored objects themselves, for a caller that only reads them (a list answer serializes a page
   * of them): copying every object of a large list for each page made paging through 50,000 pods take minutes.
   */
  list(def: ResourceDef, namespace?: string, shared = false): KubeObject[] {
    return this.#sorted(this.#table(def), namespace, shared);
  }

  /** The objects as they were at revision `rv`, rebuilt by undoing later history; 410 when history no longer reaches back. */
  listAt(
    def: ResourceDef,
    namespace: string | undefined,
    rv: number,
    tooOld: string,
    shared = false,
  ): KubeObject[] {
    if (rv < this.compactedRv) throw expired(tooOld);
    if (rv >= this.rv) return this.list(def, namespace, shared);
    const table = new Map(this.#table(def));
    for (let i = this.#history.length - 1; i >= 0; i--) {
      const ev = this.#history[i] as StoredEvent;
      if (ev.rv <= rv) break;
      if (ev.def !== def) continue;
      const key = objectKey(ev.object.metadata.namespace, ev.object.metadata.name);
      if (ev.prev) table.set(key, ev.prev);
      else table.delete(key);
    }
    return this.#sorted(table, namespace, shared);
  }

  /** Events after `rv` (exclusive), or an Expired error when some of them were compacted away. */
  eventsSince(rv: number): StoredEvent[] {
    if (rv < this.compactedRv) throw expired(`too old resource version: ${rv} (${this.compactedRv})`);
    const i = this.#history.findIndex((e) => e.rv > rv);
    return i < 0 ? [] : this.#history.slice(i);
  }

  create(def: ResourceDef, input: KubeObject, opts: WriteOptions = {}): KubeObject {
    const obj = structuredClone(input);
    obj.apiVersion = groupVersion(def);
    obj.kind = def.kind;
    const meta = obj.metadata;
    if (!def.namespaced) delete meta.namespace;
    if (!meta.name && typeof meta.generateName === 'string') meta.name = meta.generateName + randomSuffix();
    if (!meta.name)
      throw invalid(def.kind, '', 'metadata.name', '', 'name or generateName is required', def.group);
    this.#validateName(def, meta.name);
    if (meta.resourceVersion)
      throw new KubeError(500, 'InternalError', 'resourceVersion should not be set on objects to be created');
    if (this.get(def, meta.namespace, meta.name)) throw alreadyExists(def, meta.name);
    normalize(def, obj, undefined);
    meta.uid = randomUUID();
    meta.creationTimestamp = now();
    if (def.generation) meta.generation = 1;
    else delete meta.generation;
    trackManagedFields(obj, undefined, opts.manager, now());
    if (opts.dryRun) return obj;
    meta.resourceVersion = String(++this.rv);
    this.#table(def).set(objectKey(meta.namespace, meta.name), obj);
    this.#record({ rv: this.rv, type: 'ADDED', def, object: obj });
    return structuredClone(obj);
  }

  /** Replaces an object; a stale metadata.resourceVersion is a Conflict, and an update that changes nothing is a no-op (no new revision, no event), as in etcd3's GuaranteedUpdate. */
  update(def: ResourceDef, input: KubeObject, opts: WriteOptions = {}): KubeObject {
    const obj = structuredClone(input);
    obj.apiVersion = groupVersion(def);
    obj.kind = def.kind;
    const meta = obj.metadata;
    if (!def.namespaced) delete meta.namespace;
    const existing = this.get(def, meta.namespace, meta.name);
    if (!existing) throw notFound(def, meta.name);
    if (
      meta.resourceVersion !== undefined &&
      meta.resourceVersion !== '' &&
      meta.resourceVersion !== existing.metadata.resourceVersion
    )
      throw conflict(def, meta.name);
    if (meta.uid && meta.uid !== existing.metadata.uid)
      throw conflict(
        def,
        meta.name,
        `Precondition failed: UID in precondition: ${String(meta.uid)}, UID in object meta: ${String(existing.metadata.uid)}`,
      );
    meta.uid = existing.metadata.uid;
    meta.creationTimestamp = existing.metadata.creationTimestamp;
    for (const field of ['deletionTimestamp', 'deletionGracePeriodSeconds'] as const) {
      if (existing.metadata[field] === undefined) delete meta[field];
      else meta[field] = existing.metadata[field];
    }
    normalize(def, obj, existing);
    if (def.generation) {
      const before = Number(existing.metadata.generation ?? 1);
      const changed = JSON.stringify(obj[def.generation]) !== JSON.stringify(existing[def.generation]);
      meta.generation = changed ? before + 1 : before;
    } else delete meta.generation;
    trackManagedFields(obj, existing, opts.manager, now());
    meta.resourceVersion = existing.metadata.resourceVersion;
    if (withoutRv(obj) === withoutRv(existing)) return structuredClone(existing);
    if (opts.dryRun) return obj;
    meta.resourceVersion = String(++this.rv);
    this.#table(def).set(objectKey(meta.namespace, meta.name), obj);
    this.#record({ rv: this.rv, type: 'MODIFIED', def, object: obj, prev: existing });
    return structuredClone(obj);
  }

  delete(
    def: ResourceDef,
    namespace: string | undefined,
    name: string,
    opts: WriteOptions & { preconditions?: { uid?: string; resourceVersion?: string } } = {},
  ): KubeObject {
    const existing = this.get(def, namespace, name);
    if (!existing) throw notFound(def, name);
    const pre = opts.preconditions ?? {};
    if (pre.uid && pre.uid !== existing.metadata.uid)
      throw conflict(
        def,
        name,
        `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${String(existing.metadata.uid)}`,
      );
    if (pre.resourceVersion && pre.resourceVersion !== existing.metadata.resourceVersion)
      throw conflict(
        def,
        name,
        `Precondition failed: ResourceVersion in precondition: ${pre.resourceVersion}, ResourceVersion in object meta: ${String(existing.metadata.resourceVersion)}`,
      );
    if (opts.dryRun) return structuredClone(existing);
    if (def.resource === 'namespaces' && def.group === '') this.#deleteNamespaceContents(name);
    return this.#remove(def, existing);
  }

  /**
   * Removes a stored object with its DELETED event. A pod is deleted gracefully first, as the real server does
   * for a pod that no kubelet runs (not scheduled: grace period 0): a MODIFIED event sets deletionTimestamp,
   * deletionGracePeriodSeconds 0 and the next generation, then the DELETED event carries that state.
   */
  #remove(def: ResourceDef, existing: KubeObject): KubeObject {
    const key = objectKey(existing.metadata.namespace, existing.metadata.name);
    let last = existing;
    if (def.group === '' && def.resource === 'pods' && existing.metadata.deletionTimestamp === undefined) {
      const marked = structuredClone(existing);
      marked.metadata.deletionTimestamp = now();
      marked.metadata.deletionGracePeriodSeconds = 0;
      marked.metadata.generation = Number(existing.metadata.generation ?? 1) + 1;
      marked.metadata.resourceVersion = String(++this.rv);
      this.#table(def).set(key, marked);
      this.#record({ rv: this.rv, type: 'MODIFIED', def, object: marked, prev: existing });
      last = marked;
    }
    const gone = structuredClone(last);
    gone.metadata.resourceVersion = String(++this.rv);
    this.#table(def).delete(key);
    this.#record({ rv: this.rv, type: 'DELETED', def, object: gone, prev: last });
    return structuredClone(gone);
  }

  /** Forgets the history: any watch or Exact list from an older revision now gets 410 Gone. */
  compact(): void {
    this.#history = [];
    this.compactedRv = this.rv;
  }

  #deleteNamespaceContents(namespace: string): void {
    for (const [, table] of this.#objects) {
      for (const obj of [...table.values()]) {
        if (obj.metadata.namespace !== namespace) continue;
        this.#remove(this.#defs.get(table) as ResourceDef, obj);
      }
    }
  }

  readonly #defs = new Map<Map<string, KubeObject>, ResourceDef>();

  #table(def: ResourceDef): Map<string, KubeObject> {
    const key = resourceKey(def);
    let table = this.#objects.get(key);
    if (!table) {
      table = new Map();
      this.#objects.set(key, table);
      this.#defs.set(table, def);
    }
    return table;
  }

  #sorted(table: Map<string, KubeObject>, namespace: string | undefined, shared: boolean): KubeObject[] {
    const sorted = [...table.entries()]
      .filter(([, o]) => namespace === undefined || o.metadata.namespace === namespace)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return sorted.map(([, o]) => (shared ? o : structuredClone(o)));
  }

  #record(ev: StoredEvent): void {
    this.#history.push(ev);
    if (this.#history.length > this.historySize) {
      const dropped = this.#history.shift() as StoredEvent;
      this.compactedRv = dropped.rv;
    }
    for (const fn of this.#listeners) fn(ev);
  }

  #validateName(def: ResourceDef, name: string): void {
    const ok = def.labelName
      ? LABEL_RE.test(name) && name.length <= 63
      : SUBDOMAIN_RE.test(name) && name.length <= 253;
    if (!ok)
      throw invalid(
        def.kind,
        name,
        'metadata.name',
        name,
        def.labelName ? LABEL_WHY : SUBDOMAIN_WHY,
        def.group,
      );
  }
}

/** The keys a typed Secret must have (validation.ValidateSecret; kubernetes.io/tls is the type our code writes). */
const REQUIRED_SECRET_KEYS: Record<string, string[]> = {
  'kubernetes.io/tls': ['tls.crt', 'tls.key'],
  'kubernetes.io/dockerconfigjson': ['.dockerconfigjson'],
  'kubernetes.io/ssh-auth': ['ssh-privatekey'],
};

function validateSecretType(obj: KubeObject, data: Record<string, string>): void {
  const missing = (REQUIRED_SECRET_KEYS[String(obj.type)] ?? []).filter((k) => !(k in data));
  if (missing.length > 0)
    throw invalidCauses(
      'Secret',
      obj.metadata.name,
      missing.map((k) => ({ reason: 'FieldValueRequired', message: 'Required value', field: `data[${k}]` })),
    );
}

/** admissionregistration/v1 defaults (SetDefaults_MutatingWebhook, SetDefaults_Rule, SetDefaults_ServiceReference). */
function defaultWebhooks(obj: KubeObject): void {
  if (!Array.isArray(obj.webhooks)) return;
  for (const hook of obj.webhooks as Array<Record<string, unknown>>) {
    if (typeof hook !== 'object' || hook === null) continue;
    hook.failurePolicy ??= 'Fail';
    hook.matchPolicy ??= 'Equivalent';
    hook.namespaceSelector ??= {};
    hook.objectSelector ??= {};
    hook.timeoutSeconds ??= 10;
    if (obj.kind === 'MutatingWebhookConfiguration') hook.reinvocationPolicy ??= 'Never';
    if (Array.isArray(hook.rules))
      for (const rule of hook.rules as Array<Record<string, unknown>>) rule.scope ??= '*';
    const service = (hook.clientConfig as { service?: Record<string, unknown> } | undefined)?.service;
    if (service) service.port ??= 443;
  }
}

function randomSuffix(): string {
  let s = '';
  for (let i = 0; i < 5; i++) s += GENERATE_ALPHABET[Math.floor(Math.random() * GENERATE_ALPHABET.length)];
  return s;
}

/**
 * A Lease's acquireTime and renewTime are metav1.MicroTime, decoded with the layout 2006-01-02T15:04:05.000000Z07:00:
 * exactly six fractional digits (what toISOString's three digits fail with, as on the real server).
 */
function checkLeaseTimes(obj: KubeObject): void {
  const spec = (obj.spec ?? {}) as Record<string, unknown>;
  for (const field of ['acquireTime', 'renewTime']) {
    const value = spec[field];
    if (value === undefined || value === null) continue;
    const text = String(value);
    const m = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(.*)$/.exec(text);
    if (m && /^\.\d{6}(Z|[+-]\d{2}:\d{2})$/.test(m[1] as string)) continue;
    throw badRequest(
      `Lease in version "v1" cannot be handled as a Lease: parsing time ${JSON.stringify(text)} as "2006-01-02T15:04:05.000000Z07:00": cannot parse ${JSON.stringify(m ? m[1] : text)} as ".000000"`,
    );
  }
}

/** What the real server's defaulting, conversion and validation do on write, for the kinds where it matters. */
function normalize(def: ResourceDef, obj: KubeObject, existing: KubeObject | undefined): void {
  if (def.group === 'admissionregistration.k8s.io') return defaultWebhooks(obj);
  if (def.group === 'coordination.k8s.io') return checkLeaseTimes(obj);
  if (def.group !== '') return;
  if (def.resource === 'secrets') {
    const data = { ...((obj.data as Record<string, string> | undefined) ?? {}) };
    for (const v of Object.values(data)) {
      if (typeof v !== 'string' || !BASE64_RE.test(v))
        throw badRequest(
          `Secret in version "v1" cannot be handled as a Secret: illegal base64 data at input byte 0`,
        );
    }
    const stringData = obj.stringData as Record<string, string> | undefined;
    if (stringData)
      for (const [k, v] of Object.entries(stringData)) data[k] = Buffer.from(String(v)).toString('base64');
    delete obj.stringData;
    if (Object.keys(data).length > 0) obj.data = data;
    else delete obj.data;
    obj.type ??= existing?.type ?? 'Opaque';
    validateSecretType(obj, data);
  } else if (def.resource === 'events') {
    // metav1.Time has second precision; eventTime (a MicroTime without omitempty) is null when unset.
    for (const field of ['firstTimestamp', 'lastTimestamp'] as const)
      if (typeof obj[field] === 'string') obj[field] = toSeconds(obj[field]);
    obj.eventTime ??= null;
  } else if (def.resource === 'namespaces') {
    obj.spec ??= { finalizers: ['kubernetes'] };
    obj.status ??= { phase: 'Active' };
    obj.metadata.labels = {
      ...((obj.metadata.labels as Record<string, string> | undefined) ?? {}),
      'kubernetes.io/metadata.name': obj.metadata.name,
    };
  }
}
