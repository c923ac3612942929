import { ANNOTATIONS, ANNOTATION_PREFIX, DEFAULT_MOUNT_PATH, parseList } from './annotations.ts';
import type { InjectorConfig } from './config.ts';
import { KNOBS } from './knob-table.ts';
import {
  requestsAboveLimits,
  RESOURCE_KNOBS,
  type Checked,
  type PullPolicy,
  type ResourceKey,
  type ResourceValue,
  type SidecarMode,
} from './knobs.ts';
import { checkReloadUrl, parseReloadMethod, RELOAD_METHODS, type ReloadMethod } from './reload-url.ts';
import { isValidObjectName } from '../shared/source-spec.ts';

/** Everything the pod's annotations and the cluster defaults decide, parsed and validated once before anything is built. */
export interface PodSettings {
  /** The sidecar's image and pull policy (injector flags only). */
  image: string;
  imagePullPolicy?: PullPolicy;
  sidecarMode: SidecarMode;
  /** Where sidecarMode came from: the annotation, or the injector flag --sidecar-mode. */
  sidecarModeFromAnnotation: boolean;
  /** The port the sidecar listens on: fixed by the annotation, or the preferred one that may move to the next free port. */
  port: number;
  portFixed: boolean;
  resources: { requests: Record<string, string>; limits: Record<string, string> };
  reloadUrl?: string;
  /** The reload URL's port (its scheme's default when it names none). */
  reloadPort?: number;
  reloadMethod: ReloadMethod;
  logLevel?: string;
  gunzip: boolean;
  /** Volumes named in config-reloader.io/volumes; undefined when the annotation is absent. */
  volumes?: string[];
  secrets: string[];
  configmaps: string[];
  mountPath: string;
  /** Containers named in config-reloader.io/containers; undefined means every app container. */
  containers?: string[];
}

/**
 * The settings, and every problem found on the way: all of them, not only the first, so that one denial lists
 * them all. A value with a problem is replaced by its default in `settings`, so that the checks after this one
 * still run; a pod with any problem is denied, so those stand-ins never reach a sidecar.
 */
export interface SettingsResult {
  settings: PodSettings;
  warnings: string[];
  /** `annotation: problem; fix`, one for each invalid value. */
  problems: string[];
  /** The annotations (or injector flags) that had a problem: checks that build on their value are skipped. */
  invalid: ReadonlySet<string>;
}

const KNOWN = new Set<string>(Object.values(ANNOTATIONS));

/** Collects `annotation: problem; fix` messages. */
export class Problems {
  readonly messages: string[] = [];
  readonly invalid = new Set<string>();

  add(annotation: string, problem: string, fix: string): void {
    const message = `${annotation}: ${problem}; ${fix}`;
    if (!this.messages.includes(message)) this.messages.push(message);
    this.invalid.add(annotation);
  }
}

export function parseSettings(annotations: Map<string, string>, config: InjectorConfig): SettingsResult {
  const warnings: string[] = [];
  const problems = new Problems();
  // An empty annotation value means the same as no annotation.
  const get = (name: string): string | undefined => {
    const value = annotations.get(name)?.trim();
    return value === '' ? undefined : value;
  };
  for (const key of annotations.keys()) {
    if (key.startsWith(ANNOTATION_PREFIX) && !KNOWN.has(key)) {
      warnings.push(`unknown annotation ${key} is ignored (see docs/annotations.md for the supported ones)`);
    }
  }
  const secrets = objectNames(ANNOTATIONS.secrets, get(ANNOTATIONS.secrets), problems);
  const configmaps = objectNames(ANNOTATIONS.configmaps, get(ANNOTATIONS.configmaps), problems);
  const clash = secrets.find((name) => configmaps.includes(name));
  if (clash !== undefined) {
    problems.add(
      ANNOTATIONS.configmaps,
      `"${clash}" is also listed in ${ANNOTATIONS.secrets}, and both would be written to the same directory <mount-path>/${clash}`,
      'list each name once, or mount one of them through a secret/configMap volume instead',
    );
  }
  const explicit = secrets.length + configmaps.length > 0;
  const mountPath = parseMountPath(get(ANNOTATIONS.mountPath), problems);
  const containersValue = get(ANNOTATIONS.containers);
  if (!explicit) {
    for (const name of [ANNOTATIONS.mountPath, ANNOTATIONS.containers]) {
      if (get(name) !== undefined) {
        warnings.push(
          `${name} is ignored: it applies only with ${ANNOTATIONS.secrets} or ${ANNOTATIONS.configmaps}`,
        );
      }
    }
  }
  const volumesValue = get(ANNOTATIONS.volumes);
  const reload = parseReload(
    get(ANNOTATIONS.reloadUrl),
    get(ANNOTATIONS.reloadMethod),
    config,
    warnings,
    problems,
  );
  const sidecarMode = annotationValue(KNOBS.sidecarMode, get(ANNOTATIONS.sidecarMode), problems);
  const port = annotationValue(KNOBS.port, get(ANNOTATIONS.port), problems);
  const settings: PodSettings = {
    image: config.reloaderImage,
    ...(config.imagePullPolicy !== undefined ? { imagePullPolicy: config.imagePullPolicy } : {}),
    sidecarMode: sidecarMode ?? config.sidecarMode,
    sidecarModeFromAnnotation: sidecarMode !== undefined,
    port: port ?? config.port,
    portFixed: port !== undefined,
    resources: parseResources(get, config, problems),
    ...reload,
    gunzip: parseBoolean(ANNOTATIONS.gunzip, get(ANNOTATIONS.gunzip), problems),
    secrets,
    configmaps,
    mountPath,
  };
  const logLevel = annotationValue(
    KNOBS.logLevel,
    get(ANNOTATIONS.logLevel) ?? config.reloaderLogLevel,
    problems,
  );
  if (logLevel !== undefined) settings.logLevel = logLevel;
  if (volumesValue !== undefined) settings.volumes = parseList(volumesValue);
  if (containersValue !== undefined) settings.containers = parseList(containersValue);
  return { settings, warnings, problems: problems.messages, invalid: problems.invalid };
}

