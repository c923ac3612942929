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

/** A relative path as the kubelet accepts it for `items[].path`: no `..` element, not absolute, well-formed text. */
export function isValidItemPath(path: string): boolean {
  if (path.length === 0 || path.startsWith('/') || !path.isWellFormed()) return false;
  return !path.split('/').some((part) => part === '..' || part === '') && !path.startsWith('..');
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
  if (kind !== 'secret' && kind !== 'configmap') fail(arg, `kind "${rawKind}" is neither secret nor configmap`);
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
        if (value !== 'true' && value !== 'false') fail(arg, `${param} must be true or false, not "${value}"`);
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
        if (!isValidItemPath(path)) fail(arg, `item path "${path}" must be relative and must not contain ".."`);
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
