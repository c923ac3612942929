import { createHash, hash } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  closeSync,
  fchmodSync,
  fchownSync,
  fstatSync,
  lchownSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readlinkSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { chmod, chown, mkdir, readdir, readlink, rmdir, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { collectYoungGarbage } from './memory.ts';
import {
  contentBytes,
  MAX_GUNZIP_BYTES,
  ProjectionError,
  type Payload,
  type PayloadFile,
} from './projection.ts';

/** The kubelet's names: `..data` points at the current timestamped directory; `..data_tmp` is the next one. */
export const DATA_DIR = '..data';
const DATA_TMP = '..data_tmp';
const LINK_TMP = '..link_tmp';
const DIR_MODE = 0o755;
const SETGID = 0o2000;
/** What the kubelet adds for a pod with an fsGroup (read-only volumes): group read on files, r-x + setgid on directories. */
const FS_GROUP_FILE_BITS = 0o440;
const FS_GROUP_DIR_BITS = SETGID | 0o550;

export interface WriterOptions {
  /**
   * The pod's fsGroup. Set: every file, directory and symlink written gets this group (the kubelet puts it in
   * every container's supplementary groups, so a non-root writer may chown to it), files get mode | 0440 and
   * directories setgid + group r-x, the kubelet's rules for Secret/ConfigMap volumes. Unset: files get exactly
   * their mode and the writer's group (or the directory's, when it is setgid).
   */
  fsGroup?: number;
  /** The most this source's gunzipped keys may decompress to, together (gunzipCap in projection.ts). */
  gunzipCap?: number;
}

interface FileState {
  sha256: string;
  mode: number;
}

export interface WriteResult {
  /** False when the payload equals what is on disk: nothing was touched. */
  changed: boolean;
  /** True for the first write into a directory that held no `..data` yet (the application has not read anything). */
  initial: boolean;
}

/** One-shot: no Hash object per file (10,000 keys would leave 10,000 native contexts for the collector). */
function sha256(data: Buffer): string {
  return hash('sha256', data);
}

/** Read and gunzip chunk: what the writer holds of a large file at a time (besides zlib's 32 KiB window). */
const CHUNK = 64 * 1024;
let chunkBuffer: Buffer | undefined;
/** While gunzipping, the written chunks are collected every this many bytes. */
const COLLECT_EVERY = 1024 * 1024;

/** SHA-256 of a file on disk, read a chunk at a time into one reused buffer. */
function hashFile(path: string): { sha256: string; gid: number; mode: number } {
  const fd = openSync(path, 'r');
  try {
    const st = fstatSync(fd);
    const buf = (chunkBuffer ??= Buffer.allocUnsafe(CHUNK));
    let n = readSync(fd, buf, 0, CHUNK, null);
    let digest: string;
    if (n < CHUNK) digest = sha256(buf.subarray(0, n));
    else {
      const h = createHash('sha256');
      for (; n > 0; n = readSync(fd, buf, 0, CHUNK, null)) h.update(buf.subarray(0, n));
      digest = h.digest('hex');
    }
    return { sha256: digest, gid: st.gid, mode: st.mode & 0o777 };
  } finally {
    closeSync(fd);
  }
}

/**
 * Decompresses `input` into the open file `fd`, hashing as it goes, so that the decompressed content is never
 * held in memory whole. `budget.left` is what the source's gunzipped keys may still add; going past it is a
 * ProjectionError, as is input that is not gzip. Returns the SHA-256 of what was written.
 */
async function gunzipToFile(
  fd: number,
  input: Buffer,
  key: string,
  budget: { cap: number; left: number },
): Promise<string> {
  // Loaded on first use: most sidecars never gunzip, and zlib costs memory in every pod.
  const gunzip = process.getBuiltinModule('node:zlib').createGunzip({ chunkSize: CHUNK });
  const h = createHash('sha256');
  gunzip.end(input);
  let sinceCollection = 0;
  try {
    for await (const chunk of gunzip as AsyncIterable<Buffer>) {
      // Every chunk is a new buffer, garbage once written; V8 would let tens of MiB of them pile up.
      sinceCollection += chunk.length;
      if (sinceCollection >= COLLECT_EVERY) {
        sinceCollection = 0;
        collectYoungGarbage();
      }
      budget.left -= chunk.length;
      if (budget.left < 0)
        throw new ProjectionError(
          `key "${key}" takes the source's gunzipped keys past the cap of ${budget.cap} bytes decompressed (it follows the sidecar's memory limit: raise config-reloader.io/memory-limit)`,
        );
      h.update(chunk);
      for (let off = 0; off < chunk.length;) off += writeSync(fd, chunk, off);
    }
  } catch (err) {
    gunzip.destroy();
    if (String((err as NodeJS.ErrnoException).code).startsWith('Z_'))
      throw new ProjectionError(`key "${key}" is not valid gzip`);
    throw err;
  }
  return h.digest('hex');
}

function ignoreMissing(err: NodeJS.ErrnoException): void {
  if (err.code !== 'ENOENT') throw err;
}

/**
 * Removes a directory tree one entry at a time. fs.promises.rm unlinks every entry of a directory at once: for
 * a Secret of 10,000 keys, 10,000 requests queued together, whose allocations glibc then keeps.
 */
async function removeTree(path: string): Promise<void> {
  let entries;
  try {
    entries = await readdir(path, { withFileTypes: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    if (code === 'ENOTDIR') return unlink(path).catch(ignoreMissing);
    throw err;
  }
  for (const e of entries) {
    const child = join(path, e.name);
    if (e.isDirectory()) await removeTree(child);
    else await unlink(child).catch(ignoreMissing);
  }
  await rmdir(path).catch(ignoreMissing);
}

/** `..2025_01_31_23_59_59.` in UTC, as the kubelet names them; mkdtemp adds a random suffix. */
function timestampPrefix(now: Date): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  return `..${now.getUTCFullYear()}_${p(now.getUTCMonth() + 1)}_${p(now.getUTCDate())}_${p(now.getUTCHours())}_${p(now.getUTCMinutes())}_${p(now.getUTCSeconds())}.`;
}

function topLevel(path: string): string {
  const i = path.indexOf('/');
  return i < 0 ? path : path.slice(0, i);
}

/** A payload that cannot be written as it is: a ProjectionError, since writing it again would fail the same way. */
function validatePayload(payload: Payload): void {
  const files = new Set(payload.keys());
  for (const path of files) {
    if (
      path === '' ||
      path.startsWith('/') ||
      path.startsWith('..') ||
      path.split('/').some((p) => p === '' || p === '..' || p === '.')
    ) {
      throw new ProjectionError(`invalid path "${path}" in the payload`);
    }
    // `a` as a file and `a/b` cannot both exist.
    for (let i = path.indexOf('/'); i >= 0; i = path.indexOf('/', i + 1)) {
      if (files.has(path.slice(0, i)))
        throw new ProjectionError(
          `path "${path.slice(0, i)}" would be both a file and a directory ("${path}")`,
        );
    }
  }
}

async function readlinkOrUndefined(path: string): Promise<string | undefined> {
  try {
    return await readlink(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'EINVAL') return undefined;
    throw err;
  }
}

function readlinkSyncOrUndefined(path: string): string | undefined {
  try {
    return readlinkSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'EINVAL') return undefined;
    throw err;
  }
}

/**
 * Every regular file under `root`, relative path → hash and mode (the state left by an earlier run). A file
 * or directory whose group is not `gid` (when given) gets mode -1, so that the next write rewrites it.
 */
async function scan(root: string, gid: number | undefined, prefix = ''): Promise<Map<string, FileState>> {
  const files = new Map<string, FileState>();
  const wrongGroup = gid !== undefined && (await stat(join(root, prefix))).gid !== gid;
  for (const entry of await readdir(join(root, prefix), { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) {
      for (const [p, s] of await scan(root, gid, rel)) files.set(p, wrongGroup ? { ...s, mode: -1 } : s);
    } else if (entry.isFile()) {
      const f = hashFile(join(root, rel));
      const mode = wrongGroup || (gid !== undefined && f.gid !== gid) ? -1 : f.mode;
      files.set(rel, { sha256: f.sha256, mode });
    }
  }
  return files;
}

/**
 * Writes a directory the way the kubelet's AtomicWriter does, so that a reader never sees a partial file or
 * a mix of two versions: every file goes into a new `..TIMESTAMP.xxxxxx` directory, the `..data_tmp` symlink
 * to it is renamed over `..data` in one step, and each top-level path is a stable symlink `key -> ..data/key`.
 * Paths that left the payload lose their symlink; the previous timestamped directory is removed.
 *
 * The swap uses synchronous syscalls: a handful of small ones cost microseconds each, where a round trip
 * through libuv's thread pool per step would put milliseconds between a watch event and the reload. Removing
 * the previous directory is off that path: it runs after the swap and is awaited before the next write.
 *
 * The content on disk is read once, at the first write, so a restart with identical content writes nothing;
 * afterwards only hashes are kept in memory. No decoded copy of the whole object is made: each file is decoded
 * while it is hashed and again while it is written, and gunzipped files are streamed to disk.
 */
export class AtomicWriter {
  readonly dir: string;
  private readonly fsGroup: number | undefined;
  private readonly gunzipCap: number;
  /** Mode of every directory made: 0755, plus setgid (and group r-x) with an fsGroup or in a setgid target. */
  private dirMode = DIR_MODE;
  private current: Map<string, FileState> | undefined;
  private currentDir: string | undefined;
  private hadData = false;
  private written = false;
  /** Per gunzipped path: the SHA-256 of its compressed input when last written, and of the file it made. */
  private gunzipped = new Map<string, { input: string; sha256: string }>();
  /** Top-level names whose `name -> ..data/name` symlink is known to be in place. */
  private readonly linked = new Set<string>();
  private cleanup: Promise<void> = Promise.resolve();

  constructor(dir: string, opts: WriterOptions = {}) {
    this.dir = dir;
    this.fsGroup = opts.fsGroup;
    this.gunzipCap = opts.gunzipCap ?? MAX_GUNZIP_BYTES;
  }

  /** The mode a file gets on disk: with an fsGroup, group-readable as the kubelet makes it. */
  private fileMode(mode: number): number {
    return this.fsGroup === undefined ? mode : mode | FS_GROUP_FILE_BITS;
  }

  /** SHA-256 over the paths, modes and content on disk; undefined before the first write. */
  digest(): string | undefined {
    if (!this.current) return undefined;
    const h = createHash('sha256');
    for (const path of [...this.current.keys()].sort()) {
      const s = this.current.get(path) as FileState;
      h.update(`${path}\0${s.mode.toString(8)}\0${s.sha256}\n`);
    }
    return h.digest('hex');
  }

  /**
   * Forgets what it knows of the directory, so that the next write compares with what is on disk (a resync's
   * check: files changed or removed by something else are written again). What gunzipped keys decompressed to
   * is kept, so that they are compared without decompressing them again.
   */
  async forget(): Promise<void> {
    await this.cleanup;
    this.current = undefined;
    this.linked.clear();
  }

  /** Resolves once every replaced timestamped directory is gone (tests, shutdown). */
  settled(): Promise<void> {
    return this.cleanup;
  }

  /**
   * Writes `payload` unless it equals what is on disk. Plain files are decoded, hashed and written one at a time;
   * gunzipped ones are streamed from their compressed form straight into the new directory (hashed on the way)
   * and compared afterwards, unless their compressed input is the one last written. Without gunzipped files,
   * everything from the new directory to the rename of `..data` is synchronous.
   */
  async write(payload: Payload, now = new Date()): Promise<WriteResult> {
    validatePayload(payload);
    if (!this.current) await this.load();
    const current = this.current as Map<string, FileState>;
    const next = new Map<string, FileState>();
    /** Gunzipped paths whose content is known only once decompressed → hash of their compressed input. */
    const unknown = new Map<string, string>();
    for (const [path, file] of payload) {
      const mode = this.fileMode(file.mode);
      if (file.gunzip) {
        const input = sha256(contentBytes(file.data));
        const known = this.gunzipped.get(path);
        next.set(path, { sha256: known?.input === input ? known.sha256 : '', mode });
        if (known?.input !== input) unknown.set(path, input);
      } else next.set(path, { sha256: sha256(contentBytes(file.data)), mode });
    }
    const initial = !this.hadData && !this.written;
    if (!initial && unknown.size === 0 && sameFiles(current, next)) {
      // After a restart with identical content, still repair symlinks an interrupted run may have missed.
      this.linkTopLevel(payload, current);
      return { changed: false, initial: false };
    }
    const tsName = this.makeVersionDir(now);
    try {
      this.writeFiles(join(this.dir, tsName), payload, next, current);
      if (this.gunzippedIn(payload)) await this.gunzipFiles(join(this.dir, tsName), payload, next, current);
    } catch (err) {
      rmSync(join(this.dir, tsName), { recursive: true, force: true });
      throw err;
    }
    this.rememberGunzipped(payload, next, unknown);
    if (!initial && sameFiles(current, next)) {
      // Decompressed, it is what is on disk already (a restart, or the same data compressed anew).
      this.removeLater(tsName);
      this.linkTopLevel(payload, current);
      return { changed: false, initial: false };
    }
    const oldDir = this.currentDir;
    this.swapIn(tsName, payload, current);
    // Removals are chained, never awaited by the next write: in a burst the newest content goes to disk at once.
    if (oldDir && oldDir !== tsName) this.removeLater(oldDir);
    this.current = next;
    this.written = true;
    return { changed: true, initial };
  }

  private rememberGunzipped(
    payload: Payload,
    next: Map<string, FileState>,
    unknown: Map<string, string>,
  ): void {
    const gunzipped = new Map<string, { input: string; sha256: string }>();
    for (const [path, file] of payload) {
      const input = unknown.get(path) ?? this.gunzipped.get(path)?.input;
      if (file.gunzip && input !== undefined)
        gunzipped.set(path, { input, sha256: (next.get(path) as FileState).sha256 });
    }
    this.gunzipped = gunzipped;
  }

  private removeLater(name: string): void {
    const path = join(this.dir, name);
    this.cleanup = this.cleanup.then(() => removeTree(path)).catch(() => {});
  }

  /** The next version's directory, `..TIMESTAMP.xxxxxx` (mkdtemp makes 0700; the application may be another user). */
  private makeVersionDir(now: Date): string {
    const tsDir = mkdtempSync(join(this.dir, timestampPrefix(now)));
    try {
      this.ownDir(tsDir);
    } catch (err) {
      rmSync(tsDir, { recursive: true, force: true });
      throw err;
    }
    return tsDir.slice(this.dir.length + 1);
  }

  /** The one atomic rename of `..data` to the new directory, then the visible symlinks. */
  private swapIn(tsName: string, payload: Payload, previous: Map<string, FileState>): void {
    try {
      const tmp = join(this.dir, DATA_TMP);
      rmSync(tmp, { force: true });
      symlinkSync(tsName, tmp);
      this.ownLink(tmp);
      renameSync(tmp, join(this.dir, DATA_DIR));
    } catch (err) {
      rmSync(join(this.dir, tsName), { recursive: true, force: true });
      throw err;
    }
    this.currentDir = tsName;
    this.linkTopLevel(payload, previous);
  }

  /**
   * Reads what an earlier run left, and removes leftovers of an interrupted write. A target directory that
   * exists (the emptyDir) is never chmodded or chowned: its setgid bit and group stay as the kubelet set them.
   * One made here gets the group and setgid bit of an fsGroup volume.
   */
  private async load(): Promise<void> {
    const created = await mkdir(this.dir, { recursive: true });
    if (created !== undefined && this.fsGroup !== undefined) {
      for (let d = this.dir; d.length >= created.length; d = dirname(d)) {
        await chown(d, -1, this.fsGroup);
        await chmod(d, DIR_MODE | FS_GROUP_DIR_BITS);
      }
    }
    // Directories inside a setgid target keep the bit, so that they keep inheriting its group.
    const setgid = this.fsGroup !== undefined || ((await stat(this.dir)).mode & SETGID) !== 0;
    this.dirMode = DIR_MODE | (setgid ? SETGID : 0) | (this.fsGroup !== undefined ? FS_GROUP_DIR_BITS : 0);
    const target = await readlinkOrUndefined(join(this.dir, DATA_DIR));
    this.hadData = target !== undefined;
    this.currentDir = target;
    let files = new Map<string, FileState>();
    if (target !== undefined) {
      try {
        files = await scan(join(this.dir, target), this.fsGroup);
      } catch {
        this.hadData = false; // a dangling ..data: rewrite everything
      }
    }
    for (const entry of await readdir(this.dir)) {
      if (entry.startsWith('..') && entry !== DATA_DIR && entry !== target) {
        await removeTree(join(this.dir, entry));
      }
    }
    this.current = files;
  }

  /** One `name -> ..data/name` symlink per top-level path; those no longer in the payload go. */
  private linkTopLevel(payload: Payload, previous: Map<string, FileState>): void {
    const names = new Set([...payload.keys()].map(topLevel));
    let present: Set<string> | undefined;
    for (const name of names) {
      if (this.linked.has(name)) continue;
      // One listing rather than a failed readlink, and its Error object, per new name.
      present ??= new Set(readdirSync(this.dir));
      const link = join(this.dir, name);
      const wanted = `${DATA_DIR}/${name}`;
      if (!present.has(name) || readlinkSyncOrUndefined(link) !== wanted) {
        // Symlink beside it, then rename over: the visible name never disappears.
        const tmp = join(this.dir, LINK_TMP);
        rmSync(tmp, { force: true });
        symlinkSync(wanted, tmp);
        this.ownLink(tmp);
        renameSync(tmp, link);
      }
      this.linked.add(name);
    }
    for (const name of new Set([...previous.keys()].map(topLevel))) {
      if (names.has(name)) continue;
      this.linked.delete(name);
      const link = join(this.dir, name);
      if (readlinkSyncOrUndefined(link) === `${DATA_DIR}/${name}`) unlinkSync(link);
    }
  }

  /** A directory made here: the fsGroup's group (before the chmod, which sets setgid), then its mode. */
  private ownDir(path: string): void {
    if (this.fsGroup !== undefined) chownSync(path, -1, this.fsGroup);
    chmodSync(path, this.dirMode);
  }

  /** Symlinks carry no permissions, but the kubelet gives them the fsGroup too. */
  private ownLink(path: string): void {
    if (this.fsGroup !== undefined) lchownSync(path, -1, this.fsGroup);
  }

  /**
   * Item subdirectories, then every plain file: hard-linked from the current version when its content and mode
   * are unchanged (no second copy in a memory-backed emptyDir while both versions exist), else decoded only
   * while it is written.
   */
  private writeFiles(
    tsDir: string,
    payload: Payload,
    next: Map<string, FileState>,
    current: Map<string, FileState>,
  ): void {
    const dirs = new Set<string>();
    for (const path of payload.keys()) {
      for (let d = dirname(path); d !== '.' && !dirs.has(d); d = dirname(d)) dirs.add(d);
    }
    for (const d of [...dirs].sort()) {
      mkdirSync(join(tsDir, d));
      this.ownDir(join(tsDir, d));
    }
    for (const [path, file] of payload) {
      if (file.gunzip || this.linkUnchanged(tsDir, path, next, current)) continue;
      const fd = this.openFile(join(tsDir, path), file);
      try {
        writeFileSync(fd, contentBytes(file.data));
        this.finishFile(fd, file);
      } finally {
        closeSync(fd);
      }
    }
  }

  private gunzippedIn(payload: Payload): boolean {
    for (const file of payload.values()) if (file.gunzip) return true;
    return false;
  }

  /** Every gunzipped file: linked when unchanged, else streamed (its hash goes into `next`); all within the cap. */
  private async gunzipFiles(
    tsDir: string,
    payload: Payload,
    next: Map<string, FileState>,
    current: Map<string, FileState>,
  ): Promise<void> {
    const budget = { cap: this.gunzipCap, left: this.gunzipCap };
    for (const [path, file] of payload) {
      if (!file.gunzip) continue;
      if (this.linkUnchanged(tsDir, path, next, current)) {
        budget.left -= statSync(join(tsDir, path)).size;
        continue;
      }
      const fd = this.openFile(join(tsDir, path), file);
      try {
        const digest = await gunzipToFile(fd, contentBytes(file.data), file.gunzip.key, budget);
        (next.get(path) as FileState).sha256 = digest;
        this.finishFile(fd, file);
      } finally {
        closeSync(fd);
      }
    }
  }

  /**
   * Hard-links `path` from the current version when the new one is known to be identical (same hash and mode):
   * files are never changed once written, so both versions can share it. False when it cannot.
   */
  private linkUnchanged(
    tsDir: string,
    path: string,
    next: Map<string, FileState>,
    current: Map<string, FileState>,
  ): boolean {
    const want = next.get(path);
    const have = current.get(path);
    if (
      this.currentDir === undefined ||
      !want?.sha256 ||
      want.sha256 !== have?.sha256 ||
      want.mode !== have.mode
    )
      return false;
    try {
      linkSync(join(this.dir, this.currentDir, path), join(tsDir, path));
      return true;
    } catch {
      return false; // gone or not linkable: write it instead
    }
  }

  private openFile(path: string, file: PayloadFile): number {
    return openSync(path, 'wx', this.fileMode(file.mode));
  }

  /** Group, then mode: the umask must not change the mode the source asked for. */
  private finishFile(fd: number, file: PayloadFile): void {
    if (this.fsGroup !== undefined) fchownSync(fd, -1, this.fsGroup);
    fchmodSync(fd, this.fileMode(file.mode));
  }
}

function sameFiles(a: Map<string, FileState>, b: Map<string, FileState>): boolean {
  if (a.size !== b.size) return false;
  for (const [path, s] of b) {
    const c = a.get(path);
    if (!c || c.sha256 !== s.sha256 || c.mode !== s.mode) return false;
  }
  return true;
}
