import {
  ANNOTATIONS,
  SHARED_VOLUME,
  SIDECAR_CONTAINER,
  SIDECAR_INIT_CONTAINER,
  STATUS_INJECTED,
  TARGET_MARKER_VOLUME,
  TOKEN_VOLUME,
  readAnnotations,
} from './annotations.ts';
import type { InjectorConfig } from './config.ts';
import { envWarnings } from './env-consumers.ts';
import { DEFAULT_OWNER, podFsGroup, unreadableFileWarnings } from './file-access.ts';
import type { InjectionContext, InjectionOutcome, OptIn } from './inject.ts';
import { isObject, objectsOf, stringOf, type JsonObject } from './json.ts';
import { choosePort } from './ports.ts';
import { presetArgWarnings, PRESETS } from './presets.ts';
import { planProcesses, type ProcessPlan } from './process-targets.ts';
import { findTokenVolume } from './service-account.ts';
import { parseSettings, type PodSettings } from './settings.ts';
import { PORT_NAME } from './build.ts';
import { planSources, type SourcePlan } from './sources.ts';

/** What build.ts needs to add the sidecar, all of it decided and checked here. */
export interface InjectionPlan {
  settings: PodSettings;
  sources: SourcePlan;
  /** The containers that mount the shared volume in explicit mode. */
  targets: string[];
  /** The pod's own service-account token volume, when it has one; otherwise the sidecar gets its own. */
  tokenVolume: string | undefined;
  /** The sidecar's port: settings.port, or the next free one. */
  port: number;
  /** Declare the port (with its name) on the sidecar; off when another container took the name. */
  declarePort: boolean;
  fsGroup: number | undefined;
  /** Signal and restart targets: a shared process namespace, the sidecar as their user (process-targets.ts). */
  processes: ProcessPlan | undefined;
  warnings: string[];
  sourceCount: number;
}

type Outcome = Exclude<InjectionOutcome, { action: 'patch' }>;

export type Decision = Outcome | { action: 'build'; pod: JsonObject; plan: InjectionPlan };

const CONTAINER_LISTS = ['initContainers', 'containers', 'ephemeralContainers'] as const;

function skip(reason: string, warnings: string[] = []): Outcome {
  return { action: 'skip', reason, warnings };
}

function deny(problems: string[], warnings: string[] = []): Outcome {
  return { action: 'deny', message: denialMessage(problems), problems, warnings };
}

/** One problem as it is; several as a numbered list under one line, so that one denial names every fix. */
function denialMessage(problems: string[]): string {
  if (problems.length === 1) return problems[0] as string;
  return [
    `${problems.length} problems with the pod's config-reloader settings, fix each of them:`,
    ...problems.map((problem, i) => `${i + 1}. ${problem}`),
  ].join('\n');
}

/**
 * Whether the pod gets the sidecar: an outcome (skip or deny, with every problem found), or the plan that build.ts
 * carries out. Reads nothing but its arguments; builds nothing.
 */
