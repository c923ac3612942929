import { ANNOTATIONS } from './annotations.ts';
import { envReferences, restartObjects, runsOnce } from './env-consumers.ts';
import { containerIds, DEFAULT_OWNER } from './file-access.ts';
import { objectsOf, stringOf, type JsonObject } from './json.ts';
import type { PodSettings } from './settings.ts';
import { targetMarkerPath } from '../shared/process-marker.ts';

/**
 * The containers whose main process the sidecar signals: the target of config-reloader.io/reload-signal and those
 * of restart-on-env-change. Reaching them takes a shared process namespace and a marker mount in each target (the
 * reloader finds a container's processes by it in /proc/PID/mountinfo: src/shared/process-marker.ts). kill(2)
 * takes the same user id (PodSecurity restricted forbids CAP_KILL), so the sidecar runs as the targets' runAsUser.
 * It keeps its own group (65532) whatever theirs: reading another process's /proc/PID/environ and /proc/PID/root
 * takes the same user AND group, so with the app's group the app could read the sidecar's ServiceAccount token
 * (and the sidecar the app's files). A different group leaves them able to signal each other, nothing more.
 */

export interface ProcessPlan {
  /** The container that gets the reload signal. */
  signalContainer?: string;
  /** For each container of restart-on-env-change, the objects it reads through its environment. */
  restarts: { container: string; objects: string[] }[];
  /** Every container that gets the marker mount. */
  targets: string[];
  /** The user the sidecar runs as: the targets' runAsUser (its group stays its own, SECURITY_CONTEXT's). */
  uid: number;
}

export interface ProcessResult {
  plan?: ProcessPlan;
  problems: string[];
}

interface Found {
  container: JsonObject;
  name: string;
  list: 'initContainers' | 'containers';
}

const byName = (spec: JsonObject): Map<string, Found> => {
  const found = new Map<string, Found>();
  for (const list of ['initContainers', 'containers'] as const) {
    for (const container of objectsOf(spec[list])) {
      const name = stringOf(container.name);
      if (name !== undefined) found.set(name, { container, name, list });
    }
  }
  return found;
};

/** The process plan, or undefined without reload-signal and restart-on-env-change; every problem found. */
export function planProcesses(
  spec: JsonObject,
  settings: PodSettings,
  invalid: ReadonlySet<string>,
): ProcessResult {
  const problems: string[] = [];
  const containers = byName(spec);
  const appNames = objectsOf(spec.containers)
    .map((c) => stringOf(c.name))
    .filter((name) => name !== undefined);
  const names = [...containers.keys()].join(', ');
  const targets: Found[] = [];

  let signalContainer: string | undefined;
  if (settings.reloadSignal !== undefined && !invalid.has(ANNOTATIONS.signalContainer)) {
    const named = settings.signalContainer;
    const found = named !== undefined ? containers.get(named) : undefined;
    if (named === undefined && appNames.length !== 1) {
      problems.push(
        `${ANNOTATIONS.reloadSignal}: the pod has ${appNames.length} app containers (${appNames.join(', ')}), so which one reloads on ${settings.reloadSignal} is not clear; set ${ANNOTATIONS.signalContainer} to the container whose main process should get the signal`,
      );
    } else if (named !== undefined && found === undefined) {
      problems.push(
        `${ANNOTATIONS.signalContainer}: the pod has no container named "${named}"; name one of its containers (here: ${names})`,
      );
    } else if (found !== undefined && runsOnce(found.container, found.list)) {
      problems.push(
        `${ANNOTATIONS.signalContainer}: "${named}" is an init container that runs once before the app and has exited when a change comes; name an app container or a native sidecar (an init container with restartPolicy: Always)`,
      );
    } else {
      signalContainer = named ?? appNames[0];
      targets.push(found ?? (containers.get(signalContainer as string) as Found));
    }
  }

  const restarts: ProcessPlan['restarts'] = [];
  const restartPolicy = spec.restartPolicy;
  for (const name of invalid.has(ANNOTATIONS.restartOnEnvChange) ? [] : settings.restartOnEnvChange) {
    const found = containers.get(name);
    if (found === undefined) {
      problems.push(
        `${ANNOTATIONS.restartOnEnvChange}: the pod has no container named "${name}"; list containers of the pod (here: ${names})`,
      );
      continue;
    }
    if (runsOnce(found.container, found.list)) {
      problems.push(
        `${ANNOTATIONS.restartOnEnvChange}: "${name}" is an init container that runs once before the app, so there is nothing to restart; list app containers or native sidecars (init containers with restartPolicy: Always)`,
      );
      continue;
    }
    const objects = restartObjects(envReferences(found.container));
    if (objects.length === 0) {
      problems.push(
        `${ANNOTATIONS.restartOnEnvChange}: container "${name}" reads no Secret or ConfigMap through env (valueFrom.secretKeyRef, valueFrom.configMapKeyRef) or envFrom, so no change would restart it; remove it from the list (files it mounts are kept current without a restart)`,
      );
      continue;
    }
    // A native sidecar comes back whatever the pod's policy; a regular container may set its own (ContainerRestartRules, Kubernetes 1.35).
    const own = stringOf(found.container.restartPolicy);
    const podPolicy = stringOf(restartPolicy);
    const policy = found.list === 'containers' ? (own ?? podPolicy) : undefined;
    if (policy === 'Never' || policy === 'OnFailure') {
      const whose =
        own === policy
          ? `container "${name}" has restartPolicy: ${policy} (the pod has ${podPolicy ?? 'Always, the default'})`
          : `the pod has restartPolicy: ${policy}`;
      const lost =
        policy === 'Never'
          ? 'would not come back after the sidecar stops it'
          : 'would not come back when it exits cleanly on the SIGTERM the sidecar sends';
      const fix =
        own === policy
          ? `set the container's restartPolicy to Always`
          : `give the container its own restartPolicy: Always (Kubernetes 1.35 and later, ContainerRestartRules)`;
      problems.push(
        `${ANNOTATIONS.restartOnEnvChange}: ${whose}, so container "${name}" ${lost}; ${fix}, or remove "${name}" from the annotation`,
      );
      continue;
    }
    restarts.push({ container: name, objects });
    if (!targets.includes(found)) targets.push(found);
  }
  if (targets.length === 0) return { problems };

  problems.push(...namespaceProblems(spec));
  const uid = sharedUser(spec, targets, problems);
  problems.push(...markerProblems(targets));
  if (problems.length > 0 || uid === undefined) return { problems };
  return {
    plan: {
      ...(signalContainer !== undefined ? { signalContainer } : {}),
      restarts,
      targets: targets.map((t) => t.name),
      uid,
    },
    problems,
  };
}

