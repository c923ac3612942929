/**
 * Finding a container's main process in a shared process namespace, and signalling it: against fake proc dirs
 * for the matching rule (the marker mount point in /proc/PID/mountinfo, the parent rule, the oldest top-level
 * process), and against the real /proc with real processes in real separate mount namespaces (unshare, a tmpfs at
 * the marker path, as another user) for the signals, the uid rule of kill(2) and mountinfo read as another uid.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, renameSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  findContainerProcess,
  ProcessLookupError,
  signalContainer,
  SignalError,
  type ContainerSignal,
} from '../../src/reloader/processes.ts';
import { TARGET_MARKER_DIR, targetMarkerPath } from '../../src/shared/process-marker.ts';
import { childLines } from '../support/child-lines.ts';

const PROCESSES = fileURLToPath(new URL('../../src/reloader/processes.ts', import.meta.url));

/** A container's mounts as /proc/PID/mountinfo shows them (containerd, kubelet volumes), without the marker. */
const CONTAINER_MOUNTS = [
  '2345 2298 0:412 / / rw,relatime master:1 - overlay overlay rw,lowerdir=/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/81/fs,upperdir=/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/95/fs,workdir=/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/95/work',
  '2346 2345 0:415 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw',
  '2347 2345 0:416 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755,inode64',
  '2348 2347 0:417 / /dev/pts rw,nosuid,noexec,relatime - devpts devpts rw,gid=5,mode=620,ptmxmode=666',
  '2350 2345 0:405 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro',
  '2351 2350 0:30 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup rw,nsdelegate,memory_recursiveprot',
  '2352 2345 259:1 /var/lib/kubelet/pods/6f1c2a4e-9b1d-4e0e-8f4a-2b7c1d3e5f60/etc-hosts /etc/hosts rw,relatime - ext4 /dev/nvme0n1p1 rw',
  '2353 2347 259:1 /var/lib/kubelet/pods/6f1c2a4e-9b1d-4e0e-8f4a-2b7c1d3e5f60/containers/app/3a1b9c2d /dev/termination-log rw,relatime - ext4 /dev/nvme0n1p1 rw',
  '2356 2347 0:399 / /dev/shm rw,nosuid,nodev,noexec,relatime - tmpfs shm rw,size=65536k,inode64',
  '2358 2345 0:381 / /var/run/secrets/kubernetes.io/serviceaccount ro,relatime - tmpfs tmpfs rw,size=1048576k,inode64',
];

/** A mountinfo line of a tmpfs volume (the kubelet's emptyDir, medium Memory) at `mountPoint`, escaped as given. */
const tmpfsAt = (mountPoint: string, id = 2360): string =>
  `${id} 2345 0:${id - 2000} / ${mountPoint} ro,relatime - tmpfs tmpfs rw,size=1k,inode64`;

/** The mountinfo of a process of `container`, as the webhook's marker volume makes it. */
const markedMounts = (container: string): string[] => [
  ...CONTAINER_MOUNTS,
  tmpfsAt(targetMarkerPath(container)),
];

interface FakeProcess {
  pid: number;
  ppid: number;
  /** Its mountinfo lines (or the file's whole text, or a directory to make it unreadable); the container's if omitted. */
  mounts?: string[] | string | 'directory';
  /** Clock ticks after boot; pid * 10 if omitted. */
  started?: number;
  /** The kernel's short name (field 2 of stat); the base name of argv[0] if omitted. */
  comm?: string;
  cmdline?: string[];
  /** Files the process lost as it exited between two reads. */
  gone?: Array<'stat'>;
}

/** A proc dir as the kernel shows one: mountinfo, stat (field 22 the start time), NUL-separated cmdline, status. */
async function fakeProc(dir: string, procs: FakeProcess[]): Promise<string> {
  await mkdir(dir);
  for (const p of procs) await addProcess(dir, p);
  // Entries that are not processes, as in the real /proc.
  await mkdir(join(dir, 'sys'));
  await writeFile(join(dir, 'uptime'), '1.0 1.0\n');
  return dir;
}

