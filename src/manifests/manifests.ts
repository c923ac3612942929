import type { InjectorConfig } from '../injection/config.ts';
import { injectPod, type InjectionOutcome, type OptIn } from '../injection/inject.ts';
import { isObject, stringOf, type JsonObject } from '../injection/json.ts';
import { editDocument } from './edit.ts';
import { InputError } from './input.ts';
import { parseYaml, readManifests, yamlValue, type ManifestDocument, type ManifestSource } from './read.ts';

export interface ManifestOptions {
  optIn: OptIn;
  config: InjectorConfig;
}

/** One pod or pod template that went through injection, named for messages (`document 1 (Deployment/shop/web)`). */
export interface ManifestReport {
  target: string;
  outcome: InjectionOutcome;
}

export interface ManifestResult {
  /**
   * The input with the sidecar injected: documents without an injected template byte for byte as they were,
   * injected ones changed only where injection changed them. Empty when anything was denied or unreadable.
   */
  output: string;
  reports: ManifestReport[];
  /** `target: message` for each denial or unreadable input; non-empty means exit 1. */
  errors: string[];
  /** Problems of the input that injection itself does not see (an annotation in the wrong place). */
  warnings: string[];
  /** Documents read (comment-only and null documents are not counted), and those with an injected template. */
  documents: number;
  injectedDocuments: number;
}

/** One input: a file's text (without its byte order mark) and its name; no name for standard input. */
export interface ManifestInput {
  name?: string;
  text: string;
  /** The input started with a UTF-8 byte order mark; kept at the start of the output when it is the first. */
  bom?: boolean;
}

type Path = (string | number)[];

/** Where the pod template sits in each workload kind; a Pod is its own template. */
const TEMPLATE_PATHS: Record<string, Path> = {
  Pod: [],
  Deployment: ['spec', 'template'],
  StatefulSet: ['spec', 'template'],
  DaemonSet: ['spec', 'template'],
  ReplicaSet: ['spec', 'template'],
  ReplicationController: ['spec', 'template'],
  Job: ['spec', 'template'],
  CronJob: ['spec', 'jobTemplate', 'spec', 'template'],
};

const ANNOTATION_PREFIX = 'config-reloader.io/';
const STATUS_ANNOTATION = 'config-reloader.io/status';

/** A template found in a document: where it is, and the injected pod. */
interface Injected {
  path: Path;
  pod: JsonObject;
}

/**
 * Injects the sidecar into every Pod and workload pod template of a YAML (multi-document) or JSON text, through
 * the same injectPod as the webhook. See injectInputs.
 */
export function injectManifests(text: string, options: ManifestOptions): ManifestResult {
  return injectInputs([{ text }], options);
}

/**
 * Reads each input as kubectl would (read.ts), injects every Pod and workload pod template, and writes the
 * result: one input as it came with the injected documents edited in place (edit.ts), several inputs as one YAML
 * stream with a `---` line between them. Each injected document is read back and must give exactly the
 * injected object; where an in-place edit does not, the pod template is rewritten whole, and if even that does
 * not (anchors used across the template's border), the document is an error.
 */
export function injectInputs(inputs: ManifestInput[], options: ManifestOptions): ManifestResult {
  const result: ManifestResult = {
    output: '',
    reports: [],
    errors: [],
    warnings: [],
    documents: 0,
    injectedDocuments: 0,
  };
  const outputs: { source: ManifestSource; text: string; bom: boolean }[] = [];
  for (const input of inputs) {
    let source: ManifestSource;
    try {
      source = readManifests(input.text, input.name);
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      // Odd or hostile input ends the run with its one message.
      result.errors.push(err.message);
      return result;
    }
    const prefix = input.name === undefined ? '' : `${input.name}: `;
    const edits: { start: number; end: number; text: string }[] = [];
    for (const doc of source.documents) {
      result.documents++;
      const where = `${prefix}document ${doc.index}`;
      const found: Injected[] = [];
      visit(doc.value, [], where, options, result, found);
      if (found.length === 0) continue;
      result.injectedDocuments++;
      const edited = writeDocument(source, doc, found);
      if (typeof edited === 'string') edits.push({ start: doc.start, end: doc.end, text: edited });
      else result.errors.push(`${where}: ${edited.error}`);
    }
    // Pieces joined once: slicing the whole text per edit would be quadratic in the number of documents.
    const pieces: string[] = [];
    let at = 0;
    for (const edit of edits) {
      pieces.push(source.text.slice(at, edit.start), edit.text);
      at = edit.end;
    }
    pieces.push(source.text.slice(at));
    outputs.push({ source, text: pieces.join(''), bom: input.bom === true });
  }
  if (result.errors.length > 0) return result;
  result.output = joinOutputs(outputs);
  return result;
}

