import {
  Composer,
  Lexer,
  Parser,
  isAlias,
  isMap,
  isPair,
  isScalar,
  isSeq,
  type Document,
  type Node as YamlNode,
} from 'yaml';
import { isObject, type JsonObject } from '../injection/json.ts';
import { InputError, position } from './input.ts';
import { keyString, resolvePlain, resolvedValue, type Resolved } from './scalars.ts';

/**
 * Reading manifests as kubectl reads them (k8s.io/apimachinery's YAMLOrJSONDecoder, sigs.k8s.io/yaml,
 * go-yaml v2): a text whose first non-space character is `{` is a stream of JSON values; anything else is YAML
 * split into documents at every line that starts with `---`, each document read with YAML 1.1 scalars
 * (scalars.ts), merge keys (`<<`) and anchors. Comment-only and null documents are skipped.
 */

/** Deeper nesting is refused: kubectl's own limit is 10,000, the YAML composer's stack ends near 900. */
export const MAX_DEPTH = 500;

export interface ManifestDocument {
  /** 1-based among the documents of its source (comment-only and null documents are not counted). */
  index: number;
  /** The part of the source text that is this document: a YAML section between --- lines, or a JSON value. */
  start: number;
  end: number;
  /** The line of the document's first content, for messages. */
  line: number;
  value: JsonObject;
}

export interface ManifestSource {
  /** The file name as given; undefined for standard input. */
  name?: string;
  text: string;
  /** `json`: a stream of JSON values; `yaml`: YAML documents (JSON ones among them are YAML too). */
  format: 'yaml' | 'json';
  /** A YAML text that starts with `{`: kubectl would take it for JSON, so the output needs a leading `---`. */
  startsLikeJson: boolean;
  documents: ManifestDocument[];
}

const COMPOSE_OPTIONS = {
  // Every scalar stays a string: scalars.ts resolves plain ones as go-yaml v2 does.
  schema: 'failsafe',
  // Merge keys are applied by the converter below, with go-yaml v2's order.
  merge: false,
  // kubectl keeps the last of duplicate keys; the library's check is quadratic in the size of the map.
  uniqueKeys: false,
  keepSourceTokens: true,
  prettyErrors: false,
} as const;

/** An error at an offset of the text being read, turned into `NAME: line L: MESSAGE` by the caller. */
class ReadError extends Error {
  readonly offset: number;
  constructor(offset: number, message: string) {
    super(message);
    this.offset = offset;
  }
}

const TAG = 'tag:yaml.org,2002:';

/**
 * Parses one YAML document's text (a section between --- lines). Flow nesting deeper than MAX_DEPTH is refused
 * while lexing, before the parser spends time on it; anything the YAML library reports is a ReadError.
 */
export function parseYaml(text: string): Document.Parsed[] {
  const parser = new Parser();
  const composer = new Composer(COMPOSE_OPTIONS);
  const docs: Document.Parsed[] = [];
  let depth = 0;
  let offset = 0;
  for (const lexeme of new Lexer().lex(text)) {
    if (lexeme === '{' || lexeme === '[') {
      if (++depth > MAX_DEPTH)
        throw new ReadError(
          offset,
          `nested more than ${MAX_DEPTH} levels deep; Kubernetes objects are never this deep`,
        );
    } else if (lexeme === '}' || lexeme === ']') depth--;
    // Control characters of the lexer (document, scalar markers) take no room in the source.
    if (lexeme.length > 1 || lexeme.charCodeAt(0) >= 0x20 || lexeme === '\n' || lexeme === '\t')
      offset += lexeme.length;
    for (const token of parser.next(lexeme)) for (const doc of composer.next(token)) docs.push(doc);
  }
  for (const token of parser.end()) for (const doc of composer.next(token)) docs.push(doc);
  for (const doc of composer.end()) docs.push(doc);
  for (const doc of docs) {
    const error = doc.errors[0];
    if (error === undefined) continue;
    if (error.code === 'RESOURCE_EXHAUSTION')
      throw new ReadError(
        error.pos[0],
        `nested too deeply to read (more than the YAML reader's stack allows); Kubernetes objects are never this deep`,
      );
    throw new ReadError(error.pos[0], `not valid YAML: ${error.message.split('\n')[0] ?? error.code}`);
  }
  return docs;
}

