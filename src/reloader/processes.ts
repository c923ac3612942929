import { open, readdir, readFile } from 'node:fs/promises';
import { targetMarkerPath } from '../shared/process-marker.ts';

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

interface SignalOptions extends ProcessLookupOptions {
  /** Sends the signal: process.kill unless a test stands in for the kernel's answer. */
  kill?: (pid: number, signal: ContainerSignal) => void;
  /** Aborted (the reloader is closing): nothing is sent, and signalContainer rejects with its reason. */
  signal?: AbortSignal;
}

/** The container's main process cannot be found, or /proc cannot be read. */
export class ProcessLookupError extends Error {
  /** Numeric entries of the proc dir looked at. */
  readonly scanned: number;
  /** Those whose mountinfo could not be read; the lookup cannot tell whether they belong to the container. */
  readonly unreadable: number;
  constructor(message: string, scanned = 0, unreadable = 0) {
    super(message);
    this.scanned = scanned;
    this.unreadable = unreadable;
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
// A container's mountinfo is a few KiB (some dozens of mounts of ~150 bytes). Read in small chunks, stopping at
// the first matching line, and never more than the cap: a huge file (a host process on a node with thousands of
// mounts, not something a pod shows) is counted unreadable rather than read whole.
const MOUNTINFO_CHUNK = 16 * 1024;
const MOUNTINFO_MAX = 1024 * 1024;

interface Candidate {
  pid: number;
  ppid: number;
  /** Clock ticks after boot (field 22 of /proc/PID/stat). */
  started: number;
  name: string;
}

function errorCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/**
 * The process exited between listing /proc and reading it: not an error, it simply no longer counts. EINVAL is
 * what mountinfo answers for a zombie (exited, not yet reaped: it has no mount namespace any more).
 */
function vanished(err: unknown): boolean {
  const code = errorCode(err);
  return code === 'ENOENT' || code === 'ESRCH' || code === 'EINVAL';
}

/**
 * The mount point (5th field) of a /proc/PID/mountinfo line, with the kernel's octal escapes of space, tab,
 * newline and backslash (\040, \011, \012, \134) decoded. Kept as latin1 text, i.e. one char per byte.
 */
function mountPointOf(line: string): string | undefined {
  let start = 0;
  for (let field = 0; field < 4; field++) {
    start = line.indexOf(' ', start) + 1;
    if (start === 0) return undefined;
  }
  const end = line.indexOf(' ', start);
  const field = line.slice(start, end === -1 ? undefined : end);
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

class MountinfoTooLarge extends Error {
  readonly code = 'EFBIG';
}

/** Whether the mount namespace of the process whose mountinfo is `file` has a mount point at exactly `wanted`. */
async function hasMountPoint(file: string, wanted: string): Promise<boolean> {
  const fh = await open(file, 'r');
  try {
    const chunk = Buffer.allocUnsafe(MOUNTINFO_CHUNK);
    let carry = '';
    for (let total = 0; ;) {
      const { bytesRead } = await fh.read(chunk, 0, chunk.length, null);
      if (bytesRead === 0) return carry !== '' && mountPointOf(carry) === wanted;
      total += bytesRead;
      if (total > MOUNTINFO_MAX) throw new MountinfoTooLarge(`larger than ${MOUNTINFO_MAX} bytes`);
      const lines = (carry + chunk.toString('latin1', 0, bytesRead)).split('\n');
      carry = lines.pop() ?? '';
      if (lines.some((line) => mountPointOf(line) === wanted)) return true;
    }
  } finally {
    await fh.close();
  }
}

/**
 * PPid, starttime and comm from /proc/PID/stat. comm (in parentheses, field 2) may hold spaces and ')' itself,
 * so the fields are counted from the LAST ')': after it come state (field 3), ppid (4), ... starttime (22).
 */
function parseStat(stat: string): { ppid: number; started: number; name: string } | undefined {
  const opening = stat.indexOf('(');
  const close = stat.lastIndexOf(')');
  if (opening === -1 || close < opening) return undefined;
  const fields = stat.slice(close + 2).split(' ');
  const ppid = Number(fields[4 - 3]);
  const started = Number(fields[22 - 3]);
  if (!Number.isSafeInteger(ppid) || !Number.isSafeInteger(started)) return undefined;
  return { ppid, started, name: stat.slice(opening + 1, close) };
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
    // Exited or unreadable: the kernel's short name from stat will do.
  }
  return c.name || '?';
}

function unreadableNote(unreadable: number, codes: Set<string>): string {
  if (unreadable === 0) return '';
  return ` (${unreadable} of them with an unreadable mountinfo: ${[...codes].sort().join(', ')})`;
}

/**
 * Finds the main process of `container` in a shared process namespace. Candidates are the processes whose mount
 * namespace has a mount point at exactly targetMarkerPath(container) (the webhook mounts a marker volume there);
 * all of a container's processes share its mount namespace, so its children are candidates too, and the main
 * process is a candidate whose parent is not one (the container's first process shows PPid 0: its parent, the
 * runtime, is outside the pod's PID namespace).
 *
 * Several can remain: a `kubectl exec` session also shows PPid 0 and sits in the container's mount namespace, and
 * a process that daemonized inside the container is re-parented to the pod's PID 1 (pause), which is not a
 * candidate, so the daemon counts as top-level too. The container's main process started before all of them,
 * so the one with the smallest starttime is taken (the
 * lowest PID on a tie, within one clock tick). A container that restarted has a new mount namespace only after the
 * old processes have exited (zombies have no mountinfo), so an old process is not taken for the new one.
 *
 * Throws ProcessLookupError when none is found. Cheap enough to run at every delivery: one readdir, bounded
 * parallel reads of small files, no process spawned; mountinfo needs no ptrace access, so any uid can read it.
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
  const markerPath = targetMarkerPath(container);
  // mountPointOf yields one char per byte: compare against the path's UTF-8 bytes alike.
  const wanted = Buffer.from(markerPath, 'utf8').toString('latin1');
  const own = process.pid;
  const candidates: Candidate[] = [];
  const codes = new Set<string>();
  let unreadable = 0;

  const inspect = async (pid: number): Promise<void> => {
    if (pid === own) return;
    try {
      if (!(await hasMountPoint(`${procDir}/${pid}/mountinfo`, wanted))) return;
    } catch (err) {
      if (vanished(err)) return;
      // Rare (mountinfo is world-readable): a security module, or a file over the cap. Undecided; counted.
      unreadable++;
      codes.add(errorCode(err) ?? 'error');
      return;
    }
    let stat: string;
    try {
      stat = await readFile(`${procDir}/${pid}/stat`, 'latin1');
    } catch (err) {
      if (vanished(err)) return;
      throw new ProcessLookupError(
        `cannot read ${procDir}/${pid}/stat, to tell whether process ${pid} is the main process of container ` +
          `"${container}" (${errorCode(err) ?? String(err)}); the next change tries again`,
      );
    }
    const parsed = parseStat(stat);
    if (parsed === undefined) {
      throw new ProcessLookupError(
        `${procDir}/${pid}/stat has no parent PID and start time where the kernel puts them, so whether process ` +
          `${pid} is the main process of container "${container}" cannot be told; nothing was signalled`,
      );
    }
    candidates.push({ pid, ...parsed });
  };
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < pids.length) await inspect(pids[next++] as number);
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, pids.length) }, worker));

  const candidatePids = new Set(candidates.map((c) => c.pid));
  const [main] = candidates
    .filter((c) => !candidatePids.has(c.ppid))
    .sort((a, b) => a.started - b.started || a.pid - b.pid);
  if (main !== undefined) return { pid: main.pid, command: await commandOf(procDir, main) };
  throw new ProcessLookupError(
    `no process of container "${container}" among ${pids.length} processes${unreadableNote(unreadable, codes)}: ` +
      `the reloader looks for a mount at ${markerPath} in ${procDir}/PID/mountinfo. The pod needs ` +
      `shareProcessNamespace: true (the webhook sets it) and the container must carry the mount at that path ` +
      `(the webhook adds it; was the pod injected by an older version? then recreate it); ` +
      `if the container is restarting, the next change tries again`,
    pids.length,
    unreadable,
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
 * findContainerProcess) or SignalError when the kernel refuses the signal, and `opts.signal`'s reason when it
 * aborted before the signal went out (a lookup takes a moment; the reloader may be closing meanwhile).
 */
export async function signalContainer(
  container: string,
  signal: ContainerSignal,
  opts: SignalOptions = {},
): Promise<ContainerProcess> {
  const kill = opts.kill ?? ((pid: number, sig: ContainerSignal) => void process.kill(pid, sig));
  for (let attempt = 1; ; attempt++) {
    const found = await findContainerProcess(container, opts);
    opts.signal?.throwIfAborted();
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
            `restricted forbids CAP_KILL). The sidecar must run with the container's runAsUser (the webhook sets ` +
            `it): check that nothing (another webhook, a policy, a later edit) overrides it`,
          found.pid,
        );
      }
      throw err;
    }
  }
}
