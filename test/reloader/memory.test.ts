/**
 * The sidecar's memory: decompressed data goes straight to the files, a source's gunzipped keys share a cap
 * that follows the memory limit, and memory is given back after a large object. The figures themselves
 * (against an idle reloader, through the largest configs) are measured by the bench: bench/footprint.ts.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, readlink, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { collectGarbage } from '../../src/reloader/memory.ts';
import {
  gunzipCap,
  MAX_GUNZIP_BYTES,
  MIN_GUNZIP_BYTES,
  projectObject,
  ProjectionError,
} from '../../src/reloader/projection.ts';
import { AtomicWriter, DATA_DIR } from '../../src/reloader/writer.ts';
import { parseSourceSpec } from '../../src/shared/source-spec.ts';

const MiB = 1024 * 1024;
const b64 = (b: Buffer | string): string => Buffer.from(b).toString('base64');
const SRC = fileURLToPath(new URL('../../src/reloader/', import.meta.url));

/** Text that compresses about 40:1, like a large rules file. */
function rules(bytes: number, version = 0): Buffer {
  const line = (i: number): string =>
    `  - record: instance:node_cpu:rate5m_${i}_v${version}\n    expr: sum without (cpu) (rate(node_cpu_seconds_total[5m]))\n`;
  const parts: string[] = [];
  for (let i = 0, size = 0; size < bytes; i++) {
    parts.push(line(i));
    size += line(i).length;
  }
  return Buffer.from(parts.join('')).subarray(0, bytes);
}

const gzSecret = (data: Record<string, Buffer>): { data: Record<string, string> } => ({
  data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, b64(gzipSync(v))])),
});

void describe('gunzip cap', () => {
  void it('follows the memory limit: what the reserve leaves, halved, shared by the gunzip sources', () => {
    assert.equal(gunzipCap(128 * MiB, 1), 40 * MiB);
    assert.equal(gunzipCap(96 * MiB, 1), 24 * MiB);
    assert.equal(gunzipCap(128 * MiB, 2), 20 * MiB);
    assert.equal(gunzipCap(1024 * MiB, 1), MAX_GUNZIP_BYTES);
    assert.equal(gunzipCap(32 * MiB, 1), MIN_GUNZIP_BYTES);
    // No limit: process.constrainedMemory() says 0 or 2^64.
    assert.equal(gunzipCap(0, 1), MAX_GUNZIP_BYTES);
    assert.equal(gunzipCap(2 ** 64, 1), MAX_GUNZIP_BYTES);
    assert.equal(gunzipCap(undefined, 1), MAX_GUNZIP_BYTES);
  });
});