export function decide(pod: unknown, ctx: InjectionContext, config: InjectorConfig): Decision {
  if (!isObject(pod)) return skip('the object is not a pod');
  const annotations = readAnnotations(pod.metadata);
  if (annotations.get(ANNOTATIONS.status) === STATUS_INJECTED)
    return skip(`already injected (${ANNOTATIONS.status}: ${STATUS_INJECTED})`);
  // Every problem is collected, so that one denial lists them all; the checks go on as if the pod had opted in.
  const problems: string[] = [];
  const optedIn = checkOptIn(annotations.get(ANNOTATIONS.inject), ctx.optIn);
  if (typeof optedIn === 'string') problems.push(optedIn);
  else if (optedIn !== true) return optedIn;
  const spec = pod.spec;
  if (!isObject(spec) || objectsOf(spec.containers).length === 0)
    return problems.length > 0 ? deny(problems) : skip('the pod has no containers');

  problems.push(...reservedNameConflicts(spec));
  const parsed = parseSettings(annotations, config);
  problems.push(...parsed.problems);
  const { settings, invalid } = parsed;
  const warnings = [...parsed.warnings];

  const tokenVolume = findTokenVolume(spec);
  const planned = planSources(spec, settings, tokenVolume);
  problems.push(...planned.problems);
  const { plan } = planned;
  warnings.push(...plan.warnings);
  const sources = plan.converted.length + plan.explicit.length;
  // A container to restart on env changes is work for the sidecar even with no file to write.
  const restartsOnly = settings.restartOnEnvChange.length > 0;
  if (sources === 0 && problems.length === 0 && !restartsOnly) {
    const reason =
      plan.subPathOnly.length > 0
        ? `nothing to sync: only secret/configMap volumes mounted through subPath (${plan.subPathOnly.join(', ')})`
        : 'nothing to sync';
    // Namespace-wide injection reaches every pod; only a pod that asked for the sidecar hears that it has nothing to sync.
    const askedFor = annotations.get(ANNOTATIONS.inject)?.trim().toLowerCase() === 'true';
    if (!askedFor) return skip(reason, warnings);
    warnings.push(
      plan.subPathOnly.length > 0
        ? `${ANNOTATIONS.inject}: the pod opted in but has nothing to sync: its secret/configMap volumes are mounted only through subPath (see the warning above), so the sidecar was not added; mount a volume whole, or name objects in ${ANNOTATIONS.secrets} / ${ANNOTATIONS.configmaps}`
        : `${ANNOTATIONS.inject}: the pod opted in but has nothing to sync: no secret or configMap volume to keep current; add one, or name objects in ${ANNOTATIONS.secrets} / ${ANNOTATIONS.configmaps}`,
    );
    return skip(reason, warnings);
  }

  const targets = explicitTargets(spec, settings, plan, invalid, problems);
  const processes = planProcesses(spec, settings, invalid);
  problems.push(...processes.problems);
  const port = choosePort(spec, settings.port, settings.portFixed, appPorts(settings));
  if (!port.ok) {
    problems.push(
      `${ANNOTATIONS.port}: ${port.problem}; set it to a port no container of the pod uses, or remove it to let the injector pick one`,
    );
  }
  if (!invalid.has(ANNOTATIONS.sidecarMode)) {
    const legacy = legacyRunToCompletion(spec, settings);
    if (legacy !== undefined) problems.push(legacy);
  }
  if (!port.ok || problems.length > 0) return deny(problems, warnings);

  warnings.push(...port.warnings);
  if (spec.hostNetwork === true) {
    warnings.push(
      `the pod uses hostNetwork: the config-reloader sidecar listens on port ${port.port} of the node; make sure it is free there, or set ${ANNOTATIONS.port}`,
    );
  }
  warnings.push(...subPathWarnings(spec, plan));
  const fsGroup = podFsGroup(spec);
  // The sidecar's files belong to its user (the targets' with a signal or restart) and its own group.
  const owner = processes.plan !== undefined ? { ...DEFAULT_OWNER, uid: processes.plan.uid } : DEFAULT_OWNER;
  warnings.push(...unreadableFileWarnings(spec, plan.converted, fsGroup, owner));
  warnings.push(...envWarnings(spec, plan, settings.restartOnEnvChange));
  warnings.push(...presetWarnings(spec, settings, annotations, processes.plan?.signalContainer));

  return {
    action: 'build',
    pod,
    plan: {
      settings:
        processes.plan?.signalContainer !== undefined
          ? { ...settings, signalContainer: processes.plan.signalContainer }
          : settings,
      processes: processes.plan,
      sources: plan,
      targets,
      tokenVolume,
      port: port.port,
      declarePort: !portNameTaken(spec),
      fsGroup,
      warnings,
      sourceCount: sources,
    },
  };
}

/** true: opted in; a skip; or the problem with the annotation's value. */
function checkOptIn(value: string | undefined, optIn: OptIn): true | Outcome | string {
  const normalised = value?.trim().toLowerCase() ?? '';
  if (normalised === 'true') return true;
  if (normalised === 'false') return skip(`opted out (${ANNOTATIONS.inject}: "false")`);
  if (normalised === '')
    return optIn === 'namespace' ? true : skip(`not opted in (no ${ANNOTATIONS.inject}: "true")`);
  return `${ANNOTATIONS.inject}: "${value}" is neither "true" nor "false"; set it to "true" to inject the config-reloader sidecar or "false" to opt out`;
}

