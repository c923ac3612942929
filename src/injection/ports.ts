import { objectsOf, stringOf, type JsonObject } from './json.ts';

export type PortChoice = { ok: true; port: number; warnings: string[] } | { ok: false; problem: string };

/** Ports the pod's containers declare, with the container that declares each. */
export function declaredPorts(spec: JsonObject): Map<number, string> {
  const ports = new Map<number, string>();
  for (const key of ['initContainers', 'containers', 'ephemeralContainers']) {
    for (const container of objectsOf(spec[key])) {
      for (const port of objectsOf(container.ports)) {
        if (typeof port.containerPort === 'number' && !ports.has(port.containerPort)) {
          ports.set(port.containerPort, `container "${stringOf(container.name) ?? '?'}"`);
        }
      }
    }
  }
  return ports;
}

/**
 * The sidecar's port: the preferred one, or the next one no container uses. `taken` adds ports known to be in
 * use without a declaration (the reload URL's port is the app's). A fixed port (from the annotation) never moves.
 */
export function choosePort(
  spec: JsonObject,
  preferred: number,
  fixed: boolean,
  taken: Map<number, string>,
): PortChoice {
  const used = new Map([...taken, ...declaredPorts(spec)]);
  const owner = used.get(preferred);
  if (owner === undefined) return { ok: true, port: preferred, warnings: [] };
  if (fixed) return { ok: false, problem: `port ${preferred} is already used by ${owner}` };
  for (let port = preferred + 1; port <= 65535; port++) {
    if (!used.has(port)) {
      return {
        ok: true,
        port,
        warnings: [
          `port ${preferred} is used by ${owner}; the config-reloader sidecar listens on ${port} instead`,
        ],
      };
    }
  }
  return { ok: false, problem: `no free port from ${preferred} to 65535` };
}