void describe('AtomicWriter and gunzipped keys', () => {
  let root: string;
  let n = 0;
  const fresh = (): string => join(root, `dir-${++n}`);
  const spec = (dir: string) => parseSourceSpec(`secret/s=${dir}?gunzip=true`);
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'writer-gunzip-'));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  void it('leaves decompression to the writer: the payload holds the compressed value', () => {
    const p = projectObject(spec('/d'), gzSecret({ 'a.yaml.gz': rules(1000) }));
    const file = p.get('a.yaml');
    assert.deepEqual(file?.gunzip, { key: 'a.yaml.gz' });
    assert.ok(!Buffer.isBuffer(file?.data) && 'base64' in (file?.data ?? {}));
  });

  void it('caps what all gunzipped keys of a source decompress to together; past it, the previous files stay', async () => {
    const dir = fresh();
    const w = new AtomicWriter(dir, { gunzipCap: MiB });
    await w.write(projectObject(spec(dir), gzSecret({ 'a.gz': rules(1000) })));
    const kept = await readlink(join(dir, DATA_DIR));
    await assert.rejects(
      w.write(projectObject(spec(dir), gzSecret({ 'a.gz': rules(600_000), 'b.gz': rules(600_000) }))),
      (e: unknown) =>
        e instanceof ProjectionError &&
        /^key "b.gz" takes the source's gunzipped keys past the cap of 1048576 bytes decompressed/.test(
          e.message,
        ),
    );
    assert.equal(await readlink(join(dir, DATA_DIR)), kept);
    assert.deepEqual(await readFile(join(dir, 'a')), rules(1000));
    assert.equal((await readdir(dir)).filter((e) => e.startsWith('..2')).length, 1);
  });

  void it('refuses a truncated gzip key while streaming it, keeping the previous files', async () => {
    const dir = fresh();
    const w = new AtomicWriter(dir);
    await w.write(projectObject(spec(dir), gzSecret({ 'a.gz': rules(1000) })));
    const truncated = gzipSync(rules(200_000)).subarray(0, 2000);
    await assert.rejects(
      w.write(projectObject(spec(dir), { data: { 'a.gz': b64(truncated) } })),
      (e: unknown) => e instanceof ProjectionError && e.message === 'key "a.gz" is not valid gzip',
    );
    assert.deepEqual(await readFile(join(dir, 'a')), rules(1000));
    assert.equal((await readdir(dir)).filter((e) => e.startsWith('..2')).length, 1);
  });

  void it('writes nothing for an unchanged gunzipped key: by its compressed form, and after a restart by its content', async () => {
    const dir = fresh();
    const content = rules(300_000);
    const object = { data: { 'a.gz': b64(gzipSync(content)) } };
    assert.equal((await new AtomicWriter(dir).write(projectObject(spec(dir), object))).changed, true);
    const first = await readlink(join(dir, DATA_DIR));
    const w = new AtomicWriter(dir);
    assert.equal((await w.write(projectObject(spec(dir), object))).changed, false, 'restart, same content');
    assert.equal((await w.write(projectObject(spec(dir), object))).changed, false, 'same compressed input');
    const recompressed = { data: { 'a.gz': b64(gzipSync(content, { level: 1 })) } };
    assert.equal((await w.write(projectObject(spec(dir), recompressed))).changed, false, 'compressed anew');
    await w.settled();
    assert.equal(await readlink(join(dir, DATA_DIR)), first);
    assert.deepEqual(await readdir(dir), ['..data', 'a', first].sort());
    assert.equal(
      (await w.write(projectObject(spec(dir), gzSecret({ 'a.gz': rules(300_000, 1) })))).changed,
      true,
    );
    assert.deepEqual(await readFile(join(dir, 'a')), rules(300_000, 1));
  });

  void it('shares unchanged files with the previous version (hard links): only changed keys take new pages', async () => {
    const dir = fresh();
    const w = new AtomicWriter(dir);
    const big = b64(Buffer.alloc(256 * 1024, 7));
    const gz = b64(gzipSync(rules(200_000)));
    const object = (v: string) => ({ data: { big, 'rules.gz': gz, version: b64(v) } });
    await w.write(projectObject(spec(dir), object('1')));
    const [bigIno, rulesIno] = [(await stat(join(dir, 'big'))).ino, (await stat(join(dir, 'rules'))).ino];
    assert.equal((await w.write(projectObject(spec(dir), object('2')))).changed, true);
    await w.settled();
    assert.equal(await readFile(join(dir, 'version'), 'utf8'), '2');
    assert.deepEqual(await readFile(join(dir, 'rules')), rules(200_000));
    assert.equal((await stat(join(dir, 'big'))).ino, bigIno);
    assert.equal((await stat(join(dir, 'rules'))).ino, rulesIno);
    // A mode change is a new file, not a link.
    const w2 = new AtomicWriter(dir);
    await w2.write(
      projectObject(parseSourceSpec(`secret/s=${dir}?gunzip=true&defaultMode=0600`), object('2')),
    );
    assert.notEqual((await stat(join(dir, 'big'))).ino, bigIno);
    assert.equal((await stat(join(dir, 'big'))).mode & 0o777, 0o600);
  });

  void it('streams a 32 MiB gunzip key to its file: the process never holds the decompressed content', () => {
    // A fresh process with the sidecar's env; VmHWM (peak RSS) is reset right before the write.
    const script = `
      import { readFileSync, writeFileSync, rmSync } from 'node:fs';
      import { gzipSync } from 'node:zlib';
      import { projectObject } from ${JSON.stringify(join(SRC, 'projection.ts'))};
      import { AtomicWriter } from ${JSON.stringify(join(SRC, 'writer.ts'))};
      const kib = (f) => Number(new RegExp('^' + f + ':\\\\s+(\\\\d+)', 'm').exec(readFileSync('/proc/self/status', 'utf8'))[1]);
      const line = (i) => '  - record: instance:node_cpu:rate5m_' + i + '\\n    expr: sum without (cpu) (rate(node_cpu_seconds_total[5m]))\\n';
      const parts = []; for (let i = 0, s = 0; s < ${32 * MiB}; i++) { parts.push(line(i)); s += line(i).length; }
      const object = { data: { 'rules.yaml.gz': gzipSync(parts.join('')).toString('base64') } };
      parts.length = 0;
      const dir = process.argv[1];
      const w = new AtomicWriter(dir);
      await w.write(projectObject({ kind: 'secret', name: 's', dir }, { data: { x: 'eA==' } }));
      globalThis.gc?.();
      const before = kib('RssAnon');
      writeFileSync('/proc/self/clear_refs', '5');
      // What a source does with the object: project it, write it.
      await w.write(projectObject({ kind: 'secret', name: 's', dir, gunzip: true }, object));
      const peakAnon = kib('VmHWM') - kib('RssFile') - kib('RssShmem');
      process.stdout.write(JSON.stringify({ growthKiB: peakAnon - before, size: readFileSync(dir + '/rules.yaml').length }));
      rmSync(dir, { recursive: true, force: true });
    `;
    const r = spawnSync(
      process.execPath,
      ['--expose-gc', '--input-type=module', '-e', script, join(root, `stream-${++n}`)],
      {
        encoding: 'utf8',
        env: { ...process.env, NODE_OPTIONS: '--max-semi-space-size=1', MALLOC_ARENA_MAX: '2' },
      },
    );
    assert.equal(r.status, 0, r.stderr);
    const { growthKiB, size } = JSON.parse(r.stdout) as { growthKiB: number; size: number };
    assert.ok(size >= 32 * MiB);
    // Holding the content would take 32 MiB at least (gunzipSync: its chunks and their concatenation, 64 MiB).
    assert.ok(
      growthKiB < 12 * 1024,
      `the write took ${(growthKiB / 1024).toFixed(1)} MiB of anonymous memory`,
    );
  });
});

void describe('collectGarbage', () => {
  void it('gives the heap back after a large object, without exposing gc() to the program', () => {
    const v8 = process.getBuiltinModule('node:v8');
    let garbage: string[] | undefined = Array.from({ length: 20_000 }, (_, i) => `${i}`.repeat(200));
    const grown = v8.getHeapStatistics().used_heap_size;
    assert.ok(garbage.length > 0);
    garbage = undefined;
    collectGarbage();
    assert.ok(v8.getHeapStatistics().used_heap_size < grown - 10 * MiB, 'the garbage was not collected');
    assert.equal(typeof (globalThis as { gc?: unknown }).gc, 'undefined');
  });
});
