import assert from 'node:assert/strict';
import {
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rm,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Worker } from 'node:worker_threads';
import { ProjectionError, type Payload } from '../../src/reloader/projection.ts';
import { AtomicWriter, DATA_DIR } from '../../src/reloader/writer.ts';

function payload(entries: Record<string, string | [string, number]>): Payload {
  return new Map(
    Object.entries(entries).map(([path, v]) => {
      const [text, mode] = typeof v === 'string' ? [v, 0o644] : v;
      return [path, { data: Buffer.from(text), mode }];
    }),
  );
}

async function timestampDirs(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((n) => /^\.\.\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}\./.test(n));
}

void describe('AtomicWriter', () => {
  let root: string;
  let n = 0;
  const fresh = (): string => join(root, `dir-${++n}`);

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'writer-'));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  void it("writes the kubelet's layout: a timestamped dir, ..data pointing at it, one symlink per key", async () => {
    const dir = fresh();
    const w = new AtomicWriter(dir);
    assert.deepEqual(
      await w.write(payload({ 'app.yaml': 'a: 1', token: 't' }), new Date(Date.UTC(2025, 0, 31, 23, 59, 58))),
      { changed: true, initial: true },
    );
    const [ts] = await timestampDirs(dir);
    assert.match(ts ?? '', /^\.\.2025_01_31_23_59_58\.\w+$/);
    assert.equal(await readlink(join(dir, DATA_DIR)), ts);
    assert.equal(await readlink(join(dir, 'app.yaml')), '..data/app.yaml');
    assert.equal(await readlink(join(dir, 'token')), '..data/token');
    assert.equal(await readFile(join(dir, 'app.yaml'), 'utf8'), 'a: 1');
    assert.equal((await stat(join(dir, ts as string))).mode & 0o777, 0o755);
    assert.deepEqual((await readdir(dir)).sort(), [ts, '..data', 'app.yaml', 'token'].sort());
  });

  void it('swaps to a new timestamped dir on change, removes the old one and the keys that vanished', async () => {
    const dir = fresh();
    const w = new AtomicWriter(dir);
    await w.write(payload({ keep: '1', gone: 'x' }));
    const [first] = await timestampDirs(dir);
    assert.deepEqual(await w.write(payload({ keep: '2', added: 'y' })), { changed: true, initial: false });
    await w.settled();
    const dirs = await timestampDirs(dir);
    assert.equal(dirs.length, 1);
    assert.notEqual(dirs[0], first);
    assert.equal(await readFile(join(dir, 'keep'), 'utf8'), '2');
    assert.equal(await readFile(join(dir, 'added'), 'utf8'), 'y');
    await assert.rejects(lstat(join(dir, 'gone')), { code: 'ENOENT' });
  });

  void it('does not touch the directory when nothing changed, but does when only a mode changed', async () => {
    const dir = fresh();
    const w = new AtomicWriter(dir);
    await w.write(payload({ a: 'same' }));
    const before = await readlink(join(dir, DATA_DIR));
    const digest = w.digest();
    assert.deepEqual(await w.write(payload({ a: 'same' })), { changed: false, initial: false });
    assert.equal(await readlink(join(dir, DATA_DIR)), before);
    assert.equal(w.digest(), digest);
    assert.deepEqual(await w.write(payload({ a: ['same', 0o600] })), { changed: true, initial: false });
    assert.notEqual(w.digest(), digest);
    assert.equal((await stat(join(dir, 'a'))).mode & 0o777, 0o600);
  });

  void it('writes nested item paths under one top-level symlink, with their modes regardless of the umask', async () => {
    const dir = fresh();
    const w = new AtomicWriter(dir);
    const old = process.umask(0o077);
    try {
      await w.write(
        payload({
          'certs/tls.crt': ['C', 0o644],
          'certs/private/tls.key': ['K', 0o600],
          'run.sh': ['#!', 0o755],
        }),
      );
    } finally {
      process.umask(old);
    }
    assert.equal(await readlink(join(dir, 'certs')), '..data/certs');
    assert.equal(await readFile(join(dir, 'certs/private/tls.key'), 'utf8'), 'K');
    assert.equal((await stat(join(dir, 'certs/tls.crt'))).mode & 0o777, 0o644);
    assert.equal((await stat(join(dir, 'certs/private/tls.key'))).mode & 0o777, 0o600);
    assert.equal((await stat(join(dir, 'run.sh'))).mode & 0o777, 0o755);
    assert.equal((await stat(join(dir, 'certs/private'))).mode & 0o777, 0o755);
    await w.write(payload({ 'run.sh': ['#!', 0o755] }));
    await assert.rejects(lstat(join(dir, 'certs')), { code: 'ENOENT' });
  });

  void it('writes an empty object as an empty ..data (the first sync still happens)', async () => {
    const dir = fresh();
    assert.deepEqual(await new AtomicWriter(dir).write(new Map()), { changed: true, initial: true });
    assert.deepEqual(await readdir(join(dir, DATA_DIR)), []);
  });

  void it('after a restart, compares with what is on disk: same content is no write, different content is not initial', async () => {
    const dir = fresh();
    await new AtomicWriter(dir).write(payload({ a: '1', 'sub/b': ['2', 0o600] }));
    const ts = await readlink(join(dir, DATA_DIR));
    assert.deepEqual(await new AtomicWriter(dir).write(payload({ a: '1', 'sub/b': ['2', 0o600] })), {
      changed: false,
      initial: false,
    });
    assert.equal(await readlink(join(dir, DATA_DIR)), ts);
    assert.deepEqual(await new AtomicWriter(dir).write(payload({ a: '1', 'sub/b': ['2', 0o644] })), {
      changed: true,
      initial: false,
    });
    assert.deepEqual(await new AtomicWriter(dir).write(payload({ a: 'changed', 'sub/b': ['2', 0o644] })), {
      changed: true,
      initial: false,
    });
  });

  void it('cleans up what an interrupted write left behind', async () => {
    const dir = fresh();
    await new AtomicWriter(dir).write(payload({ a: '1' }));
    await mkdir(join(dir, '..2020_01_01_00_00_00.stale'));
    await symlink('..2020_01_01_00_00_00.stale', join(dir, '..data_tmp'));
    const w = new AtomicWriter(dir);
    await w.write(payload({ a: '2' }));
    await w.settled();
    assert.deepEqual((await readdir(dir)).filter((e) => e.startsWith('..')).length, 2); // ..data and its target
    assert.equal(await readFile(join(dir, 'a'), 'utf8'), '2');
  });

  void it('refuses payload paths that would escape the directory or collide', async () => {
    const w = new AtomicWriter(fresh());
    await assert.rejects(w.write(payload({ '../x': '1' })), /invalid path/);
    await assert.rejects(w.write(payload({ '..data': '1' })), /invalid path/);
    // Deterministic: a ProjectionError, which the source does not retry (it waits for the next version).
    await assert.rejects(
      w.write(payload({ a: '1', 'a/b': '2' })),
      (e: unknown) => e instanceof ProjectionError && /both a file and a directory/.test(e.message),
    );
  });

  void it('never lets a concurrent reader see a partial or mixed file during hundreds of writes of a large key', async () => {
    const dir = fresh();
    const w = new AtomicWriter(dir);
    const BASE = 256 * 1024;
    // Version i is BASE+i bytes, all the same letter: its length tells which letter every byte must be.
    const version = (i: number): Payload =>
      new Map([['big', { data: Buffer.alloc(BASE + i, 97 + (i % 26)), mode: 0o644 }]]);
    await w.write(version(0));
    const stop = new Int32Array(new SharedArrayBuffer(4));
    const reader = new Worker(
      `const { readFileSync } = require('node:fs');
       const { workerData, parentPort } = require('node:worker_threads');
       const stop = new Int32Array(workerData.stop);
       let reads = 0, missing = 0; const bad = [];
       while (Atomics.load(stop, 0) === 0) {
         let b;
         try { b = readFileSync(workerData.file); } catch (e) { if (e.code === 'ENOENT') { missing++; continue; } throw e; }
         reads++;
         const i = b.length - workerData.base;
         const want = 97 + (((i % 26) + 26) % 26);
         if (i < 0 || b.some((c) => c !== want)) bad.push(b.length);
       }
       parentPort.postMessage({ reads, missing, bad: bad.slice(0, 5), badCount: bad.length });`,
      { eval: true, workerData: { stop: stop.buffer, file: join(dir, 'big'), base: BASE } },
    );
    const result = new Promise<{ reads: number; badCount: number; bad: number[] }>((resolve, reject) => {
      reader.once('message', resolve);
      reader.once('error', reject);
    });
    for (let i = 1; i <= 300; i++) assert.equal((await w.write(version(i))).changed, true);
    Atomics.store(stop, 0, 1);
    const { reads, badCount, bad } = await result;
    await reader.terminate();
    assert.ok(reads > 0, 'the reader read nothing');
    assert.equal(badCount, 0, `partial or mixed reads, lengths: ${bad.join(', ')}`);
    assert.equal((await readFile(join(dir, 'big'))).length, BASE + 300);
    await w.settled();
    assert.equal((await timestampDirs(dir)).length, 1);
  });
});

void describe('AtomicWriter on a directory another tool wrote', () => {
  void it('treats a directory without ..data as empty (initial) and keeps unrelated files', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'writer-foreign-'));
    try {
      await writeFile(join(dir, 'README'), 'not ours');
      assert.deepEqual(await new AtomicWriter(dir).write(payload({ a: '1' })), {
        changed: true,
        initial: true,
      });
      assert.equal(await readFile(join(dir, 'README'), 'utf8'), 'not ours');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