/** The outputs of several inputs as one stream kubectl reads as intended. */
function joinOutputs(outputs: { source: ManifestSource; text: string; bom: boolean }[]): string {
  const bom = outputs[0]?.bom ? '\ufeff' : '';
  if (outputs.length === 1) {
    const only = outputs[0] as { source: ManifestSource; text: string };
    // kubectl takes a text that starts with "{" for a stream of JSON values; a leading --- makes it YAML.
    return bom + (only.source.startsLikeJson ? `---\n${only.text}` : only.text);
  }
  const pieces = outputs.map(({ source, text }) => {
    const piece = source.format === 'json' && source.documents.length > 1 ? splitJsonValues(text) : text;
    return piece.length > 0 && !piece.endsWith('\n') ? `${piece}\n` : piece;
  });
  const joined = pieces.join('---\n');
  return bom + (/^\s*\{/.test(joined) ? `---\n${joined}` : joined);
}

/** A stream of JSON values with a --- line between each two (the values are found again in the output text). */
function splitJsonValues(text: string): string {
  const values: string[] = [];
  let depth = 0;
  let inString = false;
  let start = -1;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '{' || c === '[') {
      if (depth++ === 0) start = i;
    } else if (c === '}' || c === ']') {
      if (--depth === 0) values.push(text.slice(start, i + 1));
    }
  }
  return values.join('\n---\n') + '\n';
}

function describe(obj: JsonObject, where: string): string {
  const metadata = isObject(obj.metadata) ? obj.metadata : {};
  const name =
    stringOf(metadata.name) ??
    (stringOf(metadata.generateName) ? `${stringOf(metadata.generateName)}*` : '(unnamed)');
  const namespace = stringOf(metadata.namespace);
  return `${where} (${stringOf(obj.kind) ?? 'object'}/${namespace ? `${namespace}/` : ''}${name})`;
}

/** Runs injection over one object (a List's items included), recording reports, errors and warnings. */
function visit(
  obj: unknown,
  base: Path,
  where: string,
  options: ManifestOptions,
  result: ManifestResult,
  found: Injected[],
): void {
  if (!isObject(obj)) return;
  const kind = stringOf(obj.kind) ?? '';
  if (kind === 'List' || kind.endsWith('List')) {
    if (Array.isArray(obj.items)) {
      obj.items.forEach((item, i) =>
        visit(item, [...base, 'items', i], `${where}, item ${i + 1}`, options, result, found),
      );
    }
    return;
  }
  const templatePath = TEMPLATE_PATHS[kind];
  if (templatePath === undefined) return;
  const template = valueAt(obj, templatePath);
  if (!isObject(template)) return;
  const metadata = isObject(obj.metadata) ? obj.metadata : {};
  const namespace = stringOf(metadata.namespace);
  const target = describe(obj, where);
  if (templatePath.length > 0) {
    const misplaced = misplacedAnnotations(metadata, template);
    if (misplaced.length > 0) {
      const field = [...templatePath, 'metadata', 'annotations'].join('.');
      const [them, are] = misplaced.length === 1 ? ['it', 'is'] : ['them', 'are'];
      result.warnings.push(
        `${target}: ${misplaced.join(', ')} ${are} in the ${kind}'s own metadata.annotations, which injection does not read; move ${them} to ${field} (the pod template)`,
      );
    }
  }
  const outcome = injectPod(
    template,
    { optIn: options.optIn, ...(namespace ? { namespace } : {}) },
    options.config,
  );
  result.reports.push({ target, outcome });
  if (outcome.action === 'deny') result.errors.push(`${target}: ${outcome.message}`);
  if (outcome.action === 'patch') found.push({ path: [...base, ...templatePath], pod: outcome.pod });
}

