import { isObject } from '../injection/json.ts';
import { isPlainString } from './scalars.ts';

/**
 * Writing the values injection adds (the sidecar, volumes, annotations) as YAML or JSON text that kubectl reads
 * back as the same values. A string is written plain only when it is plain-safe and no YAML reader would take it
 * for anything else: not for kubectl (go-yaml v2: `no`, `on`, `0644`, `1e3`, `0x1F`, `1_000`), nor for the YAML
 * 1.1 specification (`1:20`, `2001-12-14`), nor for YAML 1.2; everything else is double-quoted.
 */

/** Characters a plain scalar may have here, in block and flow context alike (no spaces, commas, brackets, #, :). */
const SAFE_PLAIN = /^[A-Za-z0-9_./][A-Za-z0-9_./=@+-]*$/;
/** Block context also allows ':' inside (URLs, image references), never at the end. */
const SAFE_PLAIN_BLOCK = /^[A-Za-z0-9_./][A-Za-z0-9_./:=@+-]*$/;
/** What YAML 1.1's own tag repository reads as int, float, bool or timestamp (go-yaml does not read all of them). */
const YAML11_NOT_STRING = [
  /^[-+]?(0b[01_]+|0[0-7_]+|(0|[1-9][0-9_]*)|0x[0-9a-fA-F_]+|[1-9][0-9_]*(:[0-5]?[0-9])+)$/,
  /^[-+]?([0-9][0-9_]*)?\.[0-9.]*([eE][-+][0-9]+)?$/,
  /^[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+\.[0-9_]*$/,
  /^(y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$/,
  /^[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?/,
  /^[-+]?(0o[0-7]+|[0-9]+([eE][-+]?[0-9]+)?)$/,
];

export function needsQuotes(text: string, flow: boolean): boolean {
  if (!(flow ? SAFE_PLAIN : SAFE_PLAIN_BLOCK).test(text) || text.endsWith(':')) return true;
  if (!isPlainString(text) || text === '<<') return true;
  return YAML11_NOT_STRING.some((re) => re.test(text));
}

export interface RenderStyle {
  /** JSON text: every key and string double-quoted, as JSON. */
  json: boolean;
  /** Spaces per nesting level of a block map (and of pretty-printed flow collections). */
  unit: number;
  /** Where a block sequence's dashes go relative to its key: 0 (`key:\n- a`) or the unit (`key:\n  - a`). */
  seqIndent: number;
  /** Line ending of the document. */
  eol: string;
}

/**
 * A double-quoted string, as JSON writes it (valid YAML too), with the characters escaped that YAML does not
 * allow raw (DEL, C1 controls, U+FFFE, U+FFFF, a byte order mark) or that YAML 1.1 takes for line breaks inside
 * quotes and folds into spaces (NEL, U+2028, U+2029).
 */
export function quoted(text: string): string {
  return JSON.stringify(text).replace(
    /[\u007f-\u009f\u2028\u2029\ufeff\ufffe\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

export function scalarText(value: unknown, flow: boolean, json: boolean): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'boolean') return String(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new Error(`cannot write the number ${value}`);
    return String(value);
  }
  if (typeof value === 'string') return json || needsQuotes(value, flow) ? quoted(value) : value;
  throw new Error(`cannot write a ${typeof value} as a scalar`);
}

/** A map or list with something in it, written over several lines in block style. */
export function isBlockCollection(value: unknown): boolean {
  return (Array.isArray(value) && value.length > 0) || (isObject(value) && Object.keys(value).length > 0);
}

const pad = (n: number): string => ' '.repeat(n);

/** An empty collection or a scalar, on one line. */
function inline(value: unknown, style: RenderStyle, flow: boolean): string {
  if (Array.isArray(value)) return '[]';
  if (isObject(value)) return '{}';
  return scalarText(value, flow, style.json);
}

/**
 * `value` in block style, one string per line, each already indented: a map's keys start at `column`, a list's
 * dashes at `column`. A scalar or empty collection is one line.
 */
export function blockLines(value: unknown, column: number, style: RenderStyle): string[] {
  const lines: string[] = [];
  emitBlock(value, column, style, lines, '');
  return lines;
}

/** Appends `value`'s lines to `lines` (no spreading: a list may be long); `dash` replaces the first line's indent. */
function emitBlock(value: unknown, column: number, style: RenderStyle, lines: string[], dash: string): void {
  let first = true;
  const indent = (): string => {
    const text = first && dash !== '' ? `${pad(column - dash.length)}${dash}` : pad(column);
    first = false;
    return text;
  };
  if (isObject(value) && Object.keys(value).length > 0) {
    for (const [key, item] of Object.entries(value)) {
      if (item === undefined) continue;
      const head = `${indent()}${scalarText(key, false, style.json)}:`;
      if (isBlockCollection(item)) {
        lines.push(head);
        emitBlock(item, column + (Array.isArray(item) ? style.seqIndent : style.unit), style, lines, '');
      } else lines.push(`${head} ${inline(item, style, false)}`);
    }
    return;
  }
  if (Array.isArray(value) && value.length > 0) {
    for (const item of value) {
      const prefix = `${indent()}- `;
      if (isBlockCollection(item)) emitBlock(item, column + 2, style, lines, prefix.trimStart());
      else lines.push(`${prefix}${inline(item, style, false)}`);
    }
    return;
  }
  lines.push(`${indent()}${inline(value, style, false)}`);
}

/**
 * `value` in flow style (JSON when style.json). With `pretty`, collections spread over lines as JSON.stringify
 * indents them, the first line starting where the value goes and later lines indented from `pretty.column`.
 */
export function flowText(
  value: unknown,
  style: RenderStyle,
  pretty?: { column: number; unit: number },
): string {
  const key = (k: string): string => scalarText(k, true, style.json);
  const walk = (v: unknown, column: number): string => {
    const entries: [string | undefined, unknown][] | undefined = Array.isArray(v)
      ? v.map((item) => [undefined, item])
      : isObject(v)
        ? Object.entries(v).filter(([, item]) => item !== undefined)
        : undefined;
    if (entries === undefined) return scalarText(v, true, style.json);
    const [open, close] = Array.isArray(v) ? ['[', ']'] : ['{', '}'];
    if (entries.length === 0) return `${open}${close}`;
    const inner = pretty ? column + pretty.unit : column;
    const parts = entries.map(([k, item]) => `${k === undefined ? '' : `${key(k)}: `}${walk(item, inner)}`);
    if (!pretty) return `${open}${parts.join(', ')}${close}`;
    const nl = style.eol;
    return `${open}${nl}${parts.map((p) => pad(inner) + p).join(`,${nl}`)}${nl}${pad(column)}${close}`;
  };
  return walk(value, pretty?.column ?? 0);
}