/**
 * Legacy mode's regular container never exits, so a pod that runs to completion (a Job's or CronJob's, with
 * restartPolicy Never or OnFailure) would never complete: its Job would hang with the app done.
 */
function legacyRunToCompletion(spec: JsonObject, settings: PodSettings): string | undefined {
  const restartPolicy = spec.restartPolicy;
  if (settings.sidecarMode !== 'legacy' || (restartPolicy !== 'Never' && restartPolicy !== 'OnFailure'))
    return undefined;
  const why = `the pod has restartPolicy: ${restartPolicy} (a Job's or CronJob's pod), and legacy mode adds a regular container "${SIDECAR_CONTAINER}" that keeps watching and never exits, so the pod would never complete and its Job would hang`;
  const native = `the native sidecar (Kubernetes 1.29 and later), which the kubelet stops when the app's containers have finished`;
  if (settings.sidecarModeFromAnnotation) {
    return `${ANNOTATIONS.sidecarMode}: "legacy" cannot be used here: ${why}; remove the annotation or set it to "native" to use ${native}, or, on a cluster older than 1.29, opt the pod out with ${ANNOTATIONS.inject}: "false"`;
  }
  return `the injector flag --sidecar-mode=legacy cannot be used for this pod: ${why}; set the annotation ${ANNOTATIONS.sidecarMode}: "native" on the pod to use ${native} (or run the injector with --sidecar-mode=native), or, on a cluster older than 1.29, opt the pod out with ${ANNOTATIONS.inject}: "false"`;
}

function reservedNameConflicts(spec: JsonObject): string[] {
  const fix = `rename it (the name is reserved for the injected sidecar), or, if the sidecar was added on purpose, add the annotation ${ANNOTATIONS.status}: ${STATUS_INJECTED}`;
  const problems: string[] = [];
  for (const list of CONTAINER_LISTS) {
    for (const container of objectsOf(spec[list])) {
      if (container.name === SIDECAR_CONTAINER || container.name === SIDECAR_INIT_CONTAINER) {
        problems.push(
          `${ANNOTATIONS.status}: the pod already has a container named "${String(container.name)}" but no ${ANNOTATIONS.status}: ${STATUS_INJECTED} annotation; ${fix}`,
        );
      }
    }
  }
  for (const volume of objectsOf(spec.volumes)) {
    if (
      volume.name === SHARED_VOLUME ||
      volume.name === TOKEN_VOLUME ||
      volume.name === TARGET_MARKER_VOLUME
    ) {
      problems.push(
        `${ANNOTATIONS.status}: the pod already has a volume named "${String(volume.name)}" but no ${ANNOTATIONS.status}: ${STATUS_INJECTED} annotation; ${fix}`,
      );
    }
  }
  return problems;
}

/**
 * The containers that mount the shared volume in explicit mode (empty without explicit sources); what is wrong
 * with config-reloader.io/containers or /mount-path goes to `problems`.
 */
function explicitTargets(
  spec: JsonObject,
  settings: PodSettings,
  plan: SourcePlan,
  invalid: ReadonlySet<string>,
  problems: string[],
): string[] {
  if (plan.explicit.length === 0) return [];
  const appNames = objectsOf(spec.containers)
    .map((c) => stringOf(c.name))
    .filter((name) => name !== undefined);
  const initNames = objectsOf(spec.initContainers)
    .map((c) => stringOf(c.name))
    .filter((name) => name !== undefined);
  const targets =
    settings.containers !== undefined && settings.containers.length > 0 ? settings.containers : appNames;
  for (const name of targets) {
    if (!appNames.includes(name) && !initNames.includes(name)) {
      problems.push(
        `${ANNOTATIONS.containers}: the pod has no container named "${name}"; list containers of the pod (here: ${[...initNames, ...appNames].join(', ')})`,
      );
    }
  }
  // An invalid mount path was reported already; the default that stands in for it would only add a second problem.
  if (invalid.has(ANNOTATIONS.mountPath)) return targets;
  for (const container of [...objectsOf(spec.initContainers), ...objectsOf(spec.containers)]) {
    if (!targets.includes(stringOf(container.name) ?? '')) continue;
    for (const mount of objectsOf(container.volumeMounts)) {
      if (
        typeof mount.mountPath === 'string' &&
        mount.mountPath.replace(/(.)\/+$/, '$1') === settings.mountPath
      ) {
        problems.push(
          `${ANNOTATIONS.mountPath}: container "${String(container.name)}" already mounts volume "${String(mount.name)}" at ${settings.mountPath}; choose another directory for the synced objects`,
        );
      }
    }
  }
  return targets;
}

