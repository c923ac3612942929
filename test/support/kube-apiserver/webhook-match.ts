import { isCelError, run } from '@bufbuild/cel';

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const objs = (v: unknown): Obj[] => (Array.isArray(v) ? v.filter(isObj) : []);
const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((s) => typeof s === 'string') : []);

/** What a webhook's rules are matched against: the request's resource and operation. */
export interface RequestTarget {
  operation: string;
  group: string;
  version: string;
  resource: string;
  subresource: string;
  namespaced: boolean;
}

/** One rule of `rules[]`, as the real rule matcher reads it (webhook/predicates/rules). */
export function matchesRules(rules: unknown, t: RequestTarget): boolean {
  return objs(rules).some((rule) => {
    const has = (field: string, value: string): boolean => {
      const list = strings(rule[field]);
      return list.includes('*') || list.includes(value);
    };
    if (!has('operations', t.operation) || !has('apiGroups', t.group) || !has('apiVersions', t.version))
      return false;
    const scope = typeof rule.scope === 'string' ? rule.scope : '*';
    if (scope === 'Namespaced' && !t.namespaced) return false;
    if (scope === 'Cluster' && t.namespaced) return false;
    return strings(rule.resources).some((entry) => {
      const slash = entry.indexOf('/');
      const res = slash < 0 ? entry : entry.slice(0, slash);
      const sub = slash < 0 ? '' : entry.slice(slash + 1);
      return (res === '*' || res === t.resource) && (sub === '*' || sub === t.subresource);
    });
  });
}

/** A metav1.LabelSelector (matchLabels + matchExpressions); absent or empty selects everything. */
export function matchesLabelSelector(selector: unknown, labels: Record<string, string>): boolean {
  if (!isObj(selector)) return true;
  const matchLabels = isObj(selector.matchLabels) ? selector.matchLabels : {};
  for (const [k, v] of Object.entries(matchLabels)) if (labels[k] !== v) return false;
  for (const expr of objs(selector.matchExpressions)) {
    const key = String(expr.key);
    const values = strings(expr.values);
    const has = Object.hasOwn(labels, key);
    switch (expr.operator) {
      case 'In':
        if (!has || !values.includes(labels[key] as string)) return false;
        break;
      case 'NotIn':
        if (has && values.includes(labels[key] as string)) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
      default:
        return false;
    }
  }
  return true;
}

export function labelsOf(obj: unknown): Record<string, string> {
  const meta = isObj(obj) && isObj(obj.metadata) ? obj.metadata : {};
  return isObj(meta.labels) ? (meta.labels as Record<string, string>) : {};
}

/** JSON as CEL sees Kubernetes objects: objects are maps, integers are `int`. */
function toCel(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(toCel);
  if (isObj(v)) return new Map(Object.entries(v).map(([k, x]) => [k, toCel(x)]));
  if (typeof v === 'number' && Number.isInteger(v)) return BigInt(v);
  return v;
}

export type ConditionsResult = { match: true } | { match: false } | { error: string };

/**
 * matchConditions as the real server evaluates them: every condition must be true to call the webhook; any false
 * one skips it (even when another one failed); otherwise an evaluation error is handled per failurePolicy.
 */
export function evaluateMatchConditions(conditions: unknown, vars: Obj): ConditionsResult {
  const activation = Object.fromEntries(Object.entries(vars).map(([k, v]) => [k, toCel(v)]));
  const errors: string[] = [];
  for (const condition of objs(conditions)) {
    const name = String(condition.name);
    let result: unknown;
    try {
      result = run(String(condition.expression), activation as Parameters<typeof run>[1]);
    } catch (err) {
      result = err;
    }
    if (result === false) return { match: false };
    if (result === true) continue;
    const why =
      isCelError(result) || result instanceof Error
        ? (result as Error).message
        : `no boolean: ${String(result)}`;
    errors.push(`expression '${name}' resulted in error: ${why}`);
  }
  return errors.length > 0 ? { error: errors.join(', ') } : { match: true };
}