async function addProcess(dir: string, p: FakeProcess): Promise<void> {
  const d = join(dir, String(p.pid));
  await mkdir(d);
  const argv = p.cmdline ?? ['/bin/app'];
  const mounts = p.mounts ?? CONTAINER_MOUNTS;
  if (mounts === 'directory') await mkdir(join(d, 'mountinfo'));
  else await writeFile(join(d, 'mountinfo'), typeof mounts === 'string' ? mounts : `${mounts.join('\n')}\n`);
  await writeFile(join(d, 'cmdline'), argv.map((a) => `${a}\0`).join(''));
  const comm = p.comm ?? (argv[0] ?? '').split('/').pop() ?? '';
  const started = p.started ?? p.pid * 10;
  if (!p.gone?.includes('stat')) {
    // Fields 3-21 as a sleeping process shows them; 23 on (vsize, rss, ...) shortened.
    await writeFile(
      join(d, 'stat'),
      `${p.pid} (${comm}) S ${p.ppid} ${p.pid} ${p.pid} 0 -1 4194560 396 216 0 1 0 0 0 0 20 0 1 0 ${started} 2990080 410 18446744073709551615\n`,
    );
  }
  await writeFile(
    join(d, 'status'),
    `Name:\t${comm}\nState:\tS (sleeping)\nPid:\t${p.pid}\nPPid:\t${p.ppid}\nUid:\t1000\t1000\t1000\t1000\n`,
  );
}

