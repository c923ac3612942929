import { parseQuantity, quantityProblem } from './quantity.ts';

/**
 * The rules of the injector's knobs, each once: a flag (cluster default) and an annotation (per pod) that set the
 * same thing go through the same rule; only the wrapper differs (InvalidSetting for a flag, a denial problem for
 * an annotation).
 */

/** A value that breaks a rule: `problem` starts with the value as given; `fix` says what to set instead. */
export type Checked<T> = { ok: true; value: T } | { ok: false; problem: string; fix?: string };

/** A flag value that breaks its rule; the CLI reports it as a usage error (exit 2). */
export class InvalidSetting extends Error {
  readonly flag: string;

  constructor(flag: string, message: string) {
    super(message);
    this.flag = flag;
    this.name = 'InvalidSetting';
  }
}

/** The value of a flag, or an InvalidSetting naming it: `--flag "value" problem; fix`. */
export function flagValue<T>(flag: string, checked: Checked<T>): T {
  if (!checked.ok)
    throw new InvalidSetting(
      flag,
      `--${flag} ${checked.problem}${checked.fix !== undefined ? `; ${checked.fix}` : ''}`,
    );
  return checked.value;
}

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const;

export const SIDECAR_MODES = ['native', 'legacy'] as const;
export type SidecarMode = (typeof SIDECAR_MODES)[number];

export function checkSidecarMode(text: string): Checked<SidecarMode> {
  const mode = text.toLowerCase();
  if (mode === 'native' || mode === 'legacy') return { ok: true, value: mode };
  return {
    ok: false,
    problem: `"${text}" is not a sidecar mode`,
    fix: 'use "native" (Kubernetes 1.29 and later) or "legacy"',
  };
}

export function checkPort(text: string): Checked<number> {
  const port = Number(text);
  if (/^\d+$/.test(text) && port >= 1 && port <= 65535) return { ok: true, value: port };
  return { ok: false, problem: `"${text}" is not a port number from 1 to 65535` };
}

export function checkLogLevel(text: string): Checked<string> {
  const level = text.toLowerCase();
  if ((LOG_LEVELS as readonly string[]).includes(level)) return { ok: true, value: level };
  return { ok: false, problem: `"${text}" is not a log level`, fix: `use one of ${LOG_LEVELS.join(', ')}` };
}

/** A quantity as written (the pod spec keeps the text) and its value, for request <= limit. */
export function checkQuantity(text: string): Checked<{ text: string; value: number }> {
  const problem = quantityProblem(text);
  if (problem !== undefined) return { ok: false, problem };
  return { ok: true, value: { text, value: parseQuantity(text) as number } };
}

export const PULL_POLICIES = ['Always', 'IfNotPresent', 'Never'] as const;
export type PullPolicy = (typeof PULL_POLICIES)[number];

export function checkPullPolicy(text: string): Checked<PullPolicy> {
  const match = PULL_POLICIES.find((p) => p.toLowerCase() === text.toLowerCase());
  if (match !== undefined) return { ok: true, value: match };
  return { ok: false, problem: `"${text}" is not one of ${PULL_POLICIES.join(', ')}` };
}

export function checkImage(text: string): Checked<string> {
  if (/^[^\s]+$/.test(text)) return { ok: true, value: text };
  return { ok: false, problem: `"${text}" is not an image reference` };
}

/** The four resource knobs, by their key in InjectorConfig['resources'] and in KNOBS. */
export const RESOURCE_KNOBS = [
  { key: 'cpuRequest', flag: 'cpu-request' },
  { key: 'cpuLimit', flag: 'cpu-limit' },
  { key: 'memoryRequest', flag: 'memory-request' },
  { key: 'memoryLimit', flag: 'memory-limit' },
] as const;
export type ResourceKey = (typeof RESOURCE_KNOBS)[number]['key'];

/** A resource value with where it came from, as the reader of a problem knows it (`--cpu-limit`, an annotation). */
export interface ResourceValue {
  text: string;
  value: number;
  origin: string;
}

/** request <= limit, for cpu and memory: each pair where the request is above the limit. */
export function requestsAboveLimits(
  values: Partial<Record<ResourceKey, ResourceValue>>,
): { resource: 'cpu' | 'memory'; request: ResourceValue; limit: ResourceValue; problem: string }[] {
  const found = [];
  for (const [request, limit, resource] of [
    [values.cpuRequest, values.cpuLimit, 'cpu'],
    [values.memoryRequest, values.memoryLimit, 'memory'],
  ] as const) {
    if (request !== undefined && limit !== undefined && request.value > limit.value) {
      found.push({
        resource,
        request,
        limit,
        problem: `the ${resource} request ${request.text} (from ${request.origin}) is greater than the ${resource} limit ${limit.text} (from ${limit.origin})`,
      });
    }
  }
  return found;
}
