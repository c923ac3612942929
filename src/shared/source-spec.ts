/**
 * The `--source` argument: the contract between the webhook, which writes it into the sidecar's args,
 * and the reloader, which reads it. Both sides use this one module so they cannot drift apart.
 *
 *   KIND/NAME=DIR[?PARAM&PARAM...]
 *
 * KIND is `secret` or `configmap`; DIR an absolute directory. Parameters, URL-encoded:
 *   optional=true        a missing object (or missing item key) is not an error
 *   defaultMode=0644     octal file mode of every key (the kubelet's default is 0644)
 *   gunzip=true          keys ending in `.gz` are decompressed and written without the suffix
 *   item=KEY:PATH[:MODE] only these keys, each at a relative PATH, with an optional octal MODE
 *                        (repeatable; KEY, PATH and MODE are each URL-encoded)
 */

export type SourceKind = 'secret' | 'configmap';

export interface SourceItem {
  key: string;
  path: string;
  mode?: number;
}

export interface SourceSpec {
  kind: SourceKind;
  name: string;
  dir: string;
  items?: SourceItem[];
  defaultMode?: number;
  optional?: boolean;
  gunzip?: boolean;
}

export const DEFAULT_FILE_MODE = 0o644;

const NAME_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const KEY_RE = /^[-._a-zA-Z0-9]+$/;

export class SourceSpecError extends Error {}

function fail(arg: string, problem: string): never {
  throw new SourceSpecError(
    `invalid --source "${arg}": ${problem} (expected KIND/NAME=DIR[?optional=true&defaultMode=0644&gunzip=true&item=KEY:PATH[:MODE]], KIND secret or configmap)`,
  );
}

export function isValidObjectName(name: string): boolean {
  return name.length > 0 && name.length <= 253 && NAME_RE.test(name);
}

export function isValidKey(key: string): boolean {
  return key.length <= 253 && KEY_RE.test(key) && key !== '.' && key !== '..';
}

/** The kubelet's limits on a projected path (pkg/volume/util/atomic_writer.go): bytes, as Go's len() counts. */
const MAX_PATH_BYTES = 4096;
const MAX_FILE_NAME_BYTES = 255;

/**
 * Where the kubelet writes an item path: Go's path.Clean of it, for a path itemPathProblem accepts (relative,
 * without `..`): `.` elements, empty elements and a trailing slash go (`./config.yaml` → `config.yaml`,
 * `sub/./x` → `sub/x`, `a//b/` → `a/b`); `.` when nothing is left.
 */
export function cleanItemPath(path: string): string {
  return (
    path
      .split('/')
      .filter((part) => part !== '' && part !== '.')
      .join('/') || '.'
  );
}

/**
 * Why the kubelet would not write `items[].path`, or undefined when it would. The API server's validation of
 * KeyToPath (pkg/apis/core/validation: not empty, relative, no `..` element, not starting with `..`) and the
 * kubelet's AtomicWriter validatePath (the same, and at most 4096 bytes, file names at most 255 bytes) accept,
 * and the kubelet then writes at path.Clean of the path: `./config.yaml`, `sub/./x`, `a//b` are fine. Refused
 * besides: a path that cleans to the volume itself (`.`, `./`: the kubelet's write fails, the path is a
 * directory), a NUL character (no file name holds one), text that is not well-formed (no API server sends it),
 * and a path whose cleaned form starts with `..` (`./..data`): the API refuses `..data` written plainly, and the
 * kubelet reserves those names for its own `..data` machinery, where it writes such a file into its own
 * bookkeeping or, for `..data_tmp`, fails every later update.
 */
export function itemPathProblem(path: string): string | undefined {
  if (path === '') return 'must not be empty';
  if (path.startsWith('/')) return 'must be a relative path';
  if (!path.isWellFormed() || path.includes('\0')) return 'must be well-formed text without NUL';
  if (Buffer.byteLength(path) > MAX_PATH_BYTES) return `must be at most ${MAX_PATH_BYTES} bytes long`;
  const parts = path.split('/');
  if (parts.includes('..')) return "must not contain '..'";
  if (parts.some((part) => Buffer.byteLength(part) > MAX_FILE_NAME_BYTES))
    return `must not hold a file name longer than ${MAX_FILE_NAME_BYTES} bytes`;
  if (path.startsWith('..')) return "must not start with '..'";
  const clean = cleanItemPath(path);
  if (clean === '.') return 'names the volume itself, not a file in it';
  if (clean.startsWith('..')) return `must not start with '..' once cleaned ("${clean}")`;
  return undefined;
}

/** An item path the kubelet writes (see itemPathProblem). */
export function isValidItemPath(path: string): boolean {
  return itemPathProblem(path) === undefined;
}

