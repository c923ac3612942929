import { spawn } from 'node:child_process';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..', '..');
const NODE = join(ROOT, 'node_modules', '.bin', 'node');

/**
 * Runs `config-reloader-injector inject ARGS` as a child process on standard input; resolves when it exits, with
 * its output and how long it ran. `nodeArgs` go to node itself (e.g. a heap limit).
 */
export function cli(
  args: string[],
  stdin?: string | Buffer,
  nodeArgs: string[] = [],
): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const started = performance.now();
  return new Promise((resolvePromise, reject) => {
    const child = spawn(NODE, [...nodeArgs, 'src/cli.ts', 'inject', ...args], {
      cwd: ROOT,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolvePromise({ code, stdout, stderr, ms: performance.now() - started }));
    child.stdin.on('error', () => {}); // the CLI may exit before it reads all of a large input
    child.stdin.end(stdin ?? '');
  });
}
