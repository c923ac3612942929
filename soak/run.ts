import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * `npm run soak`: the long runs that stay out of `npm test`, one after the other.
 *   node soak/run.ts            all of them
 *   node soak/run.ts webhook    only the webhook ones (or: reloader)
 * Durations: LOAD_SECONDS (30), SOAK_WEBHOOK_SECONDS (30), SOAK_RELOADER_SECONDS (180).
 */

const ROOT = fileURLToPath(new URL('../', import.meta.url));

const RUNS: Array<{ group: string; file: string; env: Record<string, string> }> = [
  // The load-with-faults test of `npm test`, for 30 s instead of 10.
  {
    group: 'webhook',
    file: 'test/webhook/load-faults.test.ts',
    env: { LOAD_SECONDS: process.env.LOAD_SECONDS ?? '30' },
  },
  { group: 'webhook', file: 'soak/webhook.soak.ts', env: {} },
  { group: 'reloader', file: 'soak/reloader.soak.ts', env: {} },
];

function run(file: string, env: Record<string, string>): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--test', '--test-reporter=spec', file], {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: 'inherit',
    });
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
}

const only = process.argv[2];
if (only !== undefined && !RUNS.some((r) => r.group === only)) {
  process.stderr.write(`error: unknown soak group "${only}" (webhook or reloader)\n`);
  process.exit(2);
}
const failed: string[] = [];
for (const { group, file, env } of RUNS) {
  if (only !== undefined && group !== only) continue;
  process.stdout.write(`\n=== soak: ${file}\n`);
  const started = Date.now();
  const code = await run(file, env);
  process.stdout.write(
    `=== ${file}: ${code === 0 ? 'passed' : `FAILED (exit ${code})`} in ${Math.round((Date.now() - started) / 1000)} s\n`,
  );
  if (code !== 0) failed.push(file);
}
if (failed.length > 0) {
  process.stdout.write(`\nsoak failed: ${failed.join(', ')}\n`);
  process.exitCode = 1;
} else process.stdout.write('\nsoak passed\n');
