/**
 * The CLI the benchmark runs. `compiled` is the production form (tsc output, as `npm run build` makes it for
 * the image) built into a temporary directory outside the repository, with node_modules symlinked beside it so
 * that package imports resolve. `source` runs src/cli.ts through Node's type stripping, which loads a
 * WebAssembly TypeScript parser into the process: about 25 MiB more anonymous memory and slower start-up, so
 * its footprint figures say little about the deployed program.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from './paths.ts';

export type Runtime = 'compiled' | 'source';

export interface BuiltCli {
  runtime: Runtime;
  /** The script to run with node: .../cli.js or src/cli.ts. */
  cli: string;
  buildMs: number;
  /** Removes the build directory. */
  dispose(): void;
}

export function prepareCli(runtime: Runtime): BuiltCli {
  if (runtime === 'source')
    return { runtime, cli: join(REPO_ROOT, 'src', 'cli.ts'), buildMs: 0, dispose: () => {} };
  const dir = mkdtempSync(join(tmpdir(), 'cri-bench-build-'));
  const started = performance.now();
  const tsc = spawnSync(
    process.execPath,
    // --noCheck: emit only (type checking is npm test's job); the output is the same, in seconds instead of ~20.
    [
      join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'),
      '-p',
      join(REPO_ROOT, 'tsconfig.build.json'),
      '--outDir',
      dir,
      '--noCheck',
    ],
    { cwd: REPO_ROOT, encoding: 'utf8' },
  );
  if (!existsSync(join(dir, 'cli.js'))) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`tsc produced no cli.js:\n${tsc.stdout}${tsc.stderr}`);
  }
  writeFileSync(join(dir, 'package.json'), '{"type":"module"}\n');
  symlinkSync(join(REPO_ROOT, 'node_modules'), join(dir, 'node_modules'));
  return {
    runtime,
    cli: join(dir, 'cli.js'),
    buildMs: performance.now() - started,
    dispose: () => rmSync(dir, { recursive: true, force: true }),
  };
}
