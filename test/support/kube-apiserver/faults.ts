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
