/** Helpers for reading the pod as raw JSON: nothing here assumes a field has the type the API promises. */

export type JsonObject = Record<string, unknown>;

export function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The object elements of an array field (anything else in it is ignored); [] when the field is not an array. */
export function objectsOf(value: unknown): JsonObject[] {
  return Array.isArray(value) ? value.filter(isObject) : [];
}

export function stringOf(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

/**
 * Copy-on-write edits of a parsed JSON tree that must stay as it is. The first write access to `parent[key]`
 * replaces it with a shallow copy (of the object or array there, or a new empty one when it is missing or of
 * another type) and later accesses return that same copy; everything not on the way to a change stays shared
 * with the original. Spread defines an own "__proto__" key (JSON.parse makes one) as a key, not a prototype.
 */
export class CopyOnWrite {
  private readonly owned = new WeakSet<object>();

  /** A shallow copy of `root`, the one object written to directly. */
  root(original: JsonObject): JsonObject {
    return this.own({ ...original });
  }

  object(parent: JsonObject | unknown[], key: string | number): JsonObject {
    const current = (parent as JsonObject)[key];
    if (isObject(current) && this.owned.has(current)) return current;
    return ((parent as JsonObject)[key] = this.own(isObject(current) ? { ...current } : {}));
  }

  array(parent: JsonObject, key: string): unknown[] {
    const current = parent[key];
    if (Array.isArray(current) && this.owned.has(current)) return current;
    return (parent[key] = this.own(Array.isArray(current) ? [...(current as unknown[])] : []));
  }

  private own<T extends object>(value: T): T {
    this.owned.add(value);
    return value;
  }
}

/** A deep copy of a parsed JSON value; several times faster than structuredClone for plain objects. */
export function cloneJson<T>(value: T): T {
  if (typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) return value.map((v: unknown) => cloneJson(v)) as T;
  const out: JsonObject = {};
  for (const key of Object.keys(value)) {
    const v = cloneJson((value as JsonObject)[key]);
    // An own "__proto__" key (JSON.parse makes one) must stay a key, not become the clone's prototype.
    if (key === '__proto__')
      Object.defineProperty(out, key, { value: v, enumerable: true, writable: true, configurable: true });
    else out[key] = v;
  }
  return out as T;
}

/** Deep equality of JSON values (no cycles, no prototypes, no undefined-vs-missing subtleties worth more). */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!jsonEqual(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka)
    if (!Object.hasOwn(b, k) || !jsonEqual((a as JsonObject)[k], (b as JsonObject)[k])) return false;
  return true;
}