/** go-yaml v2's limit on alias expansion (allowedAliasRatio): at most 99% of a small document, 10% of a huge one. */
function allowedAliasRatio(total: number): number {
  if (total <= 400_000) return 0.99;
  if (total >= 4_000_000) return 0.1;
  return 0.99 - (0.89 * (total - 400_000)) / 3_600_000;
}

interface Converted {
  value: unknown;
  /** Nodes once every alias is expanded. */
  size: number;
}

/**
 * A YAML node tree to the JSON value kubectl makes of it. Anchored values are shared, not copied, so an alias
 * bomb costs nothing here; its expanded size is counted and refused with go-yaml's rule. Recursion is bounded by
 * MAX_DEPTH, and an alias always refers to an anchor that is complete (it comes earlier in the text).
 */
class Converter {
  private readonly anchors = new Map<string, Converted>();
  private nodes = 0;

  convertDocument(node: YamlNode | null): unknown {
    if (node === null) return null;
    const { value, size } = this.convert(node, 0);
    const aliased = size - this.nodes;
    if (aliased > 100 && size > 1000 && aliased / size > allowedAliasRatio(size))
      throw new ReadError(
        node.range?.[0] ?? 0,
        `its aliases expand to ${size > 1e15 ? 'more than 10^15' : Math.round(size).toLocaleString('en')} nodes from ${this.nodes.toLocaleString('en')} written (an alias bomb?); kubectl refuses such excessive aliasing too`,
      );
    return value;
  }

  private convert(node: unknown, depth: number): Converted {
    if (depth > MAX_DEPTH)
      throw new ReadError(
        offsetOf(node),
        `nested more than ${MAX_DEPTH} levels deep; Kubernetes objects are never this deep`,
      );
    let result: Converted;
    if (isAlias(node)) {
      const target = this.anchors.get(node.source);
      if (target === undefined)
        throw new ReadError(
          offsetOf(node),
          `the alias *${node.source} has no anchor &${node.source} before it`,
        );
      return target;
    }
    this.nodes++;
    if (isScalar(node)) result = { value: this.scalar(node), size: 1 };
    else if (isSeq(node)) {
      const array: unknown[] = [];
      let size = 1;
      for (const item of node.items) {
        const converted = this.convert(item, depth + 1);
        array.push(converted.value);
        size += converted.size;
      }
      result = { value: array, size };
    } else if (isMap(node)) result = this.map(node, depth);
    else throw new ReadError(offsetOf(node), 'an unexpected YAML node');
    const anchor = (node as { anchor?: string }).anchor;
    if (anchor !== undefined) this.anchors.set(anchor, result);
    return result;
  }

  private map(node: { items: unknown[] }, depth: number): Converted {
    const object: JsonObject = {};
    let size = 1;
    for (const pair of node.items) {
      if (!isPair(pair)) continue;
      const { key, value } = pair;
      if (isScalar(key) && key.type === 'PLAIN' && key.tag === undefined && key.value === '<<') {
        size += this.merge(value, object, depth);
        continue;
      }
      const name = this.key(key);
      let converted: Converted;
      if (value === null) {
        this.nodes++;
        converted = { value: null, size: 1 };
      } else converted = this.convert(value, depth + 1);
      size += converted.size + 1;
      setKey(object, name, converted.value);
    }
    return { value: object, size };
  }

  /** go-yaml v2's merge: the merged maps' keys are set where `<<` stands; of a list, earlier maps win. */
  private merge(source: unknown, into: JsonObject, depth: number): number {
    const mapOf = (node: unknown): Converted => {
      const converted = this.convert(node, depth + 1);
      const isMapNode = isMap(node) || (isAlias(node) && isObject(converted.value));
      if (!isMapNode || !isObject(converted.value))
        throw new ReadError(
          offsetOf(node),
          'a merge key (<<) takes a map or a list of maps; kubectl cannot read anything else there',
        );
      return converted;
    };
    if (isSeq(source)) {
      const maps = source.items.map(mapOf);
      let size = 1;
      for (let i = maps.length - 1; i >= 0; i--) {
        const map = maps[i] as Converted;
        for (const [k, v] of Object.entries(map.value as JsonObject)) setKey(into, k, v);
        size += map.size;
      }
      return size;
    }
    const map = mapOf(source);
    for (const [k, v] of Object.entries(map.value as JsonObject)) setKey(into, k, v);
    return map.size;
  }

