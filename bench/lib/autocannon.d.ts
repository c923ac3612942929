// autocannon ships no type declarations; only what bench/load.ts uses.
declare module 'autocannon' {
  import type { EventEmitter } from 'node:events';

  interface Options {
    url: string;
    method?: string;
    headers?: Record<string, string>;
    body?: string;
    connections?: number;
    duration?: number;
    overallRate?: number;
  }

  function autocannon(opts: Options, done: (err: Error | null, result: unknown) => void): EventEmitter;
  export default autocannon;
}