/** config-reloader.io/ annotations on a workload that its pod template does not carry. */
function misplacedAnnotations(metadata: JsonObject, template: JsonObject): string[] {
  const own = isObject(metadata.annotations) ? metadata.annotations : {};
  const templateMetadata = isObject(template.metadata) ? template.metadata : {};
  const inTemplate = isObject(templateMetadata.annotations) ? templateMetadata.annotations : {};
  return Object.keys(own).filter(
    (key) =>
      key.startsWith(ANNOTATION_PREFIX) && key !== STATUS_ANNOTATION && !Object.hasOwn(inTemplate, key),
  );
}

function valueAt(obj: unknown, path: Path): unknown {
  let current = obj;
  for (const key of path) {
    if (typeof current !== 'object' || current === null) return undefined;
    current = (current as Record<string | number, unknown>)[key];
  }
  return current;
}

/** `root` with `value` at `path`: the objects and arrays on the way are copied, everything else is shared. */
function setAt(root: unknown, path: Path, value: unknown): unknown {
  if (path.length === 0) return value;
  const [key, ...rest] = path as [string | number, ...Path];
  if (Array.isArray(root)) {
    const copy = [...(root as unknown[])];
    copy[key as number] = setAt(copy[key as number], rest, value);
    return copy;
  }
  const copy: JsonObject = { ...(root as JsonObject) };
  const child = setAt((root as JsonObject)[key], rest, value);
  if (key === '__proto__')
    Object.defineProperty(copy, key, { value: child, enumerable: true, writable: true, configurable: true });
  else copy[key] = child;
  return copy;
}

/** Deep equality of JSON values, where a key whose value is undefined counts as absent (as in JSON). */
function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a === 'number' && typeof b === 'number') return Number.isNaN(a) && Number.isNaN(b);
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const bb = b as unknown[];
    return a.length === bb.length && a.every((item, i) => sameJson(item, bb[i]));
  }
  const keys = (o: object): string[] => Object.keys(o).filter((k) => (o as JsonObject)[k] !== undefined);
  const ka = keys(a);
  const kb = keys(b);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => Object.hasOwn(b, k) && sameJson((a as JsonObject)[k], (b as JsonObject)[k]));
}

/** What kubectl would read from the text of one document (JSON must also be valid JSON). */
function readBack(text: string, json: boolean): unknown {
  if (json) JSON.parse(text);
  const docs = parseYaml(text);
  if (docs.length !== 1 || docs[0] === undefined) throw new Error('not one document');
  return yamlValue(docs[0]);
}

/**
 * The document's text with the injected templates written in, or why it cannot be written. First in place; if
 * the text read back is not exactly the injected object, with the templates rewritten whole.
 */
function writeDocument(
  source: ManifestSource,
  doc: ManifestDocument,
  found: Injected[],
): string | { error: string } {
  const text = source.text.slice(doc.start, doc.end);
  const json = source.format === 'json';
  let expected: unknown = doc.value;
  for (const { path, pod } of found) expected = setAt(expected, path, pod);
  const attempt = (before: unknown): string | undefined => {
    try {
      const edited = editDocument(text, json, before, expected);
      return sameJson(readBack(edited, json), expected) ? edited : undefined;
    } catch {
      return undefined;
    }
  };
  const inPlace = attempt(doc.value);
  if (inPlace !== undefined) return inPlace;
  // A stand-in that equals nothing makes the editor rewrite each template as a whole.
  let whole: unknown = doc.value;
  for (const { path } of found) whole = setAt(whole, path, Symbol('rewrite'));
  const rewritten = attempt(whole);
  if (rewritten !== undefined) return rewritten;
  return {
    error:
      'the injected pod template cannot be written into this document without changing what kubectl reads elsewhere in it (YAML anchors or aliases that cross the template?); expand them and run inject again',
  };
}