/**
 * Why a list of items cannot be written together, or undefined. Two items at the same path (once cleaned) are
 * fine, the last one wins, as in the kubelet's payload map. A path that is a file for one item and a directory
 * for another (`a` and `a/b`) fails in the kubelet whenever both keys exist: always, unless the source is
 * optional (then a missing key leaves room for the other; the reloader refuses the object when both exist).
 */
export function itemsProblem(items: readonly SourceItem[], optional: boolean): string | undefined {
  if (optional) return undefined;
  const files = new Set(items.map((item) => cleanItemPath(item.path)));
  for (const file of files) {
    for (let i = file.indexOf('/'); i >= 0; i = file.indexOf('/', i + 1)) {
      if (files.has(file.slice(0, i)))
        return `item path "${file.slice(0, i)}" is a file, and a directory of item path "${file}"`;
    }
  }
  return undefined;
}

export function isValidMode(mode: number): boolean {
  return Number.isInteger(mode) && mode >= 0 && mode <= 0o777;
}

function parseMode(arg: string, text: string, what: string): number {
  if (!/^0?[0-7]{1,3}$/.test(text)) fail(arg, `${what} "${text}" is not an octal file mode such as 0644`);
  return parseInt(text, 8);
}

function formatMode(mode: number): string {
  return '0' + mode.toString(8).padStart(3, '0');
}

const SAFE_PART = /^[A-Za-z0-9._~/-]*$/;

/** Percent-encodes what would split the argument (`:` `&` `?` `=` `%`, spaces, non-ASCII); keeps paths readable. */
function encodePart(part: string): string {
  return SAFE_PART.test(part) ? part : part.replace(/[^A-Za-z0-9._~/-]/gu, (c) => encodeURIComponent(c));
}

function safeDecode(arg: string, text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    fail(arg, `"${text}" is not valid percent-encoding`);
  }
}

export function parseSourceSpec(arg: string): SourceSpec {
  const q = arg.indexOf('?');
  const head = q < 0 ? arg : arg.slice(0, q);
  const query = q < 0 ? '' : arg.slice(q + 1);
  const m = /^([a-zA-Z]+)\/([^=]+)=(.+)$/.exec(head);
  if (!m) fail(arg, 'missing KIND/NAME=DIR');
  const [, rawKind, name, dir] = m as unknown as [string, string, string, string];
  const kind = rawKind.toLowerCase();
  if (kind !== 'secret' && kind !== 'configmap')
    fail(arg, `kind "${rawKind}" is neither secret nor configmap`);
  if (!isValidObjectName(name)) fail(arg, `"${name}" is not a valid object name (lowercase DNS subdomain)`);
  if (!dir.startsWith('/')) fail(arg, `directory "${dir}" is not absolute`);
  const spec: SourceSpec = { kind, name, dir };
  for (const pair of query ? query.split('&') : []) {
    const eq = pair.indexOf('=');
    const param = eq < 0 ? pair : pair.slice(0, eq);
    const raw = eq < 0 ? '' : pair.slice(eq + 1);
    const value = param === 'item' ? raw : safeDecode(arg, raw);
    switch (param) {
      case 'optional':
      case 'gunzip':
        if (value !== 'true' && value !== 'false')
          fail(arg, `${param} must be true or false, not "${value}"`);
        spec[param] = value === 'true';
        break;
      case 'defaultMode':
        spec.defaultMode = parseMode(arg, value, 'defaultMode');
        break;
      case 'item': {
        const parts = value.split(':').map((part) => safeDecode(arg, part));
        const [key, path, mode] = parts;
        if (parts.length < 2 || parts.length > 3 || key === undefined || path === undefined) {
          fail(arg, `item "${value}" is not KEY:PATH[:MODE]`);
        }
        if (!isValidKey(key)) fail(arg, `item key "${key}" is not a valid key`);
        const problem = itemPathProblem(path);
        if (problem) fail(arg, `item path "${path}" ${problem}`);
        const item: SourceItem = { key, path };
        if (mode !== undefined) item.mode = parseMode(arg, mode, 'item mode');
        (spec.items ??= []).push(item);
        break;
      }
      default:
        fail(arg, `unknown parameter "${param}"`);
    }
  }
  return spec;
}

export function formatSourceSpec(spec: SourceSpec): string {
  const params: string[] = [];
  if (spec.optional) params.push('optional=true');
  if (spec.defaultMode !== undefined) params.push(`defaultMode=${formatMode(spec.defaultMode)}`);
  if (spec.gunzip) params.push('gunzip=true');
  for (const item of spec.items ?? []) {
    const parts = [item.key, item.path, ...(item.mode === undefined ? [] : [formatMode(item.mode)])];
    params.push(`item=${parts.map(encodePart).join(':')}`);
  }
  return `${spec.kind}/${spec.name}=${spec.dir}${params.length ? '?' + params.join('&') : ''}`;
}