  private key(node: unknown): string {
    const target = isAlias(node) ? this.anchors.get(node.source) : undefined;
    if (isAlias(node) && target === undefined)
      throw new ReadError(
        offsetOf(node),
        `the alias *${node.source} has no anchor &${node.source} before it`,
      );
    if (isScalar(node)) {
      const { resolved, text } = this.resolve(node);
      const name = keyString(resolved, text);
      if (name === undefined)
        throw new ReadError(offsetOf(node), 'a map key is null (empty or ~); kubectl cannot read it');
      this.nodes++;
      return name;
    }
    if (target !== undefined) {
      const v = target.value;
      if (typeof v === 'string') return v;
      if (typeof v === 'number' || typeof v === 'boolean') return String(v);
    }
    throw new ReadError(offsetOf(node), 'a map key is a list, a map or null; kubectl reads only scalar keys');
  }

  private resolve(node: { value: unknown; type?: string; tag?: string }): {
    resolved: Resolved;
    text: string;
  } {
    let text: string;
    if (Buffer.isBuffer(node.value)) text = node.value.toString('utf8');
    else if (node.value instanceof Uint8Array) text = Buffer.from(node.value).toString('utf8');
    else text = String(node.value);
    const tag = node.tag;
    if (tag === undefined)
      return { resolved: node.type === 'PLAIN' ? resolvePlain(text) : { kind: 'str' }, text };
    if (!tag.startsWith(TAG)) return { resolved: { kind: 'str' }, text };
    const wanted = tag.slice(TAG.length);
    if (wanted === 'str' || wanted === 'binary' || wanted === 'timestamp')
      return { resolved: { kind: 'str' }, text };
    const resolved = resolvePlain(text);
    const fits =
      (wanted === 'null' && resolved.kind === 'null') ||
      (wanted === 'bool' && resolved.kind === 'bool') ||
      (wanted === 'int' && resolved.kind === 'int') ||
      (wanted === 'float' && (resolved.kind === 'float' || resolved.kind === 'int'));
    if (fits) return { resolved, text };
    if (wanted === 'null' || wanted === 'bool' || wanted === 'int' || wanted === 'float')
      throw new ReadError(offsetOf(node), `"${text}" cannot be read as !!${wanted}`);
    return { resolved: { kind: 'str' }, text };
  }

  private scalar(node: { value: unknown; type?: string; tag?: string }): unknown {
    const { resolved, text } = this.resolve(node);
    if (resolved.kind === 'float' && !Number.isFinite(resolved.value))
      throw new ReadError(
        offsetOf(node),
        `${text} is not a number JSON can hold, and kubectl refuses it; quote it if it is meant as a string`,
      );
    return resolvedValue(resolved, text);
  }
}

function offsetOf(node: unknown): number {
  return (node as { range?: [number, number, number] } | null)?.range?.[0] ?? 0;
}

/** obj[key] = value, where an own "__proto__" key stays a key (as JSON.parse makes it). */
function setKey(object: JsonObject, key: string, value: unknown): void {
  if (key === '__proto__')
    Object.defineProperty(object, key, { value, enumerable: true, writable: true, configurable: true });
  else object[key] = value;
}

/** The JSON value kubectl reads from a parsed YAML document (null for an empty one). */
export function yamlValue(doc: Document.Parsed): unknown {
  return new Converter().convertDocument(doc.contents as YamlNode | null);
}

/** One JSON value of a stream: its extent, or why the stream is not JSON. */
type JsonScan =
  | { ok: true; values: { start: number; end: number; line: number; value: unknown }[] }
  /** `fatal`: refused whatever the text is (too deep), not a reason to try YAML. */
  | { ok: false; offset: number; message: string; fatal?: boolean };

const isJsonSpace = (c: number): boolean => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;

