import type { InjectorConfig } from './config.ts';
import { parseQuantity, quantityProblem } from './quantity.ts';
import { checkReloadUrl, parseReloadMethod, RELOAD_METHODS, type ReloadMethod } from './reload-url.ts';
import { parseDuration } from '../shared/cli.ts';
import { RELOAD_SIGNALS, type ReloadSignal } from '../shared/reload-signal.ts';
import { isValidObjectName } from '../shared/source-spec.ts';

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

/** A comma-separated list (the value of a list knob): trimmed, empty entries dropped, duplicates removed. */
export function parseList(value: string | undefined): string[] {
  if (value === undefined) return [];
  return [
    ...new Set(
      value
        .split(',')
        .map((part) => part.trim())
        .filter((part) => part.length > 0),
    ),
  ];
}

/** One name of config-reloader.io/secrets or /configmaps: a Kubernetes object name. */
export function checkObjectName(text: string): Checked<string> {
  if (isValidObjectName(text)) return { ok: true, value: text };
  return { ok: false, problem: `"${text}" is not a valid object name` };
}

/** Where explicit mode mounts the objects: an absolute directory, without trailing slashes. */
export function checkMountPath(text: string): Checked<string> {
  const path = text.length > 1 ? text.replace(/\/+$/, '') : text;
  if (!path.startsWith('/') || path === '/' || path.split('/').includes('..') || path.includes(':'))
    return { ok: false, problem: `"${text}" is not an absolute directory path` };
  return { ok: true, value: path };
}

/** The reload URL, normalised, and its port; which hosts it may name is the injector's --allow-any-reload-host. */
export function checkReloadEndpoint(
  text: string,
  config: Pick<InjectorConfig, 'allowedReloadHosts'>,
): Checked<{ url: string; port: number }> {
  const checked = checkReloadUrl(text, config.allowedReloadHosts);
  if (!checked.ok) return { ok: false, problem: checked.problem };
  return { ok: true, value: { url: checked.url, port: checked.port } };
}

/** The confirmation's metrics URL: the reload URL's rule (http(s), no credentials, loopback unless allowed). */
export function checkMetricsEndpoint(
  text: string,
  config: Pick<InjectorConfig, 'allowedReloadHosts'>,
): Checked<{ url: string; port: number }> {
  const checked = checkReloadUrl(text, config.allowedReloadHosts, 'metrics URL');
  if (!checked.ok) return { ok: false, problem: checked.problem };
  return { ok: true, value: { url: checked.url, port: checked.port } };
}

/** `SIGHUP`, `HUP`, `sighup`: the canonical name. */
export function checkReloadSignal(text: string): Checked<ReloadSignal> {
  const upper = text.toUpperCase();
  const name = upper.startsWith('SIG') ? upper : `SIG${upper}`;
  const found = RELOAD_SIGNALS.find((signal) => signal === name);
  if (found !== undefined) return { ok: true, value: found };
  return {
    ok: false,
    problem: `"${text}" is not a signal the sidecar sends`,
    fix: `use one of ${RELOAD_SIGNALS.join(', ')} (the one the app reloads its configuration on)`,
  };
}

/** A container name: a DNS label, as the API server requires of every container. */
export function checkContainerName(text: string): Checked<string> {
  if (/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(text) && text.length <= 63) return { ok: true, value: text };
  return { ok: false, problem: `"${text}" is not a container name` };
}

/** A Prometheus metric name, as the text exposition format allows it. */
export function checkMetricName(text: string): Checked<string> {
  if (/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(text)) return { ok: true, value: text };
  return { ok: false, problem: `"${text}" is not a Prometheus metric name` };
}

/** A duration as the reloader parses it (src/shared/cli.ts), kept as written; zero is no time to confirm in. */
export function checkDuration(text: string): Checked<string> {
  let ms: number;
  try {
    ms = parseDuration('confirm-timeout', text);
  } catch {
    return { ok: false, problem: `"${text}" is not a duration` };
  }
  if (ms <= 0) return { ok: false, problem: `"${text}" is no time to wait` };
  return { ok: true, value: text.trim() };
}

export function checkReloadMethod(text: string): Checked<ReloadMethod> {
  const method = parseReloadMethod(text);
  if (method !== undefined) return { ok: true, value: method };
  return {
    ok: false,
    problem: `"${text}" is not a supported HTTP method`,
    fix: `use one of ${RELOAD_METHODS.join(', ')}`,
  };
}

export function checkBoolean(text: string): Checked<boolean> {
  const lower = text.toLowerCase();
  if (lower === 'true' || lower === 'false') return { ok: true, value: lower === 'true' };
  return {
    ok: false,
    problem: `"${text}" is neither "true" nor "false"`,
    fix: 'set it to "true" or "false"',
  };
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