/** The names as listed, invalid ones included: they are reported, and keep the pod in explicit mode for the checks after this one. */
function objectNames(annotation: string, value: string | undefined, problems: Problems): string[] {
  const names = parseList(value);
  for (const name of names) {
    if (!isValidObjectName(name)) {
      problems.add(
        annotation,
        `"${name}" is not a valid object name`,
        'use the names of the objects as comma-separated lowercase DNS names, for example "app-config,app-tls"',
      );
    }
  }
  return names;
}

function parseMountPath(value: string | undefined, problems: Problems): string {
  if (value === undefined) return DEFAULT_MOUNT_PATH;
  const path = value.length > 1 ? value.replace(/\/+$/, '') : value;
  if (!path.startsWith('/') || path === '/' || path.split('/').includes('..') || path.includes(':')) {
    problems.add(
      ANNOTATIONS.mountPath,
      `"${value}" is not an absolute directory path`,
      `use a path such as ${DEFAULT_MOUNT_PATH} (no "..", no ":", not "/")`,
    );
    return DEFAULT_MOUNT_PATH;
  }
  return path;
}

/** The annotation's value through its knob's rule; undefined when absent or invalid (the problem is recorded). */
function annotationValue<T>(
  knob: { annotation: string; check: (text: string) => Checked<T>; fix?: string },
  value: string | undefined,
  problems: Problems,
): T | undefined {
  if (value === undefined) return undefined;
  const checked = knob.check(value);
  if (checked.ok) return checked.value;
  problems.add(
    `${ANNOTATION_PREFIX}${knob.annotation}`,
    checked.problem,
    checked.fix ?? (knob.fix as string),
  );
  return undefined;
}

function parseBoolean(annotation: string, value: string | undefined, problems: Problems): boolean {
  if (value === undefined) return false;
  const lower = value.toLowerCase();
  if (lower !== 'true' && lower !== 'false') {
    problems.add(annotation, `"${value}" is neither "true" nor "false"`, 'set it to "true" or "false"');
    return false;
  }
  return lower === 'true';
}

function parseReload(
  urlValue: string | undefined,
  methodValue: string | undefined,
  config: InjectorConfig,
  warnings: string[],
  problems: Problems,
): { reloadUrl?: string; reloadPort?: number; reloadMethod: ReloadMethod } {
  let reloadMethod: ReloadMethod = 'POST';
  if (methodValue !== undefined) {
    const method = parseReloadMethod(methodValue);
    if (method === undefined) {
      problems.add(
        ANNOTATIONS.reloadMethod,
        `"${methodValue}" is not a supported HTTP method`,
        `use one of ${RELOAD_METHODS.join(', ')}`,
      );
    } else {
      reloadMethod = method;
    }
    if (urlValue === undefined)
      warnings.push(`${ANNOTATIONS.reloadMethod} is ignored without ${ANNOTATIONS.reloadUrl}`);
  }
  if (urlValue === undefined) return { reloadMethod };
  const check = checkReloadUrl(urlValue, config.allowedReloadHosts);
  if (!check.ok) {
    problems.add(
      ANNOTATIONS.reloadUrl,
      check.problem,
      "set it to the http(s) URL of the app's reload endpoint inside the pod, for example http://127.0.0.1:8429/-/reload",
    );
    return { reloadMethod };
  }
  return { reloadUrl: check.url, reloadPort: check.port, reloadMethod };
}

function parseResources(
  get: (name: string) => string | undefined,
  config: InjectorConfig,
  problems: Problems,
): PodSettings['resources'] {
  const values: Partial<Record<ResourceKey, ResourceValue>> = {};
  for (const { key, flag } of RESOURCE_KNOBS) {
    const annotation = ANNOTATIONS[key];
    const fromPod = get(annotation);
    const text = fromPod ?? config.resources[key];
    if (text === undefined) continue;
    const origin = fromPod !== undefined ? annotation : `the injector flag --${flag}`;
    const checked = KNOBS[key].check(text);
    if (!checked.ok) {
      problems.add(origin, checked.problem, 'fix the value or remove it to use the default');
      continue;
    }
    values[key] = { ...checked.value, origin };
  }
  for (const { resource, request, limit, problem } of requestsAboveLimits(values)) {
    const culprit = limit.origin.startsWith(ANNOTATION_PREFIX) ? limit.origin : request.origin;
    problems.add(
      culprit,
      problem,
      `set config-reloader.io/${resource}-request and config-reloader.io/${resource}-limit so that the request is not above the limit`,
    );
  }
  const resources: PodSettings['resources'] = { requests: {}, limits: {} };
  if (values.cpuRequest) resources.requests.cpu = values.cpuRequest.text;
  if (values.memoryRequest) resources.requests.memory = values.memoryRequest.text;
  if (values.cpuLimit) resources.limits.cpu = values.cpuLimit.text;
  if (values.memoryLimit) resources.limits.memory = values.memoryLimit.text;
  return resources;
}
