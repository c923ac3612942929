import { jsonEqual } from './json.ts';
import jsonPatch from 'fast-json-patch';
import type { Operation } from 'fast-json-patch';

/**
 * The RFC 6902 patch from the pod as received to the mutated clone. Unlike a plain index-by-index compare,
 * elements inserted into an existing array become `add` operations at their index, so inserting the sidecar as
 * the first init container does not rewrite every init container after it, even when those changed too (an
 * explicit-mode mount added to a user's init container is one `add` under that container's new index).
 * Elements are matched by their `name` when every element has a distinct one (containers, init containers,
 * volumes, env: the merge key Kubernetes itself uses for these lists), or else when they are equal.
 * Missing objects and arrays are added whole; keys are escaped (`~` → `~0`, `/` → `~1`).
 *
 * Why a diff and not a patch written from the edits injection makes: mutate() in inject.ts stays the one
 * description of the change (the pod it returns is what the tests check), the diff is correct for whatever
 * edits mutate() makes (tested: applied to the pod, the patch gives that pod, on every real-world fixture), and
 * there is no second, hand-kept list of operations to drift from it.
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
  if (added > 0) {
    const matches = matchByName(before, after);
    if (matches !== undefined) {
      diffAligned(before, after, matches, path, ops);
      return;
    }
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

/** The `name` of an array element, when it is an object with a string one. */
function nameOf(item: unknown): string | undefined {
  if (!isPlainObject(item)) return undefined;
  const name = item.name;
  return typeof name === 'string' ? name : undefined;
}

/**
 * For each element of `after`, the index in `before` of the element with the same name, or -1 for a new one;
 * undefined unless every element of both arrays has a name, distinct within its array, and `after` keeps every
 * element of `before` in the same order (so that the elements of `before` only had others inserted around them).
 */
function matchByName(before: unknown[], after: unknown[]): number[] | undefined {
  const index = new Map<string, number>();
  for (let i = 0; i < before.length; i++) {
    const name = nameOf(before[i]);
    if (name === undefined || index.has(name)) return undefined;
    index.set(name, i);
  }
  const seen = new Set<string>();
  const matches: number[] = [];
  let next = 0;
  for (const item of after) {
    const name = nameOf(item);
    if (name === undefined || seen.has(name)) return undefined;
    seen.add(name);
    const i = index.get(name);
    if (i === undefined) matches.push(-1);
    else if (i !== next) return undefined;
    else matches.push(next++);
  }
  return next === before.length ? matches : undefined;
}

/**
 * The operations in the order of `after`: a new element is added at its final index, a kept one is diffed at its
 * final index. Applied in that order, every element before index j is already in place when j is reached, and
 * the element at j is the next kept one of `before`, so each pointer names what it should.
 */
function diffAligned(
  before: unknown[],
  after: unknown[],
  matches: number[],
  path: string,
  ops: Operation[],
): void {
  for (let j = 0; j < after.length; j++) {
    const i = matches[j]!;
    if (i === -1) ops.push({ op: 'add', path: pointer(path, j), value: after[j] });
    else if (before[i] !== after[j]) diff(before[i], after[j], pointer(path, j), ops);
  }
}
