/**
 * A real process that the reloader takes for a container's main process: test/reloader/signal-app.ts in its own
 * mount namespace (unshare -m, private propagation), where it mounts a tmpfs at targetMarkerPath(name) once it is
 * ready, as the webhook's marker volume is in a pod. unshare execs, so the spawned PID is the main process. Needs
 * root (mount namespaces) and unshare; `containerSkip` says why not when either is missing.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { targetMarkerPath } from '../../src/shared/process-marker.ts';
import { childLines } from '../support/child-lines.ts';

const APP = fileURLToPath(new URL('./signal-app.ts', import.meta.url));

export const containerSkip: string | false = ((): string | false => {
  if (process.getuid?.() !== 0) return 'needs root, to make mount namespaces';
  try {
    execFileSync('sh', ['-c', 'command -v unshare'], { stdio: 'ignore' });
    return false;
  } catch {
    return 'needs unshare';
  }
})();

export interface ContainerProcess {
  name: string;
  child: ChildProcess;
  /** The port of its /metrics (0 when started without waiting for it). */
  port: number;
  lines: string[];
  waitLine(line: string): Promise<void>;
  /** The signal that ended it (null: it exited by itself). */
  exited: Promise<NodeJS.Signals | null>;
  /** Stops it by its PID (SIGKILL) and removes the marker directory left on the host's /run. */
  stop(): Promise<void>;
}

/**
 * Starts the app as container `name`, reading `configFile` on SIGHUP; resolves once it serves its metrics, or at
 * once with `waitReady: false` (a reloader waiting for it may signal it before).
 */
export async function startContainerProcess(
  name: string,
  configFile: string,
  opts: { waitReady?: boolean } = {},
): Promise<ContainerProcess> {
  const marker = targetMarkerPath(name);
  const child = spawn(
    'unshare',
    ['-m', '--propagation', 'private', process.execPath, APP, configFile, marker],
    { env: { PATH: process.env.PATH }, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const { lines, waitLine } = childLines(child);
  const exited = new Promise<NodeJS.Signals | null>((resolve) =>
    child.on('exit', (_code, signal) => resolve(signal)),
  );
  const portLine = opts.waitReady === false ? '{"port":0}' : await waitLine(/^\{"port":/);
  return {
    name,
    child,
    port: (JSON.parse(portLine) as { port: number }).port,
    lines,
    waitLine: async (line) => void (await waitLine(line)),
    exited,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
      rmSync(marker, { recursive: true, force: true });
    },
  };
}
