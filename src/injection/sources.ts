import { ANNOTATIONS } from './annotations.ts';
import { isObject, objectsOf, stringOf, type JsonObject } from './json.ts';
import type { PodSettings } from './settings.ts';
import {
  isValidKey,
  isValidMode,
  isValidObjectName,
  itemPathProblem,
  itemsProblem,
  type SourceItem,
  type SourceSpec,
} from '../shared/source-spec.ts';

/** Where the sidecar mounts what it writes. */
export const VOLUMES_DIR = '/var/run/config-reloader/volumes';
export const SHARED_DIR = '/var/run/config-reloader/shared';

/** A secret/configMap volume of the pod that becomes an emptyDir of the same name, kept current by the sidecar. */
export interface ConvertedVolume {
  name: string;
  fromSecret: boolean;
  spec: SourceSpec;
}

export interface SourcePlan {
  converted: ConvertedVolume[];
  /** Objects from config-reloader.io/secrets and /configmaps, written under the shared volume. */
  explicit: SourceSpec[];
  /** Secret/configMap volumes left to the kubelet because every mount of them uses subPath. */
  subPathOnly: string[];
  warnings: string[];
}

/** The plan, and every problem with config-reloader.io/volumes (all of them; any one denies the pod). */
export interface PlanResult {
  plan: SourcePlan;
  problems: string[];
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

const CONTAINER_LISTS = ['initContainers', 'containers', 'ephemeralContainers'] as const;

/**
 * Which sources the sidecar syncs. With config-reloader.io/secrets or /configmaps (explicit mode), those objects,
 * plus only the volumes named in config-reloader.io/volumes; otherwise every secret/configMap volume of the pod,
 * or only those named in config-reloader.io/volumes. `tokenVolume` (the API credential) is never converted, nor
 * is a volume that every container mounts only through subPath (such a mount never sees updates).
 */
export function planSources(
  spec: JsonObject,
  settings: PodSettings,
  tokenVolume: string | undefined,
): PlanResult {
  const warnings: string[] = [];
  const problems: string[] = [];
  const volumes = objectsOf(spec.volumes);
  const byName = new Map(volumes.map((v) => [stringOf(v.name), v]));
  const explicitMode = settings.secrets.length + settings.configmaps.length > 0;

  for (const name of settings.volumes ?? []) {
    const volume = byName.get(name);
    if (volume === undefined || !(isObject(volume.secret) || isObject(volume.configMap))) {
      const kind =
        volume === undefined
          ? 'no volume of the pod'
          : 'a volume that is neither a secret nor a configMap volume';
      problems.push(problem(`"${name}" is ${kind}`, listFix(volumes, tokenVolume)));
    } else if (name === tokenVolume) {
      problems.push(
        problem(
          `"${name}" holds the pod's service-account token, which the sidecar itself needs`,
          listFix(volumes, tokenVolume),
        ),
      );
    }
  }
  const named = settings.volumes !== undefined ? new Set(settings.volumes) : undefined;
  const mounts = mountsByVolume(spec);
  const converted: ConvertedVolume[] = [];
  const subPathOnly: string[] = [];
  for (const volume of volumes) {
    const name = stringOf(volume.name);
    if (name === undefined || !(isObject(volume.secret) || isObject(volume.configMap))) continue;
    if (named ? !named.has(name) || name === tokenVolume : explicitMode || name === tokenVolume) continue;
    const result = convertible(volume, name);
    if (typeof result === 'string') {
      // Only a volume the annotation names is worth a denial; others stay as the kubelet mounts them.
      if (named)
        problems.push(
          problem(
            `volume "${name}" cannot be synced: ${result}`,
            'fix the volume or remove it from the annotation',
          ),
        );
      else warnings.push(`volume "${name}" is not kept current by config-reloader: ${result}`);
      continue;
    }
    const volumeMounts = mounts.get(name) ?? [];
    if (volumeMounts.length > 0 && volumeMounts.every((m) => m.subPath)) {
      const where = volumeMounts.map((m) => `container "${m.container}"`);
      warnings.push(
        `volume "${name}" is not kept current by config-reloader: every mount of it uses subPath (${[...new Set(where)].join(', ')}), and a subPath mount never sees updates, whoever writes the volume; it is left to the kubelet. Mount the whole volume (a directory) to get updates`,
      );
      subPathOnly.push(name);
      continue;
    }
    converted.push(result);
  }
  warnings.push(...projectedWarnings(volumes, tokenVolume));
  const explicit: SourceSpec[] = [
    ...settings.secrets.map((name): SourceSpec => ({ kind: 'secret', name, dir: `${SHARED_DIR}/${name}` })),
    ...settings.configmaps.map((name): SourceSpec => ({
      kind: 'configmap',
      name,
      dir: `${SHARED_DIR}/${name}`,
    })),
  ];
  if (settings.gunzip) {
    for (const source of [...converted.map((c) => c.spec), ...explicit]) source.gunzip = true;
  }
  return { plan: { converted, explicit, subPathOnly, warnings }, problems };
}

function problem(text: string, fix: string): string {
  return `${ANNOTATIONS.volumes}: ${text}; ${fix}`;
}

/** Every volume mount of the pod's containers (init and ephemeral ones included), by volume name. */
function mountsByVolume(spec: JsonObject): Map<string, { container: string; subPath: boolean }[]> {
  const result = new Map<string, { container: string; subPath: boolean }[]>();
  for (const list of CONTAINER_LISTS) {
    for (const container of objectsOf(spec[list])) {
      for (const mount of objectsOf(container.volumeMounts)) {
        const name = stringOf(mount.name);
        if (name === undefined) continue;
        const entry = {
          container: String(container.name),
          subPath: Boolean(mount.subPath || mount.subPathExpr),
        };
        const found = result.get(name);
        if (found) found.push(entry);
        else result.set(name, [entry]);
      }
    }
  }
  return result;
}

function listFix(volumes: JsonObject[], tokenVolume: string | undefined): string {
  const candidates = volumes
    .filter((v) => (isObject(v.secret) || isObject(v.configMap)) && v.name !== tokenVolume)
    .map((v) => stringOf(v.name))
    .filter((name) => name !== undefined);
  return candidates.length > 0
    ? `list only secret/configMap volumes of the pod (here: ${candidates.join(', ')})`
    : `the pod has no secret/configMap volume; remove the annotation or use ${ANNOTATIONS.secrets} / ${ANNOTATIONS.configmaps}`;
}

/** The volume as a source, or why it cannot be one (the API server would reject most of these anyway). */
function convertible(volume: JsonObject, name: string): ConvertedVolume | string {
  if (!DNS_LABEL.test(name) || name.length > 63) return 'its name is not a DNS label';
  const fromSecret = isObject(volume.secret);
  const source = (fromSecret ? volume.secret : volume.configMap) as JsonObject;
  const objectName = stringOf(fromSecret ? source.secretName : source.name);
  if (objectName === undefined || !isValidObjectName(objectName)) {
    return `it names no valid ${fromSecret ? 'secretName' : 'configMap name'}`;
  }
  const spec: SourceSpec = {
    kind: fromSecret ? 'secret' : 'configmap',
    name: objectName,
    dir: `${VOLUMES_DIR}/${name}`,
  };
  if (source.defaultMode !== undefined) {
    if (typeof source.defaultMode !== 'number' || !isValidMode(source.defaultMode))
      return 'its defaultMode is not a file mode from 0 to 0777';
    spec.defaultMode = source.defaultMode;
  }
  if (source.optional === true) spec.optional = true;
  if (source.items !== undefined) {
    if (!Array.isArray(source.items)) return 'its items are not a list';
    const items: SourceItem[] = [];
    for (const raw of source.items) {
      const item = isObject(raw) ? raw : {};
      const key = stringOf(item.key);
      const path = stringOf(item.path);
      if (key === undefined || !isValidKey(key))
        return `item key ${JSON.stringify(item.key)} is not a valid key`;
      if (path === undefined) return `item path ${JSON.stringify(item.path)} is not a string`;
      // Exactly what the kubelet writes, by the function the reloader parses it with: `./x`, `a//b` and a path
      // named twice are fine; `..`, an absolute path, the volume itself and too long names are not.
      const pathProblem = itemPathProblem(path);
      if (pathProblem !== undefined) return `item path ${JSON.stringify(path)} ${pathProblem}`;
      const parsed: SourceItem = { key, path };
      if (item.mode !== undefined) {
        if (typeof item.mode !== 'number' || !isValidMode(item.mode))
          return `the mode of item "${key}" is not a file mode from 0 to 0777`;
        parsed.mode = item.mode;
      }
      items.push(parsed);
    }
    const conflict = itemsProblem(items, spec.optional === true);
    if (conflict !== undefined) return `${conflict}: the kubelet cannot write both`;
    // An empty list means "every key" to the kubelet as well.
    if (items.length > 0) spec.items = items;
  }
  return { name, fromSecret, spec };
}

/** Projected volumes that include Secrets or ConfigMaps are left to the kubelet; say so, as their updates stay slow. */
function projectedWarnings(volumes: JsonObject[], tokenVolume: string | undefined): string[] {
  const warnings: string[] = [];
  for (const volume of volumes) {
    const name = stringOf(volume.name);
    if (!isObject(volume.projected) || name === tokenVolume) continue;
    const objects = objectsOf(volume.projected.sources).filter(
      (s) => isObject(s.secret) || (isObject(s.configMap) && s.configMap.name !== 'kube-root-ca.crt'),
    );
    if (objects.length > 0) {
      warnings.push(
        `projected volume "${name}" includes Secrets or ConfigMaps, which config-reloader does not sync; split them into secret/configMap volumes to get fast updates`,
      );
    }
  }
  return warnings;
}
