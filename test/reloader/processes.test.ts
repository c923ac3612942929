/**
 * Finding a container's main process in a shared process namespace, and signalling it: against fake proc dirs
 * for the matching rule, and against the real /proc with real processes (started with the marker env var, a
 * child of the main process carrying it too) for the signals and the uid/gid rule of /proc/PID/environ.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { renameSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  CONTAINER_MARKER,
  findContainerProcess,
  ProcessLookupError,
  signalContainer,
  SignalError,
  type ContainerSignal,
} from '../../src/reloader/processes.ts';

const PROCESSES = fileURLToPath(new URL('../../src/reloader/processes.ts', import.meta.url));
const SECRET = 'DB_PASSWORD=hunter2';

interface FakeProcess {
  pid: number;
  ppid: number;
  env: string[];
  cmdline?: string[];
}

/** A proc dir as the kernel shows one: NUL-separated environ and cmdline, a status file with Name and PPid. */
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
  await writeFile(join(d, 'environ'), p.env.map((e) => `${e}\0`).join(''));
  await writeFile(join(d, 'cmdline'), argv.map((a) => `${a}\0`).join(''));
  const name = (argv[0] ?? '').split('/').pop() ?? '';
  await writeFile(
    join(d, 'status'),
    `Name:\t${name}\nState:\tS (sleeping)\nPid:\t${p.pid}\nPPid:\t${p.ppid}\n`,
  );
}

const marked = (container: string): string[] => ['PATH=/bin', `${CONTAINER_MARKER}=${container}`, SECRET];

