/**
 * --fs-group: the app must read its files as it did when the kubelet wrote them. The kubelet writes Secret and
 * ConfigMap volumes as root, gives every file and directory the pod's fsGroup, adds group read (0440) to files
 * and setgid + group r-x to directories (pkg/volume/volume_linux.go, changeFilePermission, read-only volume).
 * These tests run the reloader as uid 65532 with the fsGroup as a supplementary group (as the kubelet starts the
 * sidecar) and read its files as another uid, in and out of the group. They need root to switch users.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, lstatSync, mkdirSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Payload } from '../../src/reloader/projection.ts';
import { AtomicWriter, DATA_DIR } from '../../src/reloader/writer.ts';
import { CLI } from '../support/cli.ts';
import { Harness, NS, secret, secretValue } from './harness.ts';

const SIDECAR_UID = 65532;
const APP_UID = 1234;
const FS_GROUP = 4321;
const OTHER_GROUP = 5678;

const isRoot = process.getuid?.() === 0;
const hasSetpriv = spawnSync('setpriv', ['--version']).status === 0;
const skip = !isRoot
  ? 'needs root, to run processes as other users'
  : !hasSetpriv
    ? 'needs setpriv (util-linux)'
    : false;

function payload(entries: Record<string, [string, number]>): Payload {
  return new Map(
    Object.entries(entries).map(([path, [text, mode]]) => [path, { data: Buffer.from(text), mode }]),
  );
}

const modeOf = (path: string): number => statSync(path).mode & 0o7777;

/** An emptyDir as the kubelet makes it for a pod with this fsGroup: root-owned, group fsGroup, 2777. */
function kubeletEmptyDir(path: string, fsGroup: number): void {
  mkdirSync(path);
  chownSync(path, 0, fsGroup);
  chmodSync(path, 0o2777);
}

/** `cat FILE` as `uid`, with exactly these groups; the content, or the error it printed. */
function readAs(uid: number, groups: number[], file: string): { ok: boolean; text: string } {
  const r = spawnSync(
    'setpriv',
    [
      `--reuid=${uid}`,
      `--regid=${groups[0] ?? uid}`,
      groups.length ? `--groups=${groups.join(',')}` : '--clear-groups',
      'cat',
      file,
    ],
    { encoding: 'utf8' },
  );
  return { ok: r.status === 0, text: r.status === 0 ? r.stdout : r.stderr };
}

void describe('AtomicWriter with an fsGroup', { skip }, () => {
  let root: string;
  let n = 0;
  const fresh = (): string => join(root, `dir-${++n}`);
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'writer-fsgroup-'));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  void it('gives every file, directory and symlink the group, files mode | 0440, directories setgid and r-x', async () => {
    const dir = fresh();
    kubeletEmptyDir(dir, FS_GROUP);
    const w = new AtomicWriter(dir, { fsGroup: FS_GROUP });
    await w.write(
      payload({
        password: ['p', 0o400],
        'certs/tls.crt': ['c', 0o644],
        'certs/private/tls.key': ['k', 0o600],
        'run.sh': ['#!', 0o700],
      }),
    );
    const ts = readlinkSync(join(dir, DATA_DIR));
    assert.equal(modeOf(join(dir, 'password')), 0o440);
    assert.equal(modeOf(join(dir, 'certs/tls.crt')), 0o644);
    assert.equal(modeOf(join(dir, 'certs/private/tls.key')), 0o640);
    assert.equal(modeOf(join(dir, 'run.sh')), 0o740);
    for (const d of [ts, `${ts}/certs`, `${ts}/certs/private`]) assert.equal(modeOf(join(dir, d)), 0o2755, d);
    for (const p of [ts, `${ts}/password`, `${ts}/certs`, `${ts}/certs/private/tls.key`, `${ts}/run.sh`])
      assert.equal(statSync(join(dir, p)).gid, FS_GROUP, p);
    for (const link of [DATA_DIR, 'password', 'certs'])
      assert.equal(lstatSync(join(dir, link)).gid, FS_GROUP);
    assert.equal(modeOf(dir), 0o2777, 'the emptyDir itself is left as the kubelet made it');
  });

  void it('makes a missing target directory as the kubelet would (group, setgid) and leaves an existing one alone', async () => {
    const dir = join(fresh(), 'nested');
    await new AtomicWriter(dir, { fsGroup: FS_GROUP }).write(payload({ a: ['1', 0o400] }));
    assert.equal(modeOf(dir), 0o2755);
    assert.equal(statSync(dir).gid, FS_GROUP);
    assert.equal(statSync(join(dir, '..')).gid, FS_GROUP);
  });

  void it('rewrites files an earlier run left with another group or mode (a restart with the same content)', async () => {
    const dir = fresh();
    await new AtomicWriter(dir).write(payload({ a: ['same', 0o400] }));
    const before = readlinkSync(join(dir, DATA_DIR));
    assert.deepEqual(
      await new AtomicWriter(dir, { fsGroup: FS_GROUP }).write(payload({ a: ['same', 0o400] })),
      {
        changed: true,
        initial: false,
      },
    );
    assert.notEqual(readlinkSync(join(dir, DATA_DIR)), before);
    assert.equal(statSync(join(dir, 'a')).gid, FS_GROUP);
    // The same group and mode again: nothing to do.
    assert.equal(
      (await new AtomicWriter(dir, { fsGroup: FS_GROUP }).write(payload({ a: ['same', 0o400] }))).changed,
      false,
    );
  });

  void it('without an fsGroup writes exact modes, but never drops the setgid bit of the target directory', async () => {
    const dir = fresh();
    kubeletEmptyDir(dir, OTHER_GROUP);
    await new AtomicWriter(dir).write(payload({ 'sub/key': ['k', 0o400] }));
    const ts = readlinkSync(join(dir, DATA_DIR));
    assert.equal(modeOf(join(dir, ts)), 0o2755);
    assert.equal(modeOf(join(dir, ts, 'sub')), 0o2755);
    assert.equal(modeOf(join(dir, 'sub/key')), 0o400);
    assert.equal(statSync(join(dir, 'sub/key')).gid, OTHER_GROUP, 'the setgid target hands its group down');
    assert.equal(modeOf(dir), 0o2777);

    const plain = fresh();
    await new AtomicWriter(plain).write(payload({ key: ['k', 0o400] }));
    assert.equal(modeOf(join(plain, readlinkSync(join(plain, DATA_DIR)))), 0o755);
    assert.equal(modeOf(join(plain, 'key')), 0o400);
  });
});

