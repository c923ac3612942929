import { readdir, readFile } from 'node:fs/promises';

/**
 * The env var the webhook sets, to the container's name, on every container the reloader signals or restarts.
 * In a pod with `shareProcessNamespace: true` it is how the reloader tells that container's processes apart.
 */
export const CONTAINER_MARKER = 'CONFIG_RELOADER_CONTAINER';

export type ContainerSignal = 'SIGHUP' | 'SIGUSR1' | 'SIGUSR2' | 'SIGTERM';

/** A container's main process: its PID and the first word of its command line. */
export interface ContainerProcess {
  pid: number;
  command: string;
}

export interface ProcessLookupOptions {
  /** Where the process table is mounted: '/proc' unless a test points at a fake one. */
  procDir?: string;
}

export interface SignalOptions extends ProcessLookupOptions {
  /** Sends the signal: process.kill unless a test stands in for the kernel's answer. */
  kill?: (pid: number, signal: ContainerSignal) => void;
}

/** The container's main process cannot be told: none or several match, or /proc cannot be read. */
export class ProcessLookupError extends Error {
  /** Numeric entries of the proc dir looked at. */
  readonly scanned: number;
  /** Those whose environ could not be read (another uid or gid); the lookup cannot tell whether they match. */
  readonly unreadable: number;
  /** PIDs that look like the container's main process (several when ambiguous, else empty). */
  readonly pids: number[];
  constructor(message: string, scanned = 0, unreadable = 0, pids: number[] = []) {
    super(message);
    this.scanned = scanned;
    this.unreadable = unreadable;
    this.pids = pids;
  }
}

/** The main process was found but the kernel refused the signal. */
export class SignalError extends Error {
  readonly pid: number;
  constructor(message: string, pid: number) {
    super(message);
    this.pid = pid;
  }
}

// Enough to overlap the reads of a pod's few processes; a bound so a crowded /proc never opens hundreds of files.
const CONCURRENCY = 8;
const COMMAND_MAX = 120;

interface Candidate {
  pid: number;
  ppid: number;
  name: string;
}

function errorCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/** The process exited between listing /proc and reading it: not an error, it simply no longer counts. */
function vanished(err: unknown): boolean {
  const code = errorCode(err);
  return code === 'ENOENT' || code === 'ESRCH';
}

/**
 * Whether a NUL-separated environ holds exactly `entry`. Works on the bytes: the environment is never decoded
 * into a string nor kept, since it holds the app's secrets.
 */
function environHas(environ: Buffer, entry: Buffer): boolean {
  for (let i = environ.indexOf(entry); i !== -1; i = environ.indexOf(entry, i + 1)) {
    const end = i + entry.length;
    if ((i === 0 || environ[i - 1] === 0) && (end === environ.length || environ[end] === 0)) return true;
  }
  return false;
}

/** The value of a `Key:\tvalue` line of /proc/PID/status. */
function statusField(status: string, key: string): string | undefined {
  const at = status.indexOf(`\n${key}:`);
  if (at === -1) return undefined;
  const end = status.indexOf('\n', at + 1);
  return status.slice(at + key.length + 2, end === -1 ? undefined : end).trim();
}

/**
 * The first word of the command line only: arguments may carry secrets (`--password=...`). Processes that
 * rewrite their title ("nginx: master process ...") put spaces in argv[0], hence the split on white space too.
 */
async function commandOf(procDir: string, c: Candidate): Promise<string> {
  try {
    const cmdline = await readFile(`${procDir}/${c.pid}/cmdline`);
    const nul = cmdline.indexOf(0);
    const first = cmdline.subarray(0, nul === -1 ? cmdline.length : nul).toString('utf8');
    const word = first.trim().split(/\s/, 1)[0] ?? '';
    if (word) return word.slice(0, COMMAND_MAX);
  } catch {
    // Exited or unreadable: the kernel's short name from status will do.
  }
  return c.name || '?';
}

function unreadableNote(unreadable: number, codes: Set<string>): string {
  if (unreadable === 0) return '';
  const other = [...codes].filter((c) => c !== 'EACCES' && c !== 'EPERM');
  return ` (${unreadable} of them unreadable${other.length ? `: ${[...codes].sort().join(', ')}` : ''})`;
}

/**
 * Finds the main process of `container` in a shared process namespace: candidates are the processes whose
 * environ holds exactly CONFIG_RELOADER_CONTAINER=<container>; the main one is the candidate whose parent is not a
 * candidate (the container's first process; its children inherit the env var but have a candidate parent).
 * Throws ProcessLookupError unless exactly one is found. Cheap enough to run at every delivery: one readdir,
 * bounded parallel reads, no process spawned.
 */