async function lookupError(promise: Promise<unknown>): Promise<ProcessLookupError> {
  const err = await promise.then(
    () => assert.fail('the lookup should have failed'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof ProcessLookupError, `not a ProcessLookupError: ${String(err)}`);
  assert.doesNotMatch(err.message, /hunter2/, 'an environment value in the message');
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
      { pid: 1, ppid: 0, env: [], cmdline: ['/pause'] },
      {
        pid: 7,
        ppid: 0,
        env: marked('app'),
        cmdline: ['/usr/sbin/nginx', '-c', '/etc/nginx.conf', '--key=hunter2'],
      },
      { pid: 9, ppid: 0, env: marked('other'), cmdline: ['/bin/other'] },
      { pid: 11, ppid: 0, env: ['HOME=/'], cmdline: ['/reloader'] },
    ]);
    assert.deepEqual(await findContainerProcess('app', { procDir }), { pid: 7, command: '/usr/sbin/nginx' });
    assert.deepEqual(await findContainerProcess('other', { procDir }), { pid: 9, command: '/bin/other' });
  });

  void it('a child of the main process carries the same marker and is not a second match (nor a grandchild)', async () => {
    const procDir = await fresh([
      { pid: 1, ppid: 0, env: [], cmdline: ['/pause'] },
      { pid: 20, ppid: 0, env: marked('app'), cmdline: ['/bin/sh', '-c', 'run'] },
      { pid: 21, ppid: 20, env: marked('app'), cmdline: ['/bin/worker'] },
      { pid: 22, ppid: 21, env: marked('app'), cmdline: ['/bin/helper'] },
    ]);
    assert.deepEqual(await findContainerProcess('app', { procDir }), { pid: 20, command: '/bin/sh' });
  });

  void it('two top-level processes of one container: an error listing both PIDs and commands', async () => {
    const procDir = await fresh([
      { pid: 1, ppid: 0, env: [], cmdline: ['/pause'] },
      { pid: 30, ppid: 0, env: marked('app'), cmdline: ['/usr/bin/vmagent', '-promscrape.config=x'] },
      { pid: 31, ppid: 30, env: marked('app'), cmdline: ['/bin/child'] },
      { pid: 45, ppid: 1, env: marked('app'), cmdline: ['nginx: master process /usr/sbin/nginx'] },
    ]);
    const err = await lookupError(findContainerProcess('app', { procDir }));
    assert.deepEqual(err.pids, [30, 45]);
    assert.match(err.message, /30 \(\/usr\/bin\/vmagent\), 45 \(nginx:\)/);
    assert.match(err.message, /container "app"/);
    assert.match(err.message, /must be unique/);
    assert.match(err.message, /next change tries again/);
    assert.doesNotMatch(err.message, /promscrape/);
  });

  void it('none: the error counts the processes and names shareProcessNamespace, runAsUser and runAsGroup', async () => {
    const procDir = await fresh([
      { pid: 1, ppid: 0, env: [], cmdline: ['/pause'] },
      { pid: 5, ppid: 0, env: marked('other'), cmdline: ['/bin/other'] },
      { pid: 6, ppid: 0, env: ['HOME=/', SECRET], cmdline: ['/reloader'] },
    ]);
    const err = await lookupError(findContainerProcess('app', { procDir }));
    assert.match(err.message, /no process of container "app" was found among 3 processes:/);
    assert.match(err.message, /shareProcessNamespace: true/);
    assert.match(err.message, /runAsUser and runAsGroup/);
    assert.match(err.message, /same uid and gid/);
    assert.equal(err.scanned, 3);
    assert.equal(err.unreadable, 0);
  });

  void it('matches the exact entry only: not a longer name, a prefix of the name, nor the entry inside a value', async () => {
    const procDir = await fresh([
      { pid: 2, ppid: 0, env: ['PATH=/bin', `${CONTAINER_MARKER}=app2`] },
      { pid: 3, ppid: 0, env: [`${CONTAINER_MARKER}=ap`] },
      { pid: 4, ppid: 0, env: [`X${CONTAINER_MARKER}=app`, `OTHER=${CONTAINER_MARKER}=app`] },
      { pid: 5, ppid: 0, env: [`${CONTAINER_MARKER}=app-sidecar`] },
    ]);
    const err = await lookupError(findContainerProcess('app', { procDir }));
    assert.match(err.message, /among 4 processes/);
    // And each of those is found by its own exact name, wherever the entry sits in the environment.
    assert.equal((await findContainerProcess('app2', { procDir })).pid, 2);
    assert.equal((await findContainerProcess('ap', { procDir })).pid, 3);
    assert.equal((await findContainerProcess('app-sidecar', { procDir })).pid, 5);
  });

  void it('skips processes that exit during the scan, and never picks the reloader itself', async () => {
    const procDir = await fresh([
      { pid: 40, ppid: 0, env: marked('app'), cmdline: ['/bin/app'] },
      { pid: process.pid, ppid: 0, env: marked('app'), cmdline: ['/reloader'] },
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
    const procDir = await fresh([{ pid: 50, ppid: 0, env: marked('app'), cmdline: ['/bin/app'] }]);
    // What the restarted container looks like on the second lookup: the old process gone, a new PID.
    const restarted = await fakeProc(join(root, `restarted-${++n}`), [
      { pid: 51, ppid: 0, env: marked('app'), cmdline: ['/bin/app-v2'] },
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
    const procDir = await fresh([{ pid: 55, ppid: 0, env: marked('app'), cmdline: ['/bin/app'] }]);
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
    const procDir = await fresh([{ pid: 60, ppid: 0, env: marked('app'), cmdline: ['/bin/app', SECRET] }]);
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
    assert.match(err.message, /same uid/);
    assert.match(err.message, /runAsUser/);
    assert.match(err.message, /overrides/);
    assert.doesNotMatch(err.message, /hunter2/);
  });

  void it('no process: ProcessLookupError, and nothing is signalled', async () => {
    const procDir = await fresh([{ pid: 70, ppid: 0, env: marked('other') }]);
    const sent: number[] = [];
    await lookupError(signalContainer('app', 'SIGHUP', { procDir, kill: (pid) => void sent.push(pid) }));
    assert.deepEqual(sent, []);
  });
});

/** Each real process a test starts, stopped by PID at the end whatever happened. */
const started = new Set<number>();
const RUN = `t${process.pid}-${randomBytes(4).toString('hex')}`;

/** Prints `<role> ready`, then `<role> <signal>` for each SIGHUP or SIGUSR1; SIGTERM ends it. */
const ROLE = `
const role = process.argv[1];
for (const s of ['SIGHUP', 'SIGUSR1']) process.on(s, () => console.log(role + ' ' + s));
setInterval(() => {}, 1 << 30);
console.log(role + ' ready');
`;

interface Family {
  main: ChildProcess;
  grandchild: number;
  lines: string[];
  waitLine: (line: string) => Promise<void>;
  exited: Promise<NodeJS.Signals | null>;
}

/**
 * A container's processes as a shell entrypoint leaves them: `sh -c 'node grandchild & exec node main'`, so the
 * main process (the shell, then node) has a child that inherited the marker. Both write to one stdout pipe.
 */
async function startFamily(container: string): Promise<Family> {
  const main = spawn(
    '/bin/sh',
    ['-c', '"$0" -e "$1" grandchild & echo "grandchild $!"; exec "$0" -e "$1" main', process.execPath, ROLE],
    { env: { PATH: process.env.PATH, [CONTAINER_MARKER]: container }, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  started.add(main.pid as number);
  const lines: string[] = [];
  const waiters = new Set<() => void>();
  let rest = '';
  main.stdout?.on('data', (chunk: Buffer) => {
    const parts = (rest + chunk.toString()).split('\n');
    rest = parts.pop() ?? '';
    lines.push(...parts);
    for (const w of waiters) w();
  });
  const exited = new Promise<NodeJS.Signals | null>((resolve) =>
    main.on('exit', (_code, signal) => resolve(signal)),
  );
  const waitLine = (line: string): Promise<void> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        if (lines.includes(line)) resolve();
        else if (main.exitCode !== null || main.signalCode !== null)
          reject(new Error(`exited before "${line}"`));
        else return;
        waiters.delete(check);
      };
      waiters.add(check);
      main.on('exit', check);
      check();
    });
  await waitLine('main ready');
  await waitLine('grandchild ready');
  const grandchild = Number(lines.find((l) => /^grandchild \d+$/.test(l))?.split(' ')[1]);
  started.add(grandchild);
  return { main, grandchild, lines, waitLine, exited };
}

void describe('signalContainer on the real /proc', () => {
  after(() => {
    for (const pid of started) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
  });

  void it('SIGHUP reaches the main process only, not its child that carries the same marker', async () => {
    const container = `${RUN}-hup`;
    const family = await startFamily(container);
    assert.deepEqual(await signalContainer(container, 'SIGHUP'), {
      pid: family.main.pid,
      command: process.execPath,
    });
    await family.waitLine('main SIGHUP');
    // Signals reach a process in the order sent (and pending ones by number, SIGHUP first): had the child got
    // SIGHUP, it would print that before answering this SIGUSR1.
    process.kill(family.grandchild, 'SIGUSR1');
    await family.waitLine('grandchild SIGUSR1');
    assert.deepEqual(
      family.lines.filter((l) => / SIG/.test(l)),
      ['main SIGHUP', 'grandchild SIGUSR1'],
    );
  });

  void it('SIGTERM ends the main process', async () => {
    const container = `${RUN}-term`;
    const family = await startFamily(container);
    const found = await signalContainer(container, 'SIGTERM');
    assert.equal(found.pid, family.main.pid);
    assert.equal(await family.exited, 'SIGTERM');
  });

  void it('no marked process: the error says so, with the count of processes looked at', async () => {
    const err = await lookupError(findContainerProcess(`${RUN}-absent`));
    assert.match(err.message, new RegExp(`container "${RUN}-absent" was found among \\d+ processes`));
    assert.ok(err.scanned > 1);
  });
});

const isRoot = process.getuid?.() === 0;
const APP_UID = 1000;
const OTHER_ID = 1001;

/** Runs findContainerProcess (or signalContainer, given a signal) as another user; its result or error. */
function lookupAs(
  uid: number,
  gid: number,
  container: string,
  signal?: ContainerSignal,
): Promise<{ found?: { pid: number; command: string }; error?: string; unreadable?: number }> {
  const script = `
    const [, path, container, signal] = process.argv;
    const { findContainerProcess, signalContainer } = await import(path);
    try {
      const found = signal ? await signalContainer(container, signal) : await findContainerProcess(container);
      console.log(JSON.stringify({ found }));
    } catch (e) {
      console.log(JSON.stringify({ error: e.message, unreadable: e.unreadable }));
    }`;
  const args = ['--input-type=module', '-e', script, PROCESSES, container, ...(signal ? [signal] : [])];
  return new Promise((resolve, reject) =>
    execFile(process.execPath, args, { uid, gid }, (err, stdout, stderr) =>
      err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(JSON.parse(stdout) as never),
    ),
  );
}

void describe(
  'the uid and gid rule of /proc/PID/environ, with real users',
  { skip: !isRoot && 'needs root, to run processes as other users' },
  () => {
    let app: ChildProcess;
    let exited: Promise<NodeJS.Signals | null>;
    const container = `${RUN}-uid`;

    before(() => {
      app = spawn('sleep', ['1000'], {
        uid: APP_UID,
        gid: APP_UID,
        env: { PATH: process.env.PATH, [CONTAINER_MARKER]: container },
        stdio: 'ignore',
      });
      started.add(app.pid as number);
      exited = new Promise((resolve) => app.on('exit', (_code, signal) => resolve(signal)));
    });
    after(() => {
      try {
        process.kill(app.pid as number, 'SIGKILL');
      } catch {
        // Already gone.
      }
    });

    void it("another gid, or another uid, cannot read the container's environ: not found, unreadable counted", async () => {
      for (const [uid, gid] of [
        [APP_UID, OTHER_ID],
        [OTHER_ID, APP_UID],
      ] as const) {
        const answer = await lookupAs(uid, gid, container);
        assert.equal(answer.found, undefined, `found as uid ${uid} gid ${gid}`);
        assert.ok((answer.unreadable ?? 0) >= 1, `no unreadable process counted as uid ${uid} gid ${gid}`);
        assert.match(answer.error ?? '', new RegExp(`\\(${answer.unreadable} of them unreadable\\)`));
        assert.match(answer.error ?? '', /runAsUser and runAsGroup/);
      }
    });

    void it("the container's uid and gid find it and signal it", async () => {
      const answer = await lookupAs(APP_UID, APP_UID, container, 'SIGTERM');
      assert.deepEqual(answer.found?.pid, app.pid);
      assert.match(answer.found?.command ?? '', /sleep$/);
      assert.equal(await exited, 'SIGTERM');
    });
  },
);