void describe('reloader --fs-group: an app of another uid reads its files', { skip }, () => {
  let h: Harness;
  const outputs: string[] = [];
  before(async () => {
    h = await Harness.start();
    chmodSync(h.root, 0o755); // the sidecar's uid reads the kubeconfig; the app's uid walks to the emptyDir
    chmodSync(h.kubeconfig, 0o644);
  });
  after(async () => {
    await h.close();
    for (const v of [...outputs])
      assert.ok(!v.includes('do-not-log'), 'a Secret value appeared in the output');
  });

  /** `reloader --once` as the sidecar runs: uid 65532, its own group, the fsGroup as a supplementary group. */
  async function syncAsSidecar(args: string[]): Promise<void> {
    const child = spawn(
      'setpriv',
      [
        `--reuid=${SIDECAR_UID}`,
        `--regid=${SIDECAR_UID}`,
        `--groups=${FS_GROUP}`,
        process.execPath,
        CLI,
        'reloader',
        '--kubeconfig',
        h.kubeconfig,
        '--namespace',
        NS,
        '--once',
        '--once-timeout',
        '10s',
        ...args,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    outputs.push(out);
    assert.equal(code, 0, `reloader --once failed: ${out.slice(-2000)}`);
  }

  void it('with --fs-group, a 0400 Secret file is group-readable by an app in the fsGroup, before and after an update', async () => {
    const dir = h.dir('fsgroup');
    kubeletEmptyDir(dir, FS_GROUP);
    const v1 = secretValue('password-1');
    h.api.create(secret('db', { password: v1 }));
    const source = `secret/db=${dir}?defaultMode=0400`;
    await syncAsSidecar(['--source', source, '--fs-group', String(FS_GROUP)]);
    const file = join(dir, 'password');
    assert.equal(statSync(file).uid, SIDECAR_UID);
    assert.equal(statSync(file).gid, FS_GROUP);
    assert.equal(modeOf(file), 0o440);
    assert.deepEqual(readAs(APP_UID, [APP_UID, FS_GROUP], file), { ok: true, text: v1 });
    assert.equal(readAs(APP_UID, [APP_UID], file).ok, false, 'a uid outside the fsGroup must not read it');

    const v2 = secretValue('password-2');
    h.api.update(secret('db', { password: v2 }));
    await syncAsSidecar(['--source', source, '--fs-group', String(FS_GROUP)]);
    assert.deepEqual(readAs(APP_UID, [APP_UID, FS_GROUP], file), { ok: true, text: v2 });
    const ts = readdirSync(dir).filter((e) => e.startsWith('..2'));
    for (const d of ts) assert.equal(modeOf(join(dir, d)), 0o2755);
  });

  void it('with --fs-group and items, nested directories stay reachable for the group', async () => {
    const dir = h.dir('fsgroup-items');
    kubeletEmptyDir(dir, FS_GROUP);
    const key = secretValue('tls-key');
    h.api.create(secret('tls', { 'tls.key': key }));
    await syncAsSidecar([
      '--source',
      `secret/tls=${dir}?item=tls.key:certs/private/server.key:0400`,
      '--fs-group',
      String(FS_GROUP),
    ]);
    assert.deepEqual(readAs(APP_UID, [APP_UID, FS_GROUP], join(dir, 'certs/private/server.key')), {
      ok: true,
      text: key,
    });
  });

  void it("without --fs-group, a 0440 file in the fsGroup's emptyDir still gets its group (the setgid bit is kept)", async () => {
    const dir = h.dir('setgid-kept');
    kubeletEmptyDir(dir, FS_GROUP);
    const v = secretValue('password-4');
    h.api.create(secret('group-read', { password: v }));
    await syncAsSidecar(['--source', `secret/group-read=${dir}?defaultMode=0440`]);
    const file = join(dir, 'password');
    assert.equal(modeOf(file), 0o440);
    assert.equal(statSync(file).gid, FS_GROUP);
    assert.deepEqual(readAs(APP_UID, [APP_UID, FS_GROUP], file), { ok: true, text: v });
  });

  void it('without --fs-group, files keep their exact mode: a 0400 file is not readable by another uid', async () => {
    const dir = h.dir('no-fsgroup');
    kubeletEmptyDir(dir, FS_GROUP);
    h.api.create(secret('plain', { password: secretValue('password-3') }));
    await syncAsSidecar(['--source', `secret/plain=${dir}?defaultMode=0400`]);
    const file = join(dir, 'password');
    assert.equal(modeOf(file), 0o400);
    assert.equal(readAs(APP_UID, [APP_UID], file).ok, false);
    assert.equal(readAs(APP_UID, [APP_UID, FS_GROUP], file).ok, false);
  });
});