/** Splits a stream of JSON values (kubectl's JSON decoder reads them one after the other). */
function scanJsonStream(text: string): JsonScan {
  const values: { start: number; end: number; line: number; value: unknown }[] = [];
  let i = 0;
  let line = 1;
  for (;;) {
    while (i < text.length && isJsonSpace(text.charCodeAt(i))) {
      if (text.charCodeAt(i) === 0x0a) line++;
      i++;
    }
    if (i >= text.length) return { ok: true, values };
    const open = text[i];
    if (open !== '{' && open !== '[')
      return { ok: false, offset: i, message: `expected an object ("{") but found "${open ?? ''}"` };
    const start = i;
    const startLine = line;
    let depth = 0;
    let inString = false;
    for (; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c === 0x0a) line++;
      if (inString) {
        if (c === 0x5c) i++;
        else if (c === 0x22) inString = false;
      } else if (c === 0x22) inString = true;
      else if (c === 0x7b || c === 0x5b) {
        if (++depth > MAX_DEPTH)
          return {
            ok: false,
            offset: i,
            message: `nested more than ${MAX_DEPTH} levels deep; Kubernetes objects are never this deep`,
            fatal: true,
          };
      } else if (c === 0x7d || c === 0x5d) {
        if (--depth === 0) {
          i++;
          break;
        }
      }
    }
    if (depth !== 0) return { ok: false, offset: text.length, message: 'unexpected end of input' };
    let value: unknown;
    try {
      const slice = text.slice(start, i);
      value = JSON.parse(slice);
      // V8's JSON.parse (Node 24, V8 12.8 to 14.6) can return a wrong key for an escaped key once it has seen a
      // key with an escaped backslash (nodejs/node#63785). With any backslash in the text, the value is taken
      // from the YAML reader instead (JSON is YAML, and the reader unescapes by itself); JSON.parse only checks.
      if (slice.includes('\\')) value = jsonThroughYaml(slice);
    } catch (err) {
      if (err instanceof ReadError)
        return { ok: false, offset: start + err.offset, message: err.message, fatal: true };
      const message = (err as Error).message;
      const at = /position (\d+)/.exec(message);
      const cleaned = message
        .replace(/ in JSON at position.*$/, '')
        .replace(/\s*\(line \d+ column \d+\)/, '');
      return { ok: false, offset: start + (at ? Number(at[1]) : 0), message: cleaned };
    }
    values.push({ start, end: i, line: startLine, value });
  }
}

/** A JSON text (already checked by JSON.parse) read by the YAML reader. */
function jsonThroughYaml(text: string): unknown {
  const docs = parseYaml(text);
  return docs[0] === undefined ? null : yamlValue(docs[0]);
}

/**
 * JSON.parse, safe from the V8 bug above: a text with a backslash is read by the YAML reader (after JSON.parse
 * has checked that it is JSON). For tests that read kubectl's JSON output too.
 */
export function parseJson(text: string): unknown {
  const value: unknown = JSON.parse(text);
  return text.includes('\\') ? jsonThroughYaml(text) : value;
}

/** YAML sections between `---` lines, as kubectl's YAMLReader cuts them, with the line each section starts at. */
function splitYaml(text: string): { start: number; end: number; line: number }[] {
  const sections: { start: number; end: number; line: number }[] = [];
  let sectionStart = 0;
  let sectionLine = 1;
  let line = 1;
  for (let lineStart = 0; lineStart < text.length; line++) {
    const newline = text.indexOf('\n', lineStart);
    const lineEnd = newline === -1 ? text.length : newline;
    const next = newline === -1 ? text.length : newline + 1;
    if (text.startsWith('---', lineStart)) {
      const rest = text.slice(lineStart + 3, lineEnd).trim();
      if (rest !== '' && !rest.startsWith('#'))
        throw new ReadError(
          lineStart,
          `kubectl takes a line starting with "---" as a document separator and allows only a comment after it (here: "${rest.length > 40 ? `${rest.slice(0, 40)}...` : rest}"); move that to the next line`,
        );
      sections.push({ start: sectionStart, end: lineStart, line: sectionLine });
      sectionStart = next;
      sectionLine = line + 1;
    }
    lineStart = next;
  }
  sections.push({ start: sectionStart, end: text.length, line: sectionLine });
  return sections;
}

/** The offset of the first line of a section that is neither blank nor a comment, or -1. */
function firstContent(text: string, start: number, end: number): number {
  for (let at = start; at < end;) {
    const newline = text.indexOf('\n', at);
    const lineEnd = newline === -1 || newline > end ? end : newline;
    const body = text.slice(at, lineEnd).trimStart();
    if (body !== '' && !body.startsWith('#')) return lineEnd - body.length;
    at = lineEnd + 1;
  }
  return -1;
}