async function lookupError(promise: Promise<unknown>): Promise<ProcessLookupError> {
  const err = await promise.then(
    () => assert.fail('the lookup should have failed'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof ProcessLookupError, `not a ProcessLookupError: ${String(err)}`);
  assert.doesNotMatch(err.message, /hunter2/, 'an argument in the message');
  return err;
}

void describe('findContainerProcess on a fake proc dir', () => {
  let root: string;
  let n = 0;
  const fresh = (procs: FakeProcess[]): Promise<string> => fakeProc(join(root, `proc-${++n}`), procs);

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'processes-'));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  void it('finds the one process of the container, with the first word of its command line only', async () => {
    const procDir = await fresh([
      { pid: 1, ppid: 0, mounts: CONTAINER_MOUNTS, cmdline: ['/pause'] },
      {
        pid: 7,
        ppid: 0,
        mounts: markedMounts('app'),
        cmdline: ['/usr/sbin/nginx', '-c', '/etc/nginx.conf', '--key=hunter2'],
      },
      { pid: 9, ppid: 0, mounts: markedMounts('other'), cmdline: ['/bin/other'] },
      { pid: 11, ppid: 0, cmdline: ['/reloader'] },
    ]);
    assert.deepEqual(await findContainerProcess('app', { procDir }), { pid: 7, command: '/usr/sbin/nginx' });
    assert.deepEqual(await findContainerProcess('other', { procDir }), { pid: 9, command: '/bin/other' });
  });

  void it('a child of the main process has the same mounts and is not a second match (nor a grandchild)', async () => {
    const procDir = await fresh([
      { pid: 1, ppid: 0, cmdline: ['/pause'] },
      // Started in the same clock tick as their parents, with lower PIDs (PIDs wrap): the parent rule decides.
      { pid: 20, ppid: 0, started: 500, mounts: markedMounts('app'), cmdline: ['/bin/sh', '-c', 'run'] },
      { pid: 8, ppid: 20, started: 500, mounts: markedMounts('app'), cmdline: ['/bin/worker'] },
      { pid: 5, ppid: 8, started: 500, mounts: markedMounts('app'), cmdline: ['/bin/helper'] },
    ]);
    assert.deepEqual(await findContainerProcess('app', { procDir }), { pid: 20, command: '/bin/sh' });
  });

  void it('several top-level processes (a kubectl exec session, a daemon re-parented to pause): the oldest by starttime', async () => {
    const procDir = await fresh([
      { pid: 1, ppid: 0, cmdline: ['/pause'] },
      // The exec session: PPid 0 too, a lower PID (PIDs wrapped) but started later.
      { pid: 30, ppid: 0, started: 90_000, mounts: markedMounts('app'), cmdline: ['/bin/sh'] },
      { pid: 31, ppid: 30, started: 90_100, mounts: markedMounts('app'), cmdline: ['/bin/cat'] },
      // The container's first process, started first.
      {
        pid: 4000,
        ppid: 0,
        started: 1_000,
        mounts: markedMounts('app'),
        cmdline: ['/usr/bin/vmagent', '-x=hunter2'],
      },
      // A daemon that double-forked inside the container: its parent is pause, which is not a candidate.
      { pid: 4100, ppid: 1, started: 1_500, mounts: markedMounts('app'), cmdline: ['/usr/bin/daemon'] },
    ]);
    assert.deepEqual(await findContainerProcess('app', { procDir }), {
      pid: 4000,
      command: '/usr/bin/vmagent',
    });
  });

  void it('two top-level processes started in the same clock tick: the lower PID', async () => {
    const procDir = await fresh([
      { pid: 61, ppid: 0, started: 7, mounts: markedMounts('app'), cmdline: ['/bin/b'] },
      { pid: 60, ppid: 0, started: 7, mounts: markedMounts('app'), cmdline: ['/bin/a'] },
    ]);
    assert.deepEqual(await findContainerProcess('app', { procDir }), { pid: 60, command: '/bin/a' });
  });

  void it('reads ppid and starttime after the LAST ")" of stat: comm may hold spaces and ")"', async () => {
    const procDir = await fresh([
      // Counted from the first ")", this comm would say PPid 70 (a candidate) and starttime 9.
      { pid: 72, ppid: 0, started: 100, comm: 'w) S 70 9 9 9 ', mounts: markedMounts('app'), cmdline: [] },
      { pid: 70, ppid: 0, started: 500, comm: 'my (app)', mounts: markedMounts('app'), cmdline: [] },
      { pid: 75, ppid: 0, started: 50, comm: 'x (y) z', mounts: markedMounts('solo'), cmdline: [] },
    ]);
    // With no command line (a zombie, a kernel thread), the command is the kernel's short name.
    assert.deepEqual(await findContainerProcess('app', { procDir }), { pid: 72, command: 'w) S 70 9 9 9 ' });
    assert.deepEqual(await findContainerProcess('solo', { procDir }), { pid: 75, command: 'x (y) z' });
  });

  void it('none: the error counts the processes and names shareProcessNamespace and the marker mount', async () => {
    const procDir = await fresh([
      { pid: 1, ppid: 0, cmdline: ['/pause'] },
      { pid: 5, ppid: 0, mounts: markedMounts('other'), cmdline: ['/bin/other'] },
      { pid: 6, ppid: 0, cmdline: ['/reloader', '--password=hunter2'] },
    ]);
    const err = await lookupError(findContainerProcess('app', { procDir }));
    assert.match(err.message, /^no process of container "app" among 3 processes: /);
    assert.match(err.message, /a mount at \/run\/config-reloader\/containers\/app in /);
    assert.match(err.message, /shareProcessNamespace: true \(the webhook sets it\)/);
    assert.match(err.message, /must carry the mount at that path/);
    assert.match(err.message, /injected by an older version/);
    assert.equal(err.scanned, 3);
    assert.equal(err.unreadable, 0);
  });

  void it('the mount point must be exactly the marker path: not a longer or shorter name, deeper, elsewhere, nor the root field', async () => {
    const m = TARGET_MARKER_DIR;
    const procDir = await fresh([
      { pid: 2, ppid: 0, mounts: [...CONTAINER_MOUNTS, tmpfsAt(`${m}/app2`)] },
      { pid: 3, ppid: 0, mounts: [...CONTAINER_MOUNTS, tmpfsAt(`${m}/ap`)] },
      {
        pid: 4,
        ppid: 0,
        mounts: [...CONTAINER_MOUNTS, tmpfsAt(`${m}/app/sub`), tmpfsAt(`${m}/app-sidecar`, 2361)],
      },
      { pid: 5, ppid: 0, mounts: [...CONTAINER_MOUNTS, tmpfsAt(`/x${m}/app`), tmpfsAt(`${m}`, 2362)] },
      // The marker path as the mounted directory's root (4th field), mounted elsewhere (5th).
      {
        pid: 6,
        ppid: 0,
        mounts: [...CONTAINER_MOUNTS, `2363 2345 0:380 ${m}/app /mnt/app ro,relatime - tmpfs tmpfs rw`],
      },
      // The path as mount source or in the options (fields after " - ").
      {
        pid: 7,
        ppid: 0,
        mounts: [...CONTAINER_MOUNTS, `2364 2345 0:380 / /mnt ro - tmpfs ${m}/app rw,x=${m}/app`],
      },
      // A mount point escaped by the kernel that only decodes to something else.
      { pid: 8, ppid: 0, mounts: [...CONTAINER_MOUNTS, tmpfsAt(`${m}/app\\040`)] },
    ]);
    const err = await lookupError(findContainerProcess('app', { procDir }));
    assert.match(err.message, /among 7 processes/);
    // And each of those is found by its own exact name.
    assert.equal((await findContainerProcess('app2', { procDir })).pid, 2);
    assert.equal((await findContainerProcess('ap', { procDir })).pid, 3);
    assert.equal((await findContainerProcess('app/sub', { procDir })).pid, 4);
    assert.equal((await findContainerProcess('app-sidecar', { procDir })).pid, 4);
    assert.equal((await findContainerProcess('app ', { procDir })).pid, 8);
  });

  void it("decodes the kernel's octal escapes in the mount point (a space as \\040, a backslash as \\134)", async () => {
    const procDir = await fresh([
      { pid: 2, ppid: 0, mounts: [...CONTAINER_MOUNTS, tmpfsAt(`${TARGET_MARKER_DIR}/my\\040app`)] },
      { pid: 3, ppid: 0, mounts: [...CONTAINER_MOUNTS, tmpfsAt(`${TARGET_MARKER_DIR}/a\\134040b\\011c`)] },
    ]);
    assert.equal((await findContainerProcess('my app', { procDir })).pid, 2);
    assert.equal((await findContainerProcess('a\\040b\tc', { procDir })).pid, 3);
    // Not the escaped text itself.
    await lookupError(findContainerProcess('my\\040app', { procDir }));
  });

  /** Lines of other volumes, `bytes` long at most (with their newlines) and not 80 bytes less. */
  const filler = (bytes: number): string[] => {
    const lines: string[] = [];
    for (let i = 0, size = 0; ; i++) {
      const line = tmpfsAt(`/data/volume-${i}`, 3000 + i);
      if (size + line.length + 1 > bytes) return lines;
      lines.push(line);
      size += line.length + 1;
    }
  };

  void it('reads mountinfo in chunks: a marker line across a chunk boundary, or at the end without a newline', async () => {
    // 16 KiB chunks: the filler ends a little before the first boundary, so the marker line straddles it.
    const head = filler(16 * 1024 - 20);
    const marker = tmpfsAt(targetMarkerPath('app'));
    const at = head.join('\n').length + 1;
    assert.ok(
      at < 16 * 1024 && at + marker.length > 16 * 1024,
      `the marker line spans ${at}-${at + marker.length}`,
    );
    const procDir = await fresh([
      { pid: 2, ppid: 0, mounts: [...head, marker, ...filler(40_000)] },
      { pid: 3, ppid: 0, mounts: [...filler(20_000), tmpfsAt(targetMarkerPath('last'))].join('\n') },
    ]);
    assert.equal((await findContainerProcess('app', { procDir })).pid, 2);
    assert.equal((await findContainerProcess('last', { procDir })).pid, 3);
  });

  void it('an unreadable or oversized mountinfo is counted in the error, not matched', async () => {
    const procDir = await fresh([
      // A directory answers EISDIR, as some failure other than the process exiting.
      { pid: 2, ppid: 0, mounts: 'directory' },
      // Over the 1 MiB cap: the marker after it is never read.
      { pid: 3, ppid: 0, mounts: [...filler(1024 * 1024 + 100), tmpfsAt(targetMarkerPath('app'))] },
      // Just under it: read whole.
      { pid: 4, ppid: 0, mounts: [...filler(1024 * 1024 - 200), tmpfsAt(targetMarkerPath('big'))] },
    ]);
    const err = await lookupError(findContainerProcess('app', { procDir }));
    assert.equal(err.unreadable, 2);
    assert.match(err.message, /among 3 processes \(2 of them with an unreadable mountinfo: EFBIG, EISDIR\)/);
    assert.equal((await findContainerProcess('big', { procDir })).pid, 4);
  });

  void it('skips processes that exit during the scan, and never picks the reloader itself', async () => {
    const procDir = await fresh([
      { pid: 40, ppid: 0, started: 900, mounts: markedMounts('app'), cmdline: ['/bin/app'] },
      // Exited after its mountinfo was read: its stat is gone (ENOENT).
      { pid: 39, ppid: 0, started: 100, mounts: markedMounts('app'), gone: ['stat'] },
      { pid: process.pid, ppid: 0, started: 1, mounts: markedMounts('app'), cmdline: ['/reloader'] },
    ]);
    // A process whose directory is still listed but whose files are gone (it exited): ENOENT.
    await mkdir(join(procDir, '41'));
    assert.deepEqual(await findContainerProcess('app', { procDir }), { pid: 40, command: '/bin/app' });
  });

  void it('an unlistable proc dir: an error naming it', async () => {
    const err = await lookupError(findContainerProcess('app', { procDir: join(root, 'missing') }));
    assert.match(err.message, /cannot list .*missing.*ENOENT/);
  });
});

