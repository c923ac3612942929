import { badRequest } from './status.ts';
import type { KubeObject } from './types.ts';

/** One requirement of a label selector (apimachinery's labels.Requirement). */
interface LabelRequirement {
  key: string;
  op: 'in' | 'notin' | 'exists' | '!';
  values: string[];
}

export type LabelSelector = LabelRequirement[];

/** Splits on commas that are not inside parentheses: `a in (x,y),b` → [`a in (x,y)`, `b`]. */
function splitTerms(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out.map((t) => t.trim()).filter((t) => t !== '');
}

const SET_RE = /^([^\s!=,()]+)\s+(in|notin)\s+\(([^)]*)\)$/;
const EQ_RE = /^([^\s!=,()]+)\s*(==|=|!=)\s*([^\s!=,()]*)$/;
const KEY_RE = /^(!?)\s*([^\s!=,()]+)$/;

export function parseLabelSelector(s: string | null): LabelSelector {
  if (!s) return [];
  return splitTerms(s).map((term): LabelRequirement => {
    let m = SET_RE.exec(term);
    if (m)
      return {
        key: m[1] as string,
        op: m[2] as 'in' | 'notin',
        values: (m[3] as string).split(',').map((v) => v.trim()),
      };
    m = EQ_RE.exec(term);
    if (m) return { key: m[1] as string, op: m[2] === '!=' ? 'notin' : 'in', values: [m[3] as string] };
    m = KEY_RE.exec(term);
    if (m) return { key: m[2] as string, op: m[1] ? '!' : 'exists', values: [] };
    throw badRequest(`unable to parse requirement: found '${term}', expected: in, notin, =, ==, !=, gt, lt`);
  });
}

export function matchesLabels(sel: LabelSelector, obj: KubeObject): boolean {
  const labels = (obj.metadata.labels as Record<string, string> | undefined) ?? {};
  return sel.every((r) => {
    const has = Object.hasOwn(labels, r.key);
    switch (r.op) {
      case 'exists':
        return has;
      case '!':
        return !has;
      case 'in':
        return has && r.values.includes(labels[r.key] as string);
      case 'notin':
        return !has || !r.values.includes(labels[r.key] as string);
    }
  });
}

interface FieldRequirement {
  field: string;
  value: string;
  negate: boolean;
}

export type FieldSelector = FieldRequirement[];

const FIELD_RE = /^([^\s!=,]+)\s*(==|=|!=)\s*(.*)$/;

/** Parses a field selector, rejecting labels the resource does not index, with the real server's message. */
export function parseFieldSelector(s: string | null, allowed: string[]): FieldSelector {
  if (!s) return [];
  return s.split(',').map((term): FieldRequirement => {
    const m = FIELD_RE.exec(term.trim());
    if (!m) throw badRequest(`invalid selector: '${s}'; can't understand '${term}'`);
    const field = m[1] as string;
    if (!allowed.includes(field)) throw badRequest(`field label not supported: ${field}`);
    return { field, value: m[3] as string, negate: m[2] === '!=' };
  });
}

function fieldValue(obj: KubeObject, path: string): string {
  let cur: unknown = obj;
  for (const part of path.split('.')) cur = (cur as Record<string, unknown> | undefined)?.[part];
  if (cur === undefined || cur === null) return path === 'type' && obj.kind === 'Secret' ? 'Opaque' : '';
  return String(cur);
}

export function matchesFields(sel: FieldSelector, obj: KubeObject): boolean {
  return sel.every((r) => (fieldValue(obj, r.field) === r.value) !== r.negate);
}

/** The name a field selector pins (`metadata.name=x`), which RBAC treats as the request's object name. */
export function selectedName(sel: FieldSelector): string | undefined {
  return sel.find((r) => r.field === 'metadata.name' && !r.negate)?.value;
}
