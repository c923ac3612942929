import { parsePath } from './request-info.ts';
import type { KubeError } from './status.ts';
import { statusForCode } from './status.ts';

export interface FailOptions {
  /** Fail this many matching requests, then serve normally. */
  count?: number;
  /** Fail matching requests for this long. */
  forMs?: number;
  /** Only requests whose path plus query matches (default: all). */
  paths?: RegExp;
}

interface Rule {
  status: number;
  remaining: number;
  until: number;
  paths?: RegExp;
}

/** Injected HTTP failures: each rule answers matching requests with a Status error until its count or time runs out. */
export class Faults {
  #rules: Rule[] = [];

  add(status: number, opts: FailOptions): void {
    const rule: Rule = {
      status,
      remaining: opts.count ?? Infinity,
      until: opts.forMs === undefined ? Infinity : Date.now() + opts.forMs,
    };
    if (opts.paths) rule.paths = opts.paths;
    this.#rules.push(rule);
  }

  clear(): void {
    this.#rules = [];
  }

  /** The error to answer this request with, if a rule still applies to it. */
  take(pathAndQuery: string): KubeError | undefined {
    const now = Date.now();
    this.#rules = this.#rules.filter((r) => r.remaining > 0 && r.until > now);
    const rule = this.#rules.find((r) => {
      if (!r.paths) return true;
      r.paths.lastIndex = 0; // a /g regexp keeps state between test() calls
      return r.paths.test(pathAndQuery);
    });
    if (!rule) return undefined;
    rule.remaining--;
    return statusForCode(rule.status);
  }
}

export interface StaleListOptions {
  /** Only lists whose path plus query matches (default: every list). */
  paths?: RegExp;
}

/**
 * Lists answered from an older revision, as by an API server (or a cache or proxy in front of one) that lags
 * behind the watch a client already follows. A list without resourceVersion (a consistent read, which a real
 * server must answer with the newest state: the non-conforming case) or with resourceVersion=0 (any state) is
 * served at the snapshot; so is a list with resourceVersion=X (not older than X) when X is not newer than the
 * snapshot, which the real server may legitimately do. A list asking for a revision newer than the snapshot is
 * answered as usual (the server catches up first), as are Exact lists, continue tokens, gets and watches.
 */
export class StaleLists {
  #rule: { rv: number; paths?: RegExp } | undefined;

  set(rv: number, opts: StaleListOptions): void {
    this.#rule = { rv, ...(opts.paths ? { paths: opts.paths } : {}) };
  }

  clear(): void {
    this.#rule = undefined;
  }

  /** The list to answer instead (pinned to the snapshot with resourceVersionMatch=Exact), or undefined. */
  rewrite(method: string, url: URL): URL | undefined {
    const rule = this.#rule;
    if (!rule) return undefined;
    const parsed = parsePath(method, url.pathname, url.searchParams);
    if (parsed.kind !== 'resource' || parsed.req.verb !== 'list') return undefined;
    const q = url.searchParams;
    if (q.has('continue') || (q.get('resourceVersionMatch') ?? 'NotOlderThan') !== 'NotOlderThan')
      return undefined;
    const asked = q.get('resourceVersion') ?? '';
    if (asked !== '' && asked !== '0' && !(/^\d+$/.test(asked) && Number(asked) <= rule.rv)) return undefined;
    if (rule.paths) {
      rule.paths.lastIndex = 0;
      if (!rule.paths.test(url.pathname + url.search)) return undefined;
    }
    const stale = new URL(url);
    stale.searchParams.set('resourceVersion', String(rule.rv));
    stale.searchParams.set('resourceVersionMatch', 'Exact');
    return stale;
  }
}
