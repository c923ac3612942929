import { isDeepStrictEqual } from 'node:util';
import { isMap, isSeq, parseAllDocuments, type Document } from 'yaml';
import jsonPatch from 'fast-json-patch';
import type { Operation } from 'fast-json-patch';
import type { InjectorConfig } from '../injection/config.ts';
import { injectPod, type InjectionOutcome, type OptIn } from '../injection/inject.ts';
import { isObject, stringOf, type JsonObject } from '../injection/json.ts';

export interface ManifestOptions {
  optIn: OptIn;
  config: InjectorConfig;
}

/** One pod or pod template that went through injection, named for messages (`Deployment/web`). */
export interface ManifestReport {
  target: string;
  outcome: InjectionOutcome;
}

export interface ManifestResult {
  /** The manifests with the sidecar injected; every other document as it was. Empty when anything was denied. */
  output: string;
  reports: ManifestReport[];
  /** `target: message` for each denial or unreadable document; non-empty means exit 1. */
  errors: string[];
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

/** A template found in a document: where it is, and what injection made of it. */
interface Injected {
  path: Path;
  outcome: InjectionOutcome;
}

/**
 * Injects the sidecar into every Pod and workload pod template of a YAML (multi-document) or JSON text,
 * through the same injectPod as the webhook. YAML keeps its comments and layout outside the changed fields.
 */
export function injectManifests(text: string, options: ManifestOptions): ManifestResult {
  return /^\s*[[{]/.test(text) ? injectJson(text, options) : injectYaml(text, options);
}

function describe(obj: JsonObject, where: string): string {
  const metadata = isObject(obj.metadata) ? obj.metadata : {};
  const name =
    stringOf(metadata.name) ??
    (stringOf(metadata.generateName) ? `${stringOf(metadata.generateName)}*` : '(unnamed)');
  const namespace = stringOf(metadata.namespace);
  return `${where} (${stringOf(obj.kind) ?? 'object'}/${namespace ? `${namespace}/` : ''}${name})`;
}

/** Runs injection over one object (a List's items included), recording reports and errors. */
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
  const outcome = injectPod(
    template,
    { optIn: options.optIn, ...(namespace ? { namespace } : {}) },
    options.config,
  );
  const target = describe(obj, where);
  result.reports.push({ target, outcome });
  if (outcome.action === 'deny') result.errors.push(`${target}: ${outcome.message}`);
  if (outcome.action === 'patch') found.push({ path: [...base, ...templatePath], outcome });
}

function valueAt(obj: unknown, path: Path): unknown {
  let current = obj;
  for (const key of path) {
    if (typeof current !== 'object' || current === null) return undefined;
    current = (current as Record<string | number, unknown>)[key];
  }
  return current;
}

function injectJson(text: string, options: ManifestOptions): ManifestResult {
  const result: ManifestResult = { output: '', reports: [], errors: [] };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    result.errors.push(`input: not valid JSON (${(err as Error).message})`);
    return result;
  }
  const found: Injected[] = [];
  if (Array.isArray(value))
    value.forEach((item, i) => visit(item, [i], `object ${i + 1}`, options, result, found));
  else visit(value, [], 'document 1', options, result, found);
  if (result.errors.length > 0) return result;
  for (const { path, outcome } of found) {
    if (outcome.action !== 'patch') continue;
    if (path.length === 0) value = outcome.pod;
    else
      (valueAt(value, path.slice(0, -1)) as Record<string | number, unknown>)[
        path.at(-1) as string | number
      ] = outcome.pod;
  }
  result.output = `${JSON.stringify(value, null, 2)}\n`;
  return result;
}

function injectYaml(text: string, options: ManifestOptions): ManifestResult {
  const result: ManifestResult = { output: '', reports: [], errors: [] };
  const documents = parseAllDocuments(text);
  const docs = Array.isArray(documents) ? documents : [];
  if (!Array.isArray(documents)) result.errors.push('input: not a YAML stream');
  const changes = docs.map((doc, i): Injected[] => {
    const where = `document ${i + 1}`;
    if (doc.errors.length > 0) {
      result.errors.push(
        `${where}: not valid YAML (${doc.errors[0]?.message.split('\n')[0] ?? 'parse error'})`,
      );
      return [];
    }
    const found: Injected[] = [];
    visit(doc.toJS({ maxAliasCount: 1000 }), [], where, options, result, found);
    return found;
  });
  if (result.errors.length > 0) return result;
  result.output = docs
    .map((doc, i) => {
      for (const change of changes[i] ?? []) applyToDocument(doc, change);
      return String(doc);
    })
    .join('');
  return result;
}

/**
 * Applies the injection patch to the YAML nodes, so comments and layout elsewhere survive. When the nodes do not
 * line up with the JSON (anchors, merge keys), the template is replaced as a whole instead.
 */
function applyToDocument(doc: Document, { path, outcome }: Injected): void {
  if (outcome.action !== 'patch') return;
  const attempt = doc.clone();
  try {
    for (const op of outcome.patch) applyOperation(attempt, path, op);
    if (isDeepStrictEqual(valueAt(attempt.toJS({ maxAliasCount: 1000 }), path), outcome.pod)) {
      doc.contents = attempt.contents;
      return;
    }
  } catch {
    // fall through to replacing the whole template
  }
  if (path.length === 0) doc.contents = doc.createNode(outcome.pod);
  else doc.setIn(path, doc.createNode(outcome.pod));
}

function applyOperation(doc: Document, base: Path, op: Operation): void {
  const segments = [...base, ...op.path.split('/').slice(1).map(jsonPatch.unescapePathComponent)];
  const last = segments.pop();
  let parent: unknown = doc.contents;
  for (const segment of segments) parent = child(parent, segment);
  if (last === undefined) throw new Error('patch of the document root');
  if (isSeq(parent)) {
    const index = Number(last);
    if (op.op === 'add') parent.items.splice(index, 0, doc.createNode(op.value));
    else if (op.op === 'replace') parent.set(index, doc.createNode(op.value));
    else if (op.op === 'remove') parent.delete(index);
    else throw new Error(`unexpected operation ${op.op}`);
  } else if (isMap(parent)) {
    const key = String(last);
    if (op.op === 'add' || op.op === 'replace') parent.set(key, doc.createNode(op.value));
    else if (op.op === 'remove') parent.delete(key);
    else throw new Error(`unexpected operation ${op.op}`);
  } else {
    throw new Error(`no collection at ${op.path}`);
  }
}

function child(node: unknown, segment: string | number): unknown {
  if (isSeq(node)) return node.get(Number(segment), true);
  if (isMap(node)) return node.get(String(segment), true);
  throw new Error(`no collection at ${String(segment)}`);
}
