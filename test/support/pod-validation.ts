import { Pod } from 'kubernetes-models/v1/Pod';

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const objs = (v: unknown): Obj[] => (Array.isArray(v) ? v.filter(isObj) : []);
const PORT_NAME = /^(?=.*[a-z])[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;
const PROBES = ['startupProbe', 'livenessProbe', 'readinessProbe'] as const;

/**
 * Problems with a pod, empty when it is valid: the upstream OpenAPI schema (kubernetes-models) plus the rules the
 * API server's validation adds on top of the schema.
 */
export function validatePod(pod: unknown): string[] {
  const problems: string[] = [];
  try {
    new Pod(pod as ConstructorParameters<typeof Pod>[0]).validate();
  } catch (err) {
    problems.push(`schema: ${(err as Error).message}`);
  }
  if (!isObj(pod) || !isObj(pod.spec)) return [...problems, 'pod has no spec'];
  const spec = pod.spec;
  problems.push(...volumeProblems(spec));
  const volumeNames = new Set(objs(spec.volumes).map((v) => v.name));
  const seen = new Set<unknown>();
  if (objs(spec.containers).length === 0) problems.push('spec.containers is empty');
  for (const list of ['initContainers', 'containers', 'ephemeralContainers'] as const) {
    for (const container of objs(spec[list])) {
      const where = `${list} "${String(container.name)}"`;
      if (typeof container.name !== 'string' || container.name === '')
        problems.push(`${list}: a container has no name`);
      if (seen.has(container.name)) problems.push(`${where}: duplicate container name`);
      seen.add(container.name);
      if (typeof container.image !== 'string' || container.image === '') problems.push(`${where}: no image`);
      problems.push(...containerProblems(container, list, where, volumeNames));
    }
  }
  return problems;
}

function volumeProblems(spec: Obj): string[] {
  const problems: string[] = [];
  const names = new Set<unknown>();
  for (const volume of objs(spec.volumes)) {
    if (names.has(volume.name)) problems.push(`volume "${String(volume.name)}": duplicate volume name`);
    names.add(volume.name);
    const sources = Object.keys(volume).filter((key) => key !== 'name');
    if (sources.length !== 1)
      problems.push(
        `volume "${String(volume.name)}": exactly one volume source expected, found ${sources.join(', ') || 'none'}`,
      );
  }
  return problems;
}

function containerProblems(container: Obj, list: string, where: string, volumeNames: Set<unknown>): string[] {
  const problems: string[] = [];
  const restartable = container.restartPolicy === 'Always';
  if (container.restartPolicy !== undefined && (list !== 'initContainers' || !restartable)) {
    problems.push(
      `${where}: restartPolicy ${String(container.restartPolicy)} is allowed only on init containers, and only "Always"`,
    );
  }
  if (list === 'initContainers' && !restartable) {
    for (const key of [...PROBES, 'lifecycle']) {
      if (container[key] !== undefined)
        problems.push(`${where}: ${key} is not allowed on an init container without restartPolicy Always`);
    }
  }
  if (list === 'ephemeralContainers') {
    for (const key of [...PROBES, 'ports', 'lifecycle', 'resources']) {
      if (container[key] !== undefined)
        problems.push(`${where}: ${key} is not allowed on an ephemeral container`);
    }
  }
  const mountPaths = new Set<unknown>();
  for (const mount of objs(container.volumeMounts)) {
    if (!volumeNames.has(mount.name))
      problems.push(`${where}: volumeMount "${String(mount.name)}" names no volume`);
    if (mountPaths.has(mount.mountPath))
      problems.push(`${where}: mountPath ${String(mount.mountPath)} is used twice`);
    mountPaths.add(mount.mountPath);
  }
  const portNames = new Set<string>();
  for (const port of objs(container.ports)) {
    const n = port.containerPort;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 65535)
      problems.push(`${where}: containerPort ${String(n)} is not 1-65535`);
    const host = port.hostPort;
    if (
      host !== undefined &&
      (typeof host !== 'number' || !Number.isInteger(host) || host < 0 || host > 65535)
    ) {
      problems.push(`${where}: hostPort ${String(host)} is not 0-65535`);
    }
    if (port.name !== undefined) {
      const name = String(port.name);
      if (name.length > 15 || !PORT_NAME.test(name))
        problems.push(`${where}: port name "${name}" is not an IANA service name`);
      if (portNames.has(name)) problems.push(`${where}: port name "${name}" is used twice`);
      portNames.add(name);
    }
  }
  for (const key of PROBES) {
    const probe = container[key];
    if (!isObj(probe) || !isObj(probe.httpGet)) continue;
    const port = probe.httpGet.port;
    const ok =
      typeof port === 'number'
        ? Number.isInteger(port) && port >= 1 && port <= 65535
        : portNames.has(String(port));
    if (!ok)
      problems.push(
        `${where}: ${key} port ${String(port)} is neither 1-65535 nor a named port of the container`,
      );
  }
  return problems;
}
