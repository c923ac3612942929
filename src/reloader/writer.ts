import { createHash } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  closeSync,
  fchmodSync,
  fchownSync,
  lchownSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readlinkSync,
  renameSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { chmod, chown, lstat, mkdir, readdir, readFile, readlink, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Payload } from './projection.ts';

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

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
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

function validatePayload(payload: Payload): void {
  const files = new Set(payload.keys());
  for (const path of files) {
    if (
      path === '' ||
      path.startsWith('/') ||
      path.startsWith('..') ||
      path.split('/').some((p) => p === '' || p === '..' || p === '.')
    ) {
      throw new Error(`invalid path "${path}" in the payload`);
    }
    // `a` as a file and `a/b` cannot both exist.
    for (let i = path.indexOf('/'); i >= 0; i = path.indexOf('/', i + 1)) {
      if (files.has(path.slice(0, i)))
        throw new Error(`path "${path.slice(0, i)}" is both a file and a directory in the payload`);
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
      const path = join(root, rel);
      const [data, st] = await Promise.all([readFile(path), lstat(path)]);
      const mode = wrongGroup || (gid !== undefined && st.gid !== gid) ? -1 : st.mode & 0o777;
      files.set(rel, { sha256: sha256(data), mode });
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
 * afterwards only hashes are kept in memory.
 */
export class AtomicWriter {
  readonly dir: string;
  private readonly fsGroup: number | undefined;
  /** Mode of every directory made: 0755, plus setgid (and group r-x) with an fsGroup or in a setgid target. */
  private dirMode = DIR_MODE;
  private current: Map<string, FileState> | undefined;
  private currentDir: string | undefined;
  private hadData = false;
  private written = false;
  /** Top-level names whose `name -> ..data/name` symlink is known to be in place. */
  private readonly linked = new Set<string>();
  private cleanup: Promise<void> = Promise.resolve();

  constructor(dir: string, opts: WriterOptions = {}) {
    this.dir = dir;
    this.fsGroup = opts.fsGroup;
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

  /** Resolves once every replaced timestamped directory is gone (tests, shutdown). */
  settled(): Promise<void> {
    return this.cleanup;
  }

  async write(payload: Payload, now = new Date()): Promise<WriteResult> {
    validatePayload(payload);
    if (!this.current) await this.load();
    const current = this.current as Map<string, FileState>;
    const next = new Map<string, FileState>();
    for (const [path, file] of payload)
      next.set(path, { sha256: sha256(file.data), mode: this.fileMode(file.mode) });
    const initial = !this.hadData && !this.written;
    if (!initial && sameFiles(current, next)) {
      // After a restart with identical content, still repair symlinks an interrupted run may have missed.
      this.linkTopLevel(payload, current);
      return { changed: false, initial: false };
    }
    const oldDir = this.currentDir;
    this.swapIn(payload, current, now);
    if (oldDir && oldDir !== this.currentDir) {
      // Removals are chained, never awaited by the next write: in a burst the newest content goes to disk at once.
      const old = join(this.dir, oldDir);
      this.cleanup = this.cleanup.then(() => rm(old, { recursive: true, force: true })).catch(() => {});
    }
    this.current = next;
    this.written = true;
    return { changed: true, initial };
  }

  /** New timestamped directory, files, then the one atomic rename of `..data`, then the visible symlinks. */
  private swapIn(payload: Payload, previous: Map<string, FileState>, now: Date): void {
    const tsDir = mkdtempSync(join(this.dir, timestampPrefix(now)));
    const tsName = tsDir.slice(this.dir.length + 1);
    try {
      this.ownDir(tsDir); // mkdtemp makes 0700; the application may run as another user
      this.writeFiles(tsDir, payload);
      const tmp = join(this.dir, DATA_TMP);
      rmSync(tmp, { force: true });
      symlinkSync(tsName, tmp);
      this.ownLink(tmp);
      renameSync(tmp, join(this.dir, DATA_DIR));
    } catch (err) {
      rmSync(tsDir, { recursive: true, force: true });
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
        await rm(join(this.dir, entry), { recursive: true, force: true });
      }
    }
    this.current = files;
  }

  /** One `name -> ..data/name` symlink per top-level path; those no longer in the payload go. */
  private linkTopLevel(payload: Payload, previous: Map<string, FileState>): void {
    const names = new Set([...payload.keys()].map(topLevel));
    for (const name of names) {
      if (this.linked.has(name)) continue;
      const link = join(this.dir, name);
      const wanted = `${DATA_DIR}/${name}`;
      if (readlinkSyncOrUndefined(link) !== wanted) {
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

  private writeFiles(tsDir: string, payload: Payload): void {
    const dirs = new Set<string>();
    for (const path of payload.keys()) {
      for (let d = dirname(path); d !== '.' && !dirs.has(d); d = dirname(d)) dirs.add(d);
    }
    for (const d of [...dirs].sort()) {
      mkdirSync(join(tsDir, d));
      this.ownDir(join(tsDir, d));
    }
    for (const [path, file] of payload) {
      const mode = this.fileMode(file.mode);
      const fd = openSync(join(tsDir, path), 'wx', mode);
      try {
        writeFileSync(fd, file.data);
        if (this.fsGroup !== undefined) fchownSync(fd, -1, this.fsGroup);
        fchmodSync(fd, mode); // the umask must not change the mode the source asked for
      } finally {
        closeSync(fd);
      }
    }
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