/** Why the pod cannot share one process namespace as it is. */
function namespaceProblems(spec: JsonObject): string[] {
  const why = `${ANNOTATIONS.reloadSignal} and ${ANNOTATIONS.restartOnEnvChange} need the pod's containers to share one process namespace, so that the sidecar can find and signal the target's main process`;
  const problems: string[] = [];
  if (spec.shareProcessNamespace === false) {
    problems.push(
      `spec.shareProcessNamespace is false, but ${why}; remove the field (the injector sets it to true), or reload through ${ANNOTATIONS.reloadUrl} instead`,
    );
  }
  if (spec.hostPID === true) {
    problems.push(
      `spec.hostPID is true: the pod runs in the node's process namespace, where ${why} cannot be set up (the API server refuses hostPID together with shareProcessNamespace); remove hostPID, or reload through ${ANNOTATIONS.reloadUrl} instead`,
    );
  }
  return problems;
}

/** The one user of every target; each problem (an unknown user, root, the sidecar's group, different users) to `problems`. */
function sharedUser(spec: JsonObject, targets: Found[], problems: string[]): number | undefined {
  const whyUid =
    'the sidecar runs as the user of the container it signals (the kernel lets a process signal another only with the same user id, and PodSecurity restricted forbids CAP_KILL)';
  const ids: { name: string; uid: number }[] = [];
  for (const { container, name, list } of targets) {
    const { uid, gid } = containerIds(container, spec);
    const field = (key: string): string =>
      `spec.${list}[name=${name}].securityContext.${key} or spec.securityContext.${key}`;
    if (uid === undefined) {
      problems.push(
        `container "${name}" sets no runAsUser, so it runs as its image's user, which admission cannot see, and ${whyUid}; set ${field('runAsUser')} to the user id the image runs as`,
      );
      continue;
    }
    if (uid === 0) {
      problems.push(
        `container "${name}" runs as root (runAsUser 0), and ${whyUid}, which would make the sidecar root; run the container as a non-root user (${field('runAsUser')}), or reload through ${ANNOTATIONS.reloadUrl} instead`,
      );
      continue;
    }
    if (gid === DEFAULT_OWNER.gid) {
      problems.push(
        `container "${name}" runs as group ${gid} (runAsGroup), the sidecar's own group, and ${whyUid}: with the same user and group the container could read the sidecar's environment and files through /proc, its ServiceAccount token among them; set ${field('runAsGroup')} to another group id`,
      );
      continue;
    }
    ids.push({ name, uid });
  }
  const first = ids[0];
  if (first === undefined || ids.length < targets.length) return undefined;
  const other = ids.find((id) => id.uid !== first.uid);
  if (other !== undefined) {
    problems.push(
      `containers "${first.name}" (runAsUser ${first.uid}) and "${other.name}" (runAsUser ${other.uid}) run as different users, but the one sidecar that signals them both can run as only one; run them with the same runAsUser, or signal only one of them`,
    );
    return undefined;
  }
  return first.uid;
}

/** A target that already mounts something at its marker path: the reloader would take that for the marker. */
function markerProblems(targets: Found[]): string[] {
  const problems: string[] = [];
  for (const { container, name } of targets) {
    const path = targetMarkerPath(name);
    if (objectsOf(container.volumeMounts).some((mount) => mount.mountPath === path)) {
      problems.push(
        `container "${name}" already mounts a volume at ${path}, where the injector mounts the marker the sidecar finds the container's processes by; mount it elsewhere`,
      );
    }
  }
  return problems;
}
