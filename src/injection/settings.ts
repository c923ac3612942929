import { ANNOTATIONS, ANNOTATION_PREFIX } from './annotations.ts';
import type { InjectorConfig } from './config.ts';
import { KNOBS } from './knob-table.ts';
import {
  parseList,
  requestsAboveLimits,
  RESOURCE_KNOBS,
  type Checked,
  type PullPolicy,
  type ResourceKey,
  type ResourceValue,
  type SidecarMode,
} from './knobs.ts';
import { PRESETS, presetMetricsUrl, presetReloadUrl, type PresetName } from './presets.ts';
import type { ReloadMethod } from './reload-url.ts';
import type { ReloadSignal } from '../shared/reload-signal.ts';

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
  /** config-reloader.io/preset; its parts are already in reloadUrl, reloadMethod and the confirmation. */
  preset?: PresetName;
  reloadSignal?: ReloadSignal;
  /** The annotation's container; decide.ts puts the resolved target here (the only app container by default). */
  signalContainer?: string;
  /** Confirmation: set together (metricsUrl and successMetric), from the annotations or the preset. */
  metricsUrl?: string;
  metricsPort?: number;
  successMetric?: string;
  timestampMetric?: string;
  confirmTimeout?: string;
  events: boolean;
  /** Containers named in config-reloader.io/restart-on-env-change. */
  restartOnEnvChange: string[];
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
  // Each annotation through its knob's rule (knob-table.ts); what is left here are checks between values.
  const value = <T>(knob: ValueKnob<T>): T | undefined =>
    annotationValue(knob, get(`${ANNOTATION_PREFIX}${knob.annotation}`), config, problems);
  const list = (knob: ListKnob): string[] | undefined =>
    annotationList(knob, get(`${ANNOTATION_PREFIX}${knob.annotation}`), config, problems);

  // The names as listed, invalid ones included: they are reported, and keep the pod in explicit mode for the checks after this one.
  const secrets = list(KNOBS.secrets) ?? [];
  const configmaps = list(KNOBS.configmaps) ?? [];
  const clash = secrets.find((name) => configmaps.includes(name));
  if (clash !== undefined) {
    problems.add(
      ANNOTATIONS.configmaps,
      `"${clash}" is also listed in ${ANNOTATIONS.secrets}, and both would be written to the same directory <mount-path>/${clash}`,
      'list each name once, or mount one of them through a secret/configMap volume instead',
    );
  }
  const explicit = secrets.length + configmaps.length > 0;
  const mountPath = value(KNOBS.mountPath) ?? KNOBS.mountPath.default;
  const containers = list(KNOBS.containers);
  if (!explicit) {
    for (const name of [ANNOTATIONS.mountPath, ANNOTATIONS.containers]) {
      if (get(name) !== undefined) {
        warnings.push(
          `${name} is ignored: it applies only with ${ANNOTATIONS.secrets} or ${ANNOTATIONS.configmaps}`,
        );
      }
    }
  }
  const volumes = list(KNOBS.volumes);
  const delivery = parseDelivery(get, value, warnings, problems);
  const sidecarMode = value(KNOBS.sidecarMode);
  const port = value(KNOBS.port);
  const resources = parseResources(get, config, problems);
  const restartOnEnvChange = list(KNOBS.restartOnEnvChange) ?? [];
  const events = value(KNOBS.events) ?? false;
  // The reloader records Events for confirmed reloads and for restarts only; without either, --events would
  // cost the pod a POD_UID and an Events client for nothing. An invalid part is denied already.
  const eventSources = [
    ANNOTATIONS.preset,
    ANNOTATIONS.metricsUrl,
    ANNOTATIONS.successMetric,
    ANNOTATIONS.restartOnEnvChange,
  ];
  const recordsNothing =
    delivery.successMetric === undefined &&
    restartOnEnvChange.length === 0 &&
    !eventSources.some((name) => problems.invalid.has(name));
  if (events && recordsNothing) {
    warnings.push(
      `${ANNOTATIONS.events}: "true" is ignored: Events are recorded for confirmed reloads and restarts, and this pod has neither; add ${ANNOTATIONS.preset} or ${ANNOTATIONS.metricsUrl} and ${ANNOTATIONS.successMetric} (confirmation), or ${ANNOTATIONS.restartOnEnvChange}`,
    );
  }
  const settings: PodSettings = {
    image: config.reloaderImage,
    ...(config.imagePullPolicy !== undefined ? { imagePullPolicy: config.imagePullPolicy } : {}),
    sidecarMode: sidecarMode ?? config.sidecarMode,
    sidecarModeFromAnnotation: sidecarMode !== undefined,
    port: port ?? config.port,
    portFixed: port !== undefined,
    resources,
    ...delivery,
    events: events && !recordsNothing,
    restartOnEnvChange,
    gunzip: value(KNOBS.gunzip) ?? false,
    secrets,
    configmaps,
    mountPath,
  };
  const logLevel = annotationValue(
    KNOBS.logLevel,
    get(ANNOTATIONS.logLevel) ?? config.reloaderLogLevel,
    config,
    problems,
  );
  if (logLevel !== undefined) settings.logLevel = logLevel;
  if (volumes !== undefined) settings.volumes = volumes;
  if (containers !== undefined) settings.containers = containers;
  return { settings, warnings, problems: problems.messages, invalid: problems.invalid };
}