export async function findContainerProcess(
  container: string,
  opts: ProcessLookupOptions = {},
): Promise<ContainerProcess> {
  const procDir = opts.procDir ?? '/proc';
  let names: string[];
  try {
    names = await readdir(procDir);
  } catch (err) {
    throw new ProcessLookupError(
      `cannot list ${procDir} to find the main process of container "${container}" (${errorCode(err) ?? String(err)}): ` +
        `the reloader needs the pod's process table; check that nothing hides ${procDir} from the sidecar`,
    );
  }
  const pids = names.filter((n) => /^\d+$/.test(n)).map(Number);
  const entry = Buffer.from(`${CONTAINER_MARKER}=${container}`);
  const own = process.pid;
  const candidates: Candidate[] = [];
  const codes = new Set<string>();
  let unreadable = 0;

  const inspect = async (pid: number): Promise<void> => {
    if (pid === own) return;
    let environ: Buffer;
    try {
      environ = await readFile(`${procDir}/${pid}/environ`);
    } catch (err) {
      if (vanished(err)) return;
      // EACCES/EPERM: another uid or gid. Any other failure also leaves the process undecided; counted alike.
      unreadable++;
      codes.add(errorCode(err) ?? 'error');
      return;
    }
    if (!environHas(environ, entry)) return;
    let status: string;
    try {
      status = await readFile(`${procDir}/${pid}/status`, 'latin1');
    } catch (err) {
      if (vanished(err)) return;
      throw new ProcessLookupError(
        `cannot read ${procDir}/${pid}/status, to tell whether process ${pid} is the main process of container ` +
          `"${container}" (${errorCode(err) ?? String(err)}); the next change tries again`,
      );
    }
    candidates.push({
      pid,
      ppid: Number(statusField(status, 'PPid') ?? 0),
      name: statusField(status, 'Name') ?? '',
    });
  };
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < pids.length) await inspect(pids[next++] as number);
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, pids.length) }, worker));

  const candidatePids = new Set(candidates.map((c) => c.pid));
  const main = candidates.filter((c) => !candidatePids.has(c.ppid)).sort((a, b) => a.pid - b.pid);
  if (main.length === 1) {
    const [only] = main as [Candidate];
    return { pid: only.pid, command: await commandOf(procDir, only) };
  }
  if (main.length === 0) {
    throw new ProcessLookupError(
      `no process of container "${container}" was found among ${pids.length} processes` +
        `${unreadableNote(unreadable, codes)}: the reloader looks for ${CONTAINER_MARKER}=${container} in ` +
        `${procDir}/PID/environ, which the webhook sets on that container. The pod must have ` +
        `shareProcessNamespace: true, and the sidecar must run with the container's runAsUser and runAsGroup ` +
        `(/proc/PID/environ of another process is readable only with the same uid and gid); ` +
        `if the container is restarting, the next change tries again`,
      pids.length,
      unreadable,
    );
  }
  const listed = await Promise.all(main.map(async (c) => `${c.pid} (${await commandOf(procDir, c)})`));
  throw new ProcessLookupError(
    `${main.length} processes look like the main process of container "${container}": ${listed.join(', ')}; ` +
      `its main process must be unique to be signalled (e.g. the container restarted and an old process is ` +
      `still exiting); nothing was signalled, the next change tries again`,
    pids.length,
    unreadable,
    main.map((c) => c.pid),
  );
}

/** The user id of a process, for an error message only. */
async function uidOf(procDir: string, pid: number): Promise<string> {
  try {
    return statusField(await readFile(`${procDir}/${pid}/status`, 'latin1'), 'Uid')?.split(/\s+/)[0] ?? '?';
  } catch {
    return '?';
  }
}

/**
 * Finds the container's main process and sends it `signal`. A process that exits between the lookup and the
 * signal (ESRCH: the container restarted just then) is looked up once more. Throws ProcessLookupError (see
 * findContainerProcess) or SignalError when the kernel refuses the signal.
 */
export async function signalContainer(
  container: string,
  signal: ContainerSignal,
  opts: SignalOptions = {},
): Promise<ContainerProcess> {
  const kill = opts.kill ?? ((pid: number, sig: ContainerSignal) => void process.kill(pid, sig));
  for (let attempt = 1; ; attempt++) {
    const found = await findContainerProcess(container, opts);
    try {
      kill(found.pid, signal);
      return found;
    } catch (err) {
      const code = errorCode(err);
      if (code === 'ESRCH') {
        if (attempt < 2) continue;
        throw new ProcessLookupError(
          `the main process of container "${container}" exited twice just before ${signal} reached it ` +
            `(last ${found.pid}, ${found.command}): the container is probably restarting; the next change tries again`,
        );
      }
      if (code === 'EPERM' || code === 'EACCES') {
        const procDir = opts.procDir ?? '/proc';
        throw new SignalError(
          `${signal} to process ${found.pid} (${found.command}), the main process of container "${container}", ` +
            `was refused (${code}): it runs as uid ${await uidOf(procDir, found.pid)} and the reloader as uid ` +
            `${process.getuid?.() ?? '?'}; a process may signal another only with the same uid (PodSecurity ` +
            `restricted forbids CAP_KILL). The webhook runs the sidecar with the container's runAsUser and ` +
            `runAsGroup: check that nothing (another webhook, a policy, a later edit) overrides either`,
          found.pid,
        );
      }
      throw err;
    }
  }
}