void describe('signalContainer on a fake proc dir, with the kernel answer stood in for', () => {
  let root: string;
  let n = 0;
  const fresh = (procs: FakeProcess[]): Promise<string> => fakeProc(join(root, `proc-${++n}`), procs);
  const errno = (code: string): Error => Object.assign(new Error(`kill ${code}`), { code });

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'processes-signal-'));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  void it('ESRCH (the process exited before the signal reached it): looks up again once and signals the new one', async () => {
    const procDir = await fresh([{ pid: 50, ppid: 0, mounts: markedMounts('app'), cmdline: ['/bin/app'] }]);
    // What the restarted container looks like on the second lookup: the old process gone, a new PID.
    const restarted = await fakeProc(join(root, `restarted-${++n}`), [
      { pid: 51, ppid: 0, mounts: markedMounts('app'), cmdline: ['/bin/app-v2'] },
    ]);
    const sent: Array<[number, ContainerSignal]> = [];
    const found = await signalContainer('app', 'SIGHUP', {
      procDir,
      kill: (pid, signal) => {
        sent.push([pid, signal]);
        if (sent.length === 1) {
          renameSync(procDir, `${procDir}-old`);
          renameSync(restarted, procDir);
          throw errno('ESRCH');
        }
      },
    });
    assert.deepEqual(sent, [
      [50, 'SIGHUP'],
      [51, 'SIGHUP'],
    ]);
    assert.deepEqual(found, { pid: 51, command: '/bin/app-v2' });
  });

  void it('ESRCH twice: gives up with an error saying the container is probably restarting', async () => {
    const procDir = await fresh([{ pid: 55, ppid: 0, mounts: markedMounts('app'), cmdline: ['/bin/app'] }]);
    const sent: number[] = [];
    const err = await lookupError(
      signalContainer('app', 'SIGHUP', {
        procDir,
        kill: (pid) => {
          sent.push(pid);
          throw errno('ESRCH');
        },
      }),
    );
    assert.deepEqual(sent, [55, 55]);
    assert.match(err.message, /container "app" exited twice just before SIGHUP reached it/);
    assert.match(err.message, /restarting; the next change tries again/);
  });

  void it('EPERM: a SignalError naming the uid rule and the fix', async () => {
    const procDir = await fresh([
      { pid: 60, ppid: 0, mounts: markedMounts('app'), cmdline: ['/bin/app', '--key=hunter2'] },
    ]);
    const err = await signalContainer('app', 'SIGUSR1', {
      procDir,
      kill: () => {
        throw errno('EPERM');
      },
    }).then(
      () => assert.fail('should have failed'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof SignalError, String(err));
    assert.equal(err.pid, 60);
    assert.match(
      err.message,
      /SIGUSR1 to process 60 \(\/bin\/app\), the main process of container "app", was refused \(EPERM\)/,
    );
    assert.match(err.message, /it runs as uid 1000/);
    assert.match(err.message, /same uid/);
    assert.match(err.message, /The sidecar must run with the container's runAsUser \(the webhook sets it\)/);
    assert.doesNotMatch(err.message, /hunter2/);
  });

  void it('aborted (the reloader closing during the lookup): nothing is signalled, it rejects with the reason', async () => {
    const procDir = await fresh([{ pid: 65, ppid: 0, mounts: markedMounts('app') }]);
    const sent: number[] = [];
    const closing = new AbortController();
    const pending = signalContainer('app', 'SIGHUP', {
      procDir,
      kill: (pid) => void sent.push(pid),
      signal: closing.signal,
    });
    closing.abort(new Error('closed'));
    await assert.rejects(pending, /^Error: closed$/);
    assert.deepEqual(sent, [], 'no signal after the abort');
  });

  void it('no process: ProcessLookupError, and nothing is signalled', async () => {
    const procDir = await fresh([{ pid: 70, ppid: 0, mounts: markedMounts('other') }]);
    const sent: number[] = [];
    await lookupError(signalContainer('app', 'SIGHUP', { procDir, kill: (pid) => void sent.push(pid) }));
    assert.deepEqual(sent, []);
  });
});