type Delivery = Pick<
  PodSettings,
  | 'reloadUrl'
  | 'reloadPort'
  | 'reloadMethod'
  | 'preset'
  | 'reloadSignal'
  | 'signalContainer'
  | 'metricsUrl'
  | 'metricsPort'
  | 'successMetric'
  | 'timestampMetric'
  | 'confirmTimeout'
>;

/**
 * How the app hears of a change (reload URL or signal) and how the sidecar learns that it applied it
 * (confirmation): the explicit annotations over the preset's parts, and the checks between them.
 */
function parseDelivery(
  get: (name: string) => string | undefined,
  value: <T>(knob: ValueKnob<T>) => T | undefined,
  warnings: string[],
  problems: Problems,
): Delivery {
  const presetName = value(KNOBS.preset);
  const preset = presetName !== undefined ? PRESETS[presetName] : undefined;
  const signal = value(KNOBS.reloadSignal);
  const explicitUrl = value(KNOBS.reloadUrl);
  const given = (name: string): boolean => get(name) !== undefined;
  if (given(ANNOTATIONS.reloadUrl) && given(ANNOTATIONS.reloadSignal)) {
    problems.add(
      ANNOTATIONS.reloadSignal,
      `it cannot be used together with ${ANNOTATIONS.reloadUrl}: the app would be told twice of each change`,
      `keep one of them: ${ANNOTATIONS.reloadUrl} to reload by HTTP, or ${ANNOTATIONS.reloadSignal} to reload by signal`,
    );
  }
  // With a signal the preset's HTTP reload is not used; its confirmation is.
  const reloadUrl =
    signal !== undefined || given(ANNOTATIONS.reloadSignal)
      ? undefined
      : (explicitUrl?.url ?? (preset !== undefined ? presetReloadUrl(preset) : undefined));
  const reloadPort = reloadUrl === undefined ? undefined : (explicitUrl?.port ?? preset?.port);
  const reloadMethod = value(KNOBS.reloadMethod) ?? preset?.reloadMethod ?? KNOBS.reloadMethod.default;
  if (
    given(ANNOTATIONS.reloadMethod) &&
    reloadUrl === undefined &&
    !problems.invalid.has(ANNOTATIONS.reloadUrl)
  )
    warnings.push(`${ANNOTATIONS.reloadMethod} is ignored without ${ANNOTATIONS.reloadUrl}`);
  const signalContainer = value(KNOBS.signalContainer);
  if (given(ANNOTATIONS.signalContainer) && !given(ANNOTATIONS.reloadSignal))
    warnings.push(`${ANNOTATIONS.signalContainer} is ignored without ${ANNOTATIONS.reloadSignal}`);

  const explicitMetrics = value(KNOBS.metricsUrl);
  const metricsUrl =
    explicitMetrics?.url ?? (preset !== undefined ? presetMetricsUrl(preset, explicitUrl?.url) : undefined);
  // The preset's metrics URL shares the reload URL's origin, so its port.
  const metricsPort =
    metricsUrl === undefined ? undefined : (explicitMetrics?.port ?? explicitUrl?.port ?? preset?.port);
  const successMetric = value(KNOBS.successMetric) ?? preset?.successMetric;
  const timestampMetric = value(KNOBS.timestampMetric) ?? preset?.timestampMetric;
  const confirmTimeout = value(KNOBS.confirmTimeout);
  // A part that is invalid was reported; what builds on it is not reported again.
  const present = (name: string, part: unknown): boolean => part !== undefined || problems.invalid.has(name);
  const hasMetrics = present(ANNOTATIONS.metricsUrl, metricsUrl);
  const hasSuccess = present(ANNOTATIONS.successMetric, successMetric);
  if (hasMetrics && !hasSuccess) {
    problems.add(
      ANNOTATIONS.metricsUrl,
      `it needs ${ANNOTATIONS.successMetric}: the sidecar reads the metrics for the app's verdict on its last reload`,
      `add ${ANNOTATIONS.successMetric} with the metric that is 1 when the app's last reload succeeded, or remove ${ANNOTATIONS.metricsUrl}`,
    );
  }
  if (hasSuccess && !hasMetrics) {
    problems.add(
      ANNOTATIONS.successMetric,
      `it needs ${ANNOTATIONS.metricsUrl}: the URL where the app's metrics are read`,
      `add ${ANNOTATIONS.metricsUrl} (for example http://127.0.0.1:8429/metrics), or remove ${ANNOTATIONS.successMetric}`,
    );
  }
  if (present(ANNOTATIONS.timestampMetric, timestampMetric) && !(hasMetrics && hasSuccess)) {
    problems.add(
      ANNOTATIONS.timestampMetric,
      `it needs ${ANNOTATIONS.metricsUrl} and ${ANNOTATIONS.successMetric}: the timestamp only dates the success the app reports`,
      `add both, or remove ${ANNOTATIONS.timestampMetric}`,
    );
  }
  const delivers = present(ANNOTATIONS.reloadUrl, reloadUrl) || present(ANNOTATIONS.reloadSignal, signal);
  if (hasMetrics && hasSuccess && !delivers) {
    const asked = given(ANNOTATIONS.metricsUrl) ? ANNOTATIONS.metricsUrl : ANNOTATIONS.successMetric;
    problems.add(
      asked,
      "confirmation needs a reload to confirm: the sidecar reads the app's verdict after it has told the app of a change, and this pod has neither a reload URL nor a reload signal",
      `add ${ANNOTATIONS.reloadUrl} (HTTP) or ${ANNOTATIONS.reloadSignal} (signal), or remove ${ANNOTATIONS.metricsUrl}, ${ANNOTATIONS.successMetric} and ${ANNOTATIONS.timestampMetric}`,
    );
  }
  const confirms = metricsUrl !== undefined && successMetric !== undefined;
  if (given(ANNOTATIONS.confirmTimeout) && !confirms && !hasMetrics && !hasSuccess)
    warnings.push(
      `${ANNOTATIONS.confirmTimeout} is ignored without confirmation (${ANNOTATIONS.metricsUrl} and ${ANNOTATIONS.successMetric}, or ${ANNOTATIONS.preset})`,
    );
  return {
    ...(reloadUrl !== undefined ? { reloadUrl, reloadPort } : {}),
    reloadMethod,
    ...(presetName !== undefined ? { preset: presetName } : {}),
    ...(signal !== undefined ? { reloadSignal: signal } : {}),
    ...(signalContainer !== undefined ? { signalContainer } : {}),
    ...(confirms ? { metricsUrl, metricsPort, successMetric } : {}),
    ...(confirms && timestampMetric !== undefined ? { timestampMetric } : {}),
    ...(confirms && confirmTimeout !== undefined ? { confirmTimeout } : {}),
  };
}

