/**
 * YAML scalars as kubectl reads them. kubectl turns YAML into JSON with sigs.k8s.io/yaml, which resolves plain
 * (unquoted) scalars with go-yaml v2's YAML 1.1 rules: `yes`/`no`/`on`/`off`/`y`/`n` are booleans, `0644` is
 * octal (420), `0x1F`, `0o17`, `0b101`, `1_000` and `1e3` are numbers, `~` and `null` are null, and
 * `1:20` (a YAML 1.1 sexagesimal) and `2001-12-14` (a timestamp) stay strings. Map keys become strings: `yes` →
 * "true", `0644` → "420", `1.5` → "1.5" (a float key is printed with float32 precision, as kubectl does).
 */

export type Resolved =
  | { kind: 'str' }
  | { kind: 'null' }
  | { kind: 'bool'; value: boolean }
  | { kind: 'int'; value: bigint }
  | { kind: 'float'; value: number };

const STR: Resolved = { kind: 'str' };

/** go-yaml v2's resolveMap: the plain scalars looked up by their exact spelling. */
const SPECIAL = new Map<string, Resolved>();
for (const s of ['y', 'Y', 'yes', 'Yes', 'YES', 'true', 'True', 'TRUE', 'on', 'On', 'ON'])
  SPECIAL.set(s, { kind: 'bool', value: true });
for (const s of ['n', 'N', 'no', 'No', 'NO', 'false', 'False', 'FALSE', 'off', 'Off', 'OFF'])
  SPECIAL.set(s, { kind: 'bool', value: false });
for (const s of ['', '~', 'null', 'Null', 'NULL']) SPECIAL.set(s, { kind: 'null' });
for (const s of ['.nan', '.NaN', '.NAN']) SPECIAL.set(s, { kind: 'float', value: NaN });
for (const s of ['.inf', '.Inf', '.INF', '+.inf', '+.Inf', '+.INF'])
  SPECIAL.set(s, { kind: 'float', value: Infinity });
for (const s of ['-.inf', '-.Inf', '-.INF']) SPECIAL.set(s, { kind: 'float', value: -Infinity });

/** go-yaml v2's yamlStyleFloat, tried on the text without underscores. */
const YAML_STYLE_FLOAT = /^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$/;
/** A scalar that starts with "." goes to Go's strconv.ParseFloat as is: underscores only between digits. */
const DOT_FLOAT = /^\.[0-9](_?[0-9])*([eE][-+]?[0-9](_?[0-9])*)?$/;

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;

/** Go's strconv.ParseInt(s, 0, 64), then ParseUint(s, 0, 64): base prefixes 0x, 0o, 0b and a bare leading 0 (octal). */
function goParseInt(s: string): bigint | undefined {
  let i = 0;
  let negative = false;
  if (s[0] === '+' || s[0] === '-') {
    negative = s[0] === '-';
    i = 1;
  }
  const rest = s.slice(i);
  const prefix = rest.slice(0, 2).toLowerCase();
  let digits: string;
  let radix: string;
  if (prefix === '0x') [digits, radix] = [rest.slice(2), '0x'];
  else if (prefix === '0o') [digits, radix] = [rest.slice(2), '0o'];
  else if (prefix === '0b') [digits, radix] = [rest.slice(2), '0b'];
  else if (rest.length > 1 && rest[0] === '0') [digits, radix] = [rest.slice(1), '0o'];
  else [digits, radix] = [rest, ''];
  const valid =
    radix === '0x' ? /^[0-9a-fA-F]+$/ : radix === '0o' ? /^[0-7]+$/ : radix === '0b' ? /^[01]+$/ : /^[0-9]+$/;
  if (!valid.test(digits)) return undefined;
  const magnitude = BigInt(radix + digits);
  const value = negative ? -magnitude : magnitude;
  if (value >= INT64_MIN && value <= INT64_MAX) return value;
  // ParseUint takes no sign at all.
  if (i === 0 && value <= UINT64_MAX) return value;
  return undefined;
}

/** What a plain scalar is to kubectl (go-yaml v2's resolve for an untagged plain scalar). */
export function resolvePlain(text: string): Resolved {
  const special = SPECIAL.get(text);
  if (special !== undefined) return special;
  const first = text[0];
  if (first === '.') {
    if (!DOT_FLOAT.test(text)) return STR;
    const value = Number(text.replaceAll('_', ''));
    return Number.isFinite(value) ? { kind: 'float', value } : STR;
  }
  if (first === '+' || first === '-' || (first !== undefined && first >= '0' && first <= '9')) {
    const plain = text.replaceAll('_', '');
    const int = goParseInt(plain);
    if (int !== undefined) return { kind: 'int', value: int };
    if (YAML_STYLE_FLOAT.test(plain)) {
      const value = Number(plain);
      // Go's ParseFloat fails on overflow, and the scalar stays a string.
      if (Number.isFinite(value)) return { kind: 'float', value };
    }
  }
  return STR;
}

/** True when kubectl reads `text`, written as a plain scalar, as the string itself. */
export function isPlainString(text: string): boolean {
  return resolvePlain(text).kind === 'str';
}

/** The JSON value of a resolved scalar (ints beyond 2^53 lose precision, as in kubectl's own JSON output). */
export function resolvedValue(resolved: Resolved, text: string): unknown {
  switch (resolved.kind) {
    case 'str':
      return text;
    case 'null':
      return null;
    case 'bool':
      return resolved.value;
    case 'int':
      return Number(resolved.value);
    case 'float':
      return resolved.value;
  }
}

/** A map key as sigs.k8s.io/yaml turns it into a JSON key; undefined for a null key, which kubectl refuses. */
export function keyString(resolved: Resolved, text: string): string | undefined {
  switch (resolved.kind) {
    case 'str':
      return text;
    case 'null':
      return undefined;
    case 'bool':
      return String(resolved.value);
    case 'int':
      return resolved.value.toString();
    case 'float':
      return formatFloat32(resolved.value);
  }
}

/**
 * Go's strconv.FormatFloat(f, 'g', -1, 32), with go-yaml's names for the special values: the shortest decimal
 * that reads back as the same float32, in exponent form below 1e-4 and from 1e+06.
 */
export function formatFloat32(f: number): string {
  if (Number.isNaN(f)) return '.nan';
  const x = Math.fround(f);
  if (x === Infinity) return '.inf';
  if (x === -Infinity) return '-.inf';
  if (x === 0) return Object.is(x, -0) ? '-0' : '0';
  const sign = x < 0 ? '-' : '';
  const abs = Math.abs(x);
  let digits = '';
  let exp = 0;
  for (let precision = 1; precision <= 9; precision++) {
    const e = abs.toExponential(precision - 1);
    if (Math.fround(Number(e)) !== abs) continue;
    const [mantissa = '', exponent = '0'] = e.split('e');
    digits = mantissa.replace('.', '');
    exp = Number(exponent);
    break;
  }
  if (exp < -4 || exp >= 6) {
    const mantissa = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    return `${sign}${mantissa}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
  }
  const point = exp + 1;
  if (point <= 0) return `${sign}0.${'0'.repeat(-point)}${digits}`;
  if (point >= digits.length) return `${sign}${digits}${'0'.repeat(point - digits.length)}`;
  return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
}