function checkDocumentValue(value: unknown, offset: number): value is JsonObject | null {
  if (value === null || isObject(value)) return true;
  if (Array.isArray(value))
    throw new ReadError(
      offset,
      'the document is a list, not an object; kubectl cannot read it: put the objects in separate documents or in a kind: List',
    );
  throw new ReadError(offset, `the document is a ${typeof value}, not an object; kubectl cannot read it`);
}

/**
 * Reads the documents of one input as kubectl would. Throws InputError (`NAME: line L: MESSAGE`) at the first
 * problem, so that odd or hostile input ends with one message.
 */
export function readManifests(text: string, name?: string): ManifestSource {
  const label = name ?? 'standard input';
  const fail = (offset: number, message: string): InputError =>
    new InputError(`${label}: line ${position(text, offset).line}: ${message}`);
  const firstChar = /\S/.exec(text)?.[0];
  let jsonProblem: { offset: number; message: string } | undefined;
  if (firstChar === '{') {
    const scan = scanJsonStream(text);
    if (scan.ok) {
      const documents: ManifestDocument[] = [];
      for (const { start, end, line, value } of scan.values) {
        try {
          if (!checkDocumentValue(value, start) || value === null) continue;
        } catch (err) {
          throw fail(start, (err as Error).message);
        }
        documents.push({ index: documents.length + 1, start, end, line, value });
      }
      return {
        ...(name !== undefined ? { name } : {}),
        text,
        format: 'json',
        startsLikeJson: false,
        documents,
      };
    }
    if (scan.fatal) throw fail(scan.offset, scan.message);
    jsonProblem = scan;
  }
  try {
    // A control character YAML forbids (go-yaml: "control characters are not allowed"), or NEL, which YAML 1.1
    // takes for a line break: kubectl would fold it into a space, other tools keep it.
    // eslint-disable-next-line no-control-regex
    const control = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff]/.exec(text);
    if (control) {
      const code = control[0].charCodeAt(0);
      const name = `U+${code.toString(16).toUpperCase().padStart(4, '0')}`;
      throw new ReadError(
        control.index,
        code === 0x85
          ? `the character ${name} (NEL) is a line break to YAML 1.1, and kubectl would read it as one; write it as \\u0085 in a double-quoted string`
          : `the control character ${name} is not allowed in YAML (binary data?)`,
      );
    }
    const documents: ManifestDocument[] = [];
    for (const section of splitYaml(text)) {
      const content = firstContent(text, section.start, section.end);
      if (content === -1) continue;
      if (text[content] === '%')
        throw new ReadError(
          content,
          'kubectl does not read YAML directives (%YAML, %TAG): it splits documents at every --- line; remove the directive',
        );
      const sectionText = text.slice(section.start, section.end);
      let docs: Document.Parsed[];
      let value: unknown;
      try {
        docs = parseYaml(sectionText);
        if (docs.length > 1)
          throw new ReadError(
            docs[1]?.range[0] ?? 0,
            'a second document follows a "..." end marker without a --- line; kubectl would read only the first: separate them with ---',
          );
        const doc = docs[0];
        value = doc === undefined ? null : yamlValue(doc);
        checkDocumentValue(value, doc?.contents?.range?.[0] ?? 0);
      } catch (err) {
        if (err instanceof ReadError) throw new ReadError(section.start + err.offset, err.message);
        throw err;
      }
      if (value === null) continue;
      documents.push({
        index: documents.length + 1,
        start: section.start,
        end: section.end,
        line: section.line + countLines(text, section.start, content),
        value: value as JsonObject,
      });
    }
    return {
      ...(name !== undefined ? { name } : {}),
      text,
      format: 'yaml',
      startsLikeJson: firstChar === '{',
      documents,
    };
  } catch (err) {
    if (!(err instanceof ReadError)) throw err;
    // Text that starts like JSON and has no YAML separator was meant as JSON: its JSON error says more.
    if (jsonProblem !== undefined && !/^---/m.test(text))
      throw fail(jsonProblem.offset, `not valid JSON: ${jsonProblem.message}`);
    throw fail(err.offset, err.message);
  }
}

function countLines(text: string, from: number, to: number): number {
  let n = 0;
  for (let i = text.indexOf('\n', from); i !== -1 && i < to; i = text.indexOf('\n', i + 1)) n++;
  return n;
}
