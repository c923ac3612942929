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