/** A knob with an annotation and a rule (knob-table.ts). */
interface ValueKnob<T> {
  annotation: string;
  check: (text: string, config: InjectorConfig) => Checked<T>;
  fix?: string;
}

/** A list knob: `check`, when given, is each item's rule. */
interface ListKnob {
  annotation: string;
  list: true;
  check?: (text: string, config: InjectorConfig) => Checked<string>;
  fix?: string;
}

/** The annotation's value through its knob's rule; undefined when absent or invalid (the problem is recorded). */
function annotationValue<T>(
  knob: ValueKnob<T>,
  value: string | undefined,
  config: InjectorConfig,
  problems: Problems,
): T | undefined {
  if (value === undefined) return undefined;
  const checked = knob.check(value, config);
  if (checked.ok) return checked.value;
  problems.add(
    `${ANNOTATION_PREFIX}${knob.annotation}`,
    checked.problem,
    checked.fix ?? (knob.fix as string),
  );
  return undefined;
}

/** A list annotation's items, each through its knob's rule: all of them are kept, the invalid ones recorded too; undefined when absent. */
function annotationList(
  knob: ListKnob,
  value: string | undefined,
  config: InjectorConfig,
  problems: Problems,
): string[] | undefined {
  if (value === undefined) return undefined;
  const items = parseList(value);
  if (knob.check === undefined) return items;
  for (const item of items) annotationValue({ ...knob, check: knob.check }, item, config, problems);
  return items;
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
