import type { BuiltCli } from './build.ts';
import type { Figure } from './report.ts';

/** What every section gets from bench/run.ts. */
export interface BenchContext {
  quick: boolean;
  cli: BuiltCli;
  /** A scratch directory for this run, removed at the end. */
  tmp: string;
  cpus: number;
  log(message: string): void;
}

export interface SectionResult {
  figures: Figure[];
  details: Record<string, unknown>;
}
