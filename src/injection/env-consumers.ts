import { ANNOTATIONS } from './annotations.ts';
import { isObject, objectsOf, stringOf, type JsonObject } from './json.ts';
import type { SourcePlan } from './sources.ts';

/**
 * Containers that read Secrets and ConfigMaps through their environment. The kubelet resolves env and envFrom
 * once, when it starts the container; nothing the sidecar writes changes them. Only a restart of the container
 * does (config-reloader.io/restart-on-env-change).
 */

/** One object a container reads through its environment, as the reloader names it (`secret/db`, `configmap/app`). */
export interface EnvReference {
  kind: 'secret' | 'configmap';
  name: string;
  /** How: `env DB_PASSWORD` or `envFrom`. */
  via: string;
}

const KIND_NAMES = { secret: 'Secret', configmap: 'ConfigMap' } as const;

/** The Secrets and ConfigMaps the container reads through env and envFrom, `optional: true` ones included. */
export function envReferences(container: JsonObject): EnvReference[] {
  const found: EnvReference[] = [];
  for (const variable of objectsOf(container.env)) {
    const from = isObject(variable.valueFrom) ? variable.valueFrom : {};
    const via = `env ${stringOf(variable.name) ?? '?'}`;
    for (const [key, kind] of [
      ['secretKeyRef', 'secret'],
      ['configMapKeyRef', 'configmap'],
    ] as const) {
      const ref = from[key];
      const name = isObject(ref) ? stringOf(ref.name) : undefined;
      if (name !== undefined && name !== '') found.push({ kind, name, via });
    }
  }
  for (const source of objectsOf(container.envFrom)) {
    for (const [key, kind] of [
      ['secretRef', 'secret'],
      ['configMapRef', 'configmap'],
    ] as const) {
      const ref = source[key];
      const name = isObject(ref) ? stringOf(ref.name) : undefined;
      if (name !== undefined && name !== '') found.push({ kind, name, via: 'envFrom' });
    }
  }
  return found;
}

/** Each object once, in the order first read: `secret/a,configmap/b`, the reloader's --restart-on-change list. */
export function restartObjects(references: EnvReference[]): string[] {
  return [...new Set(references.map(({ kind, name }) => `${kind}/${name}`))];
}

/** `Secret "db" (env DB_PASSWORD, envFrom)`, each object once with every way it is read. */
function describe(references: EnvReference[]): string {
  const byObject = new Map<string, EnvReference[]>();
  for (const reference of references) {
    const key = `${KIND_NAMES[reference.kind]} "${reference.name}"`;
    byObject.set(key, [...(byObject.get(key) ?? []), reference]);
  }
  return [...byObject]
    .map(([object, refs]) => `${object} (${[...new Set(refs.map((r) => r.via))].join(', ')})`)
    .join(', ');
}

/**
 * An init container that runs once before the app (not a native sidecar): by the time a change comes it has exited,
 * so its environment matters only at start and there is nothing to signal or restart.
 */
export function runsOnce(container: JsonObject, list: 'initContainers' | 'containers'): boolean {
  return list === 'initContainers' && container.restartPolicy !== 'Always';
}

/**
 * One warning for each container that reads, through its environment, an object the sidecar keeps current: the
 * files change, its environment does not. Containers that opted in to restarts are left out, and so are init
 * containers that run once.
 */
export function envWarnings(spec: JsonObject, sources: SourcePlan, restarted: readonly string[]): string[] {
  const synced = new Set([
    ...sources.converted.map(({ spec: source }) => `${source.kind}/${source.name}`),
    ...sources.explicit.map((source) => `${source.kind}/${source.name}`),
  ]);
  const warnings: string[] = [];
  for (const list of ['initContainers', 'containers'] as const) {
    for (const container of objectsOf(spec[list])) {
      const name = stringOf(container.name) ?? '';
      if (runsOnce(container, list) || restarted.includes(name)) continue;
      const references = envReferences(container).filter(({ kind, name: object }) =>
        synced.has(`${kind}/${object}`),
      );
      if (references.length === 0) continue;
      warnings.push(
        `container "${name}" reads ${describe(references)} through its environment, which the kubelet sets once when the container starts: config-reloader keeps the files current, but this container's environment keeps the old values until it restarts; to restart just this container when the objects change, add ${ANNOTATIONS.restartOnEnvChange}: "${name}"`,
      );
    }
  }
  return warnings;
}