// ---- Real processes in real mount namespaces ----

const isRoot = process.getuid?.() === 0;
const hasTools = ((): boolean => {
  try {
    execFileSync('sh', ['-c', 'command -v unshare && command -v setpriv && command -v nsenter'], {
      stdio: 'ignore',
    });
    return true;
  } catch {
    return false;
  }
})();
const realSkip = !isRoot
  ? 'needs root, to make mount namespaces and run as other users'
  : !hasTools && 'needs unshare, setpriv and nsenter';

const APP_UID = 1000;
const OTHER_ID = 1001;
/** Each real process a test starts, stopped by PID at the end whatever happened. */
const started = new Map<number, ChildProcess | undefined>();
const RUN = `t${process.pid}-${randomBytes(4).toString('hex')}`;
/** Marker directories this run made on the host's /run (mkdir -p there, the tmpfs only in the namespace). */
const markerDirs = new Set<string>();

/** Prints `<role> ready`, then `<role> <signal>` for each SIGHUP or SIGUSR1; SIGTERM ends it. */
const ROLE = `
const role = process.argv[1];
for (const s of ['SIGHUP', 'SIGUSR1']) process.on(s, () => console.log(role + ' ' + s));
setInterval(() => {}, 1 << 30);
console.log(role + ' ready');
`;