/** The app's ports in the reload and metrics URLs are in use even when no container declares them. */
function appPorts(settings: PodSettings): Map<number, string> {
  const taken = new Map<number, string>();
  const from = settings.preset !== undefined ? ` or ${ANNOTATIONS.preset}` : '';
  if (settings.metricsPort !== undefined)
    taken.set(settings.metricsPort, `the app's metrics URL (${ANNOTATIONS.metricsUrl}${from})`);
  if (settings.reloadPort !== undefined)
    taken.set(settings.reloadPort, `the app's reload URL (${ANNOTATIONS.reloadUrl}${from})`);
  return taken;
}

/**
 * What the app's command line says against the preset (a moved port, a missing flag): judged on the container the
 * preset is for, the signal target or the only app container, else the one container whose image names the app.
 * `signalTarget` is the resolved target of reload-signal: a signal-container ignored for want of a signal names
 * nothing.
 */
function presetWarnings(
  spec: JsonObject,
  settings: PodSettings,
  annotations: Map<string, string>,
  signalTarget: string | undefined,
): string[] {
  if (settings.preset === undefined) return [];
  const all = [...objectsOf(spec.initContainers), ...objectsOf(spec.containers)];
  const apps = objectsOf(spec.containers);
  const words: readonly string[] = PRESETS[settings.preset].images;
  const byImage = apps.filter((c) => words.includes(imageName(c.image)));
  const container =
    signalTarget !== undefined
      ? all.find((c) => c.name === signalTarget)
      : apps.length === 1
        ? apps[0]
        : byImage.length === 1
          ? byImage[0]
          : undefined;
  if (container === undefined) return [];
  const argv = [...stringsOf(container.command), ...stringsOf(container.args)];
  const has = (name: string): boolean => (annotations.get(name)?.trim() ?? '') !== '';
  return presetArgWarnings(settings.preset, stringOf(container.name) ?? '', argv, {
    reloadPort: settings.reloadPort,
    metricsPort: settings.metricsPort,
    ownReloadUrl: has(ANNOTATIONS.reloadUrl),
    ownMetricsUrl: has(ANNOTATIONS.metricsUrl),
  });
}

/** The repository's last part of an image reference, without tag or digest: `prometheus` of quay.io/prometheus/prometheus:v3. */
function imageName(image: unknown): string {
  const text = stringOf(image) ?? '';
  return (text.split('@')[0] ?? '').split('/').at(-1)?.split(':')[0] ?? '';
}

const stringsOf = (value: unknown): string[] =>
  Array.isArray(value) ? value.filter((item): item is string => typeof item === 'string') : [];

function subPathWarnings(spec: JsonObject, plan: SourcePlan): string[] {
  const converted = new Set(plan.converted.map((c) => c.name));
  const warnings: string[] = [];
  for (const list of CONTAINER_LISTS) {
    for (const container of objectsOf(spec[list])) {
      for (const mount of objectsOf(container.volumeMounts)) {
        if (!converted.has(stringOf(mount.name) ?? '') || !(mount.subPath || mount.subPathExpr)) continue;
        warnings.push(
          `container "${String(container.name)}" mounts volume "${String(mount.name)}" with subPath: that file never sees updates (as with the kubelet); mount the whole volume to get them`,
        );
      }
    }
  }
  return warnings;
}

function portNameTaken(spec: JsonObject): boolean {
  return CONTAINER_LISTS.some((list) =>
    objectsOf(spec[list]).some((container) =>
      objectsOf(container.ports).some((port) => port.name === PORT_NAME),
    ),
  );
}
