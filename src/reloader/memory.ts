/**
 * Gives memory back after a large object was handled. V8 grows its heap for a large watch event (the JSON line,
 * its string, the parsed object) and keeps the pages long after they hold only garbage; nothing in a quiet
 * sidecar makes it collect again. One full collection in V8's "last resort" flavour (every available page,
 * pooled ones released too) after a large object brings the process back near its idle size, and the next large
 * object starts from there. It costs a few milliseconds and runs at most once per quiet second.
 */

/** An object at least this large (encoded values, bytes) or with this many keys schedules a collection. */
export const LARGE_OBJECT_BYTES = 256 * 1024;
export const LARGE_OBJECT_KEYS = 1000;
/** Wait this long after the last large object, so that a burst is collected once, after its last write. */
const QUIET_MS = 1000;

type GcFunction = (options?: { type?: string; execution?: string; flavor?: string }) => void;
let gc: GcFunction | undefined;
let timer: NodeJS.Timeout | undefined;

/**
 * V8's own gc(), without --expose-gc on the command line: the flag is set for a moment, a new context made (it
 * gets `gc` as a global), and the flag cleared again; the main context never sees a `gc` global.
 */
function gcFunction(): GcFunction {
  if (!gc) {
    const v8 = process.getBuiltinModule('node:v8');
    v8.setFlagsFromString('--expose-gc');
    try {
      gc = process.getBuiltinModule('node:vm').runInNewContext('gc') as GcFunction;
    } finally {
      v8.setFlagsFromString('--no-expose-gc');
    }
  }
  return gc;
}

/** Collects now: every available page, as on memory pressure. */
export function collectGarbage(): void {
  gcFunction()({ type: 'major', execution: 'sync', flavor: 'last-resort' });
}

/**
 * A young-generation collection (about a millisecond): frees buffers that died young, such as the chunks of a
 * streamed gunzip, which V8 otherwise lets accumulate up to its external-memory limit (64 MiB).
 */
export function collectYoungGarbage(): void {
  gcFunction()({ type: 'minor', execution: 'sync' });
}

/** After a large object: one collection once no other large object came for a second. */
export function releaseMemorySoon(): void {
  clearTimeout(timer);
  timer = setTimeout(collectGarbage, QUIET_MS);
  timer.unref();
}
