/**
 * Child processes for the benchmark: spawned on the repository's Node 24, optionally pinned to one CPU with
 * taskset (which execs, so the PID is node's own), stdout to a file so that a busy server never waits on a
 * pipe the harness is slow to drain. Every child is tracked and killed when the harness exits.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

export interface BenchChild {
  proc: ChildProcess;
  pid: number;
  /** Everything the child wrote to stdout so far (read from its file). */
  stdout(): string;
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

const live = new Set<ChildProcess>();

process.on('exit', () => {
  for (const p of live) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
});

const tasksetAvailable = spawnSync('taskset', ['--version']).status === 0;

/** CPUs to pin to, or undefined when taskset is missing or the machine has a single CPU. */
export function pinning(cpu: number, cpus: number): string | undefined {
  return tasksetAvailable && cpus > 1 ? String(cpu % cpus) : undefined;
}

export interface SpawnOptions {
  /** Where stdout goes (a file, so the child never blocks on the harness). */
  stdoutFile: string;
  /** A CPU list for taskset, e.g. "0". */
  cpu?: string | undefined;
  nodeArgs?: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Open an IPC channel (child.proc.send / 'message'). */
  ipc?: boolean;
}

/** Runs `node [nodeArgs] script args` with the harness's own Node binary. */
export function spawnNode(script: string, args: string[], opts: SpawnOptions): BenchChild {
  const argv = [...(opts.nodeArgs ?? []), script, ...args];
  const [cmd, cmdArgs] =
    opts.cpu !== undefined
      ? ['taskset', ['-c', opts.cpu, process.execPath, ...argv]]
      : [process.execPath, argv];
  const out = openSync(opts.stdoutFile, 'w');
  const proc = spawn(cmd as string, cmdArgs as string[], {
    stdio: opts.ipc ? ['ignore', out, 'pipe', 'ipc'] : ['ignore', out, 'pipe'],
    env: { ...process.env, ...opts.env },
    cwd: opts.cwd,
  });
  closeSync(out);
  live.add(proc);
  let err = '';
  proc.stderr?.on('data', (c: Buffer) => {
    err += c.toString();
    if (err.length > 1_000_000) err = err.slice(-500_000);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('exit', (code, signal) => {
      live.delete(proc);
      resolve({ code, signal });
    }),
  );
  if (proc.pid === undefined) throw new Error(`could not start ${script}`);
  const pid = proc.pid;
  return {
    proc,
    pid,
    stdout: () => readFileSync(opts.stdoutFile, 'utf8'),
    stderr: () => err,
    exited,
    stop: async (graceMs = 5000) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      const done = await Promise.race([exited.then(() => true), sleep(graceMs).then(() => false)]);
      if (!done) {
        proc.kill('SIGKILL');
        await exited;
      }
    },
  };
}

/** The first JSON line of the child's stdout that matches, polling its file. */
export async function waitForLine(
  child: BenchChild,
  match: (line: Record<string, unknown>) => boolean,
  timeoutMs = 30_000,
): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const l of child.stdout().split('\n')) {
      if (!l.startsWith('{')) continue;
      try {
        const parsed = JSON.parse(l) as Record<string, unknown>;
        if (match(parsed)) return parsed;
      } catch {
        // A line still being written.
      }
    }
    if (child.proc.exitCode !== null)
      throw new Error(`child exited (${child.proc.exitCode}) early; stderr: ${child.stderr().slice(-2000)}`);
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for a log line; stderr: ${child.stderr().slice(-2000)}`);
    await sleep(20);
  }
}

export interface ProcMemory {
  /** Anonymous resident memory (heap, stacks, malloc): what grows with use. */
  rssAnonKiB: number;
  /** Resident file-backed pages (the node binary, shared libraries). */
  rssFileKiB: number;
  rssShmemKiB: number;
  vmRssKiB: number;
  vmHwmKiB: number;
}

/** Memory figures of a live process from /proc/PID/status. */
export function procMemory(pid: number): ProcMemory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string): number => {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status);
    if (!m) throw new Error(`/proc/${pid}/status has no ${name}`);
    return Number(m[1]);
  };
  return {
    rssAnonKiB: field('RssAnon'),
    rssFileKiB: field('RssFile'),
    rssShmemKiB: field('RssShmem'),
    vmRssKiB: field('VmRSS'),
    vmHwmKiB: field('VmHWM'),
  };
}

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** CPU time (user + system) a process has used so far, in milliseconds. */
export function procCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which is in parentheses and may contain spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
}

/** Time the process's main thread spent runnable but waiting for a CPU so far (ms): other work competing for it. */
export function procRunQueueWaitMs(pid: number): number {
  const [, waitNs] = readFileSync(`/proc/${pid}/schedstat`, 'utf8').trim().split(' ');
  return Number(waitNs) / 1e6;
}
