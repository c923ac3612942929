/**
 * Processes the tests start from built binaries (the control plane, the real apps): each build run once per test
 * process, each process logged to a file, stopped by its PID, and killed if the test process ends first, whatever
 * ends it.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';

const built = new Map<string, string>();

/**
 * Runs `bash script` once per test process and returns the last line it prints (the folder of the binaries; a no-op
 * when they are cached, which npm test makes sure of before any test).
 */
export function builtOnce(script: string, what: string): string {
  const cached = built.get(script);
  if (cached !== undefined) return cached;
  const result = spawnSync('bash', [script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (result.status !== 0)
    throw new Error(`building ${what} failed (bash ${script} exited ${result.status}); run it to see why`);
  const dir = result.stdout.trim().split('\n').pop() as string;
  built.set(script, dir);
  return dir;
}

const live = new Set<ChildProcess>();
let exitHooked = false;

function hookExit(): void {
  if (exitHooked) return;
  exitHooked = true;
  const killAll = (): void => {
    for (const child of live) if (child.pid !== undefined) safeKill(child.pid, 'SIGKILL');
  };
  process.on('exit', killAll);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const)
    process.once(signal, () => {
      killAll();
      process.exit(128 + (signal === 'SIGHUP' ? 1 : signal === 'SIGINT' ? 2 : 15));
    });
}

export function safeKill(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

export interface Spawned {
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `file` with its stdout and stderr appended to `logFile`. */
export function spawnLogged(
  file: string,
  args: string[],
  opts: { logFile: string; cwd?: string; env?: NodeJS.ProcessEnv },
): Spawned {
  hookExit();
  const log = createWriteStream(opts.logFile, { flags: 'a' });
  const child = spawn(file, args, {
    ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}),
    ...(opts.env !== undefined ? { env: opts.env } : {}),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.pipe(log, { end: false });
  child.stderr?.pipe(log, { end: false });
  live.add(child);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => {
      live.delete(child);
      resolve({ code, signal });
    }),
  );
  // 'close' comes after the last output, which 'exit' may precede.
  child.on('close', () => log.end());
  return { child, exited };
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
export async function terminate({ child, exited }: Spawned, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  if (child.pid !== undefined) safeKill(child.pid, 'SIGTERM');
  const timer = setTimeout(() => child.pid !== undefined && safeKill(child.pid, 'SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}