interface Container {
  main: ChildProcess;
  grandchild: number;
  lines: string[];
  waitLine: (line: string | RegExp) => Promise<string>;
  exited: Promise<NodeJS.Signals | null>;
}

/**
 * A container as the kubelet leaves one: its own mount namespace (unshare -m, private propagation so the tmpfs
 * stays inside it) with the marker volume mounted at targetMarkerPath(name), the app running as uid APP_UID, and
 * a child in the same namespace, as a shell entrypoint leaves it: `sh -c 'node grandchild & exec node main'`.
 * unshare, sh, setpriv and sh all exec, so the spawned PID is the main process. Both print to one stdout pipe.
 */
async function startContainer(name: string): Promise<Container> {
  const marker = targetMarkerPath(name);
  markerDirs.add(marker);
  const inner = '"$0" -e "$1" grandchild & echo "grandchild $!"; exec "$0" -e "$1" main';
  const outer =
    'mkdir -p "$2" && mount -t tmpfs -o size=4k,mode=755 tmpfs "$2" && ' +
    'exec setpriv --reuid="$3" --regid="$3" --clear-groups /bin/sh -c "$4" "$0" "$1"';
  const main = spawn(
    'unshare',
    [
      '-m',
      '--propagation',
      'private',
      '/bin/sh',
      '-c',
      outer,
      process.execPath,
      ROLE,
      marker,
      String(APP_UID),
      inner,
    ],
    { env: { PATH: process.env.PATH }, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  started.set(main.pid as number, main);
  const exited = new Promise<NodeJS.Signals | null>((resolve) =>
    main.on('exit', (_code, signal) => resolve(signal)),
  );
  const { lines, waitLine } = childLines(main);
  await waitLine('main ready');
  await waitLine('grandchild ready');
  const grandchild = Number((await waitLine(/^grandchild \d+$/)).split(' ')[1]);
  started.set(grandchild, undefined);
  return { main, grandchild, lines, waitLine, exited };
}

/** Runs findContainerProcess (or signalContainer, given a signal) as another uid and gid: its result or error. */
function lookupAs(
  uid: number,
  gid: number,
  container: string,
  signal?: ContainerSignal,
): Promise<{ found?: { pid: number; command: string }; error?: string; name?: string }> {
  const script = `
    const [, path, container, signal] = process.argv;
    const { findContainerProcess, signalContainer } = await import(path);
    try {
      const found = signal ? await signalContainer(container, signal) : await findContainerProcess(container);
      console.log(JSON.stringify({ found }));
    } catch (e) {
      console.log(JSON.stringify({ error: e.message, name: e.constructor.name }));
    }`;
  const args = [
    `--reuid=${uid}`,
    `--regid=${gid}`,
    '--clear-groups',
    process.execPath,
    '--input-type=module',
    '-e',
    script,
  ];
  return new Promise((resolve, reject) =>
    execFile(
      'setpriv',
      [...args, PROCESSES, container, ...(signal ? [signal] : [])],
      (err, stdout, stderr) =>
        err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(JSON.parse(stdout) as never),
    ),
  );
}

const signalLines = (lines: string[]): string[] => lines.filter((l) => / SIG/.test(l));

void describe('the real /proc: containers in their own mount namespaces', { skip: realSkip }, () => {
  // Whether this run made the marker directories' parents, so that it removes only what it made.
  const made: string[] = [];

  before(() => {
    for (let dir = TARGET_MARKER_DIR; dir !== '/run' && dir !== '/'; dir = dirname(dir)) {
      if (!existsSync(dir)) made.push(dir);
    }
  });

  after(async () => {
    await Promise.all(
      [...started].map(async ([pid, child]) => {
        const gone =
          child && child.exitCode === null && child.signalCode === null
            ? new Promise((resolve) => child.on('exit', resolve))
            : undefined;
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
        await gone;
      }),
    );
    for (const dir of [...markerDirs, ...made]) {
      try {
        await rmdir(dir);
      } catch (err) {
        // Another run's marker still there (ENOTEMPTY), or never made (ENOENT).
        if (!['ENOTEMPTY', 'ENOENT', 'EEXIST'].includes((err as NodeJS.ErrnoException).code ?? '')) throw err;
      }
    }
  });

  void it('SIGHUP reaches the main process only, not its child in the same mount namespace', async () => {
    const container = `${RUN}-hup`;
    const c = await startContainer(container);
    assert.deepEqual(await signalContainer(container, 'SIGHUP'), {
      pid: c.main.pid,
      command: process.execPath,
    });
    await c.waitLine('main SIGHUP');
    // Signals reach a process in the order sent: had the child got SIGHUP, it would print that before this one.
    process.kill(c.grandchild, 'SIGUSR1');
    await c.waitLine('grandchild SIGUSR1');
    assert.deepEqual(signalLines(c.lines), ['main SIGHUP', 'grandchild SIGUSR1']);
  });

  void it('a later top-level process in the same mount namespace (as kubectl exec makes one) is not taken', async () => {
    const container = `${RUN}-exec`;
    const c = await startContainer(container);
    // nsenter (without -p) execs: the session's parent is this test, outside the container, like exec's runtime.
    const session = spawn(
      'nsenter',
      [
        '-t',
        String(c.main.pid),
        '-m',
        '--',
        'setpriv',
        `--reuid=${APP_UID}`,
        `--regid=${APP_UID}`,
        '--clear-groups',
      ].concat([process.execPath, '-e', ROLE, 'session']),
      { env: { PATH: process.env.PATH }, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    started.set(session.pid as number, session);
    const s = childLines(session);
    await s.waitLine('session ready');
    const mountinfo = await readFile(`/proc/${session.pid}/mountinfo`, 'utf8');
    assert.ok(mountinfo.includes(` ${targetMarkerPath(container)} `), 'the session is not in the container');
    assert.equal((await findContainerProcess(container)).pid, c.main.pid);
  });

  void it('SIGTERM ends the main process', async () => {
    const container = `${RUN}-term`;
    const c = await startContainer(container);
    const found = await signalContainer(container, 'SIGTERM');
    assert.equal(found.pid, c.main.pid);
    assert.equal(await c.exited, 'SIGTERM');
  });

  void it('as another uid: found (mountinfo needs no ptrace access), the signal refused with a SignalError', async () => {
    const container = `${RUN}-other`;
    const c = await startContainer(container);
    assert.deepEqual((await lookupAs(OTHER_ID, OTHER_ID, container)).found, {
      pid: c.main.pid,
      command: process.execPath,
    });
    const refused = await lookupAs(OTHER_ID, APP_UID, container, 'SIGHUP');
    assert.equal(refused.name, 'SignalError', JSON.stringify(refused));
    assert.match(
      refused.error ?? '',
      new RegExp(`SIGHUP to process ${c.main.pid} .* was refused \\(EPERM\\)`),
    );
    assert.match(
      refused.error ?? '',
      new RegExp(`it runs as uid ${APP_UID} and the reloader as uid ${OTHER_ID}`),
    );
    // The container's uid with another gid: kill(2) looks at the uid only.
    assert.deepEqual((await lookupAs(APP_UID, OTHER_ID, container, 'SIGHUP')).found?.pid, c.main.pid);
    await c.waitLine('main SIGHUP');
    // SIGUSR1 to main after: had the refused SIGHUP arrived, two SIGHUP lines would come before it.
    process.kill(c.main.pid as number, 'SIGUSR1');
    await c.waitLine('main SIGUSR1');
    assert.deepEqual(signalLines(c.lines), ['main SIGHUP', 'main SIGUSR1']);
  });

  void it('no such container: the error counts the processes; a zombie (mountinfo EINVAL) is not unreadable', async () => {
    // The background child exits only once its parent shell has exec'd `sleep`, which never reaps it: a zombie.
    const parent = spawn(
      '/bin/sh',
      [
        '-c',
        'p=$$; (until read c < /proc/$p/comm && [ "$c" = sleep ]; do :; done) & echo $!; exec sleep 1000',
      ],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    );
    started.set(parent.pid as number, parent);
    const zombie = Number(await childLines(parent).waitLine(/^\d+$/));
    // Polls until `true` has exited: a wait for a state, not a time limit.
    for (;;) {
      const state = (await readFile(`/proc/${zombie}/stat`, 'latin1')).split(') ')[1]?.[0];
      if (state === 'Z') break;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const err = await lookupError(findContainerProcess(`${RUN}-absent`));
    assert.match(err.message, new RegExp(`container "${RUN}-absent" among \\d+ processes: `));
    assert.ok(err.scanned > 1);
    assert.equal(err.unreadable, 0);
  });
});
