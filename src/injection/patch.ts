import { jsonEqual } from './json.ts';
import jsonPatch from 'fast-json-patch';
import type { Operation } from 'fast-json-patch';

/**
 * The RFC 6902 patch from the pod as received to the mutated clone. Unlike a plain index-by-index compare,
 * elements inserted at the start or end of an existing array become `add` operations at their index, so
 * inserting the sidecar as the first init container does not rewrite every init container after it.
 * Missing objects and arrays are added whole; keys are escaped (`~` → `~0`, `/` → `~1`).
 */
export function createPatch(before: unknown, after: unknown): Operation[] {
  const ops: Operation[] = [];
  diff(before, after, '', ops);
  return ops;
}

function pointer(base: string, key: string | number): string {
  return `${base}/${jsonPatch.escapePathComponent(String(key))}`;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** One walk over both trees: unchanged subtrees produce no operation, without comparing them whole at every level. */
function diff(before: unknown, after: unknown, path: string, ops: Operation[]): void {
  if (before === after) return;
  if (isPlainObject(before) && isPlainObject(after)) {
    for (const key of Object.keys(before)) {
      if (!Object.hasOwn(after, key)) ops.push({ op: 'remove', path: pointer(path, key) });
    }
    for (const key of Object.keys(after)) {
      const value = after[key];
      if (value === undefined) continue;
      // Shared (unchanged) subtrees are the common case: no pointer is built for them.
      if (!Object.hasOwn(before, key)) ops.push({ op: 'add', path: pointer(path, key), value });
      else if (before[key] !== value) diff(before[key], value, pointer(path, key), ops);
    }
    return;
  }
  if (Array.isArray(before) && Array.isArray(after)) {
    diffArrays(before, after, path, ops);
    return;
  }
  ops.push({ op: 'replace', path, value: after });
}

function diffArrays(before: unknown[], after: unknown[], path: string, ops: Operation[]): void {
  const added = after.length - before.length;
  if (added < 0) {
    ops.push({ op: 'replace', path, value: after });
    return;
  }
  const insertedAtStart = added > 0 && before.every((item, i) => jsonEqual(item, after[i + added]));
  if (insertedAtStart) {
    for (let i = 0; i < added; i++) ops.push({ op: 'add', path: pointer(path, i), value: after[i] });
    return;
  }
  // Changed elements in place, then elements appended at the end.
  before.forEach((item, i) => {
    if (item !== after[i]) diff(item, after[i], pointer(path, i), ops);
  });
  for (let i = before.length; i < after.length; i++)
    ops.push({ op: 'add', path: pointer(path, i), value: after[i] });
}
