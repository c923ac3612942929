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

/** The object at `obj[key]`, created (as `{}`) when missing or not an object. */
export function objectAt(obj: JsonObject, key: string): JsonObject {
  const current = obj[key];
  if (isObject(current)) return current;
  const created: JsonObject = {};
  obj[key] = created;
  return created;
}

/** The array at `obj[key]`, created when missing or not an array. */
export function arrayAt(obj: JsonObject, key: string): unknown[] {
  const current = obj[key];
  if (Array.isArray(current)) return current;
  const created: unknown[] = [];
  obj[key] = created;
  return created;
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
