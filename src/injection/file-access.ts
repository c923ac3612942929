import { isObject, objectsOf, stringOf, type JsonObject } from './json.ts';
import { SECURITY_CONTEXT } from './build.ts';
import type { ConvertedVolume } from './sources.ts';
import { DEFAULT_FILE_MODE, type SourceSpec } from '../shared/source-spec.ts';

/**
 * Who can read the files the sidecar writes. The kubelet writes a Secret/ConfigMap volume's files as root; with
 * the pod's fsGroup it gives them that group and adds group-read (mode | 0440, the volume being read-only), and
 * every container of the pod has the fsGroup among its groups. The sidecar writes as its own user (65532, or the
 * user of the container it signals: process-targets.ts) and its own group 65532; told the fsGroup (`--fs-group`), it does what
 * the kubelet does. Without an fsGroup its files belong to the sidecar's user and group, so an app running as
 * another user reads them only through the group bits (when in that group) or the "other" bits of their mode.
 */

/** Who owns the files the sidecar writes: its own user and group. */
export interface FileOwner {
  uid: number;
  gid: number;
}

export const DEFAULT_OWNER: FileOwner = { uid: SECURITY_CONTEXT.runAsUser, gid: SECURITY_CONTEXT.runAsGroup };
/** The largest group ID the API server accepts in fsGroup. */
const MAX_ID = 2147483647;

function isId(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= MAX_ID;
}

/** spec.securityContext.fsGroup when it is a valid group ID. */
export function podFsGroup(spec: JsonObject): number | undefined {
  const context = spec.securityContext;
  return isObject(context) && isId(context.fsGroup) ? context.fsGroup : undefined;
}

function formatMode(mode: number): string {
  return '0' + mode.toString(8).padStart(3, '0');
}

/** The modes the volume's files get, as the kubelet sets them: each item's mode, else defaultMode, else 0644. */
function fileModes(spec: SourceSpec): number[] {
  const fallback = spec.defaultMode ?? DEFAULT_FILE_MODE;
  if (spec.items === undefined) return [fallback];
  return [...new Set(spec.items.map((item) => item.mode ?? fallback))];
}

/** A capability name as the container runtime reads it: upper case, with or without the CAP_ prefix. */
function capabilities(value: unknown): Set<string> {
  return new Set(
    (Array.isArray(value) ? value : [])
      .filter((name): name is string => typeof name === 'string')
      .map((name) => name.toUpperCase().replace(/^CAP_/, '')),
  );
}

/** Root reads any file while it keeps CAP_DAC_OVERRIDE (the runtime's default) or has CAP_DAC_READ_SEARCH. */
function rootBypassesModes(container: JsonObject): boolean {
  const context = isObject(container.securityContext) ? container.securityContext : {};
  const caps = isObject(context.capabilities) ? context.capabilities : {};
  const add = capabilities(caps.add);
  if (add.has('ALL') || add.has('DAC_OVERRIDE') || add.has('DAC_READ_SEARCH')) return true;
  const drop = capabilities(caps.drop);
  return !drop.has('ALL') && !drop.has('DAC_OVERRIDE');
}

/** The user and group a container runs as, as far as the pod spec says: its own securityContext over the pod's. */
export function containerIds(container: JsonObject, pod: JsonObject): { uid?: number; gid?: number } {
  const own = isObject(container.securityContext) ? container.securityContext : {};
  const podContext = isObject(pod.securityContext) ? pod.securityContext : {};
  const pick = (key: 'runAsUser' | 'runAsGroup'): number | undefined =>
    isId(own[key]) ? own[key] : isId(podContext[key]) ? podContext[key] : undefined;
  const uid = pick('runAsUser');
  const gid = pick('runAsGroup');
  return { ...(uid !== undefined ? { uid } : {}), ...(gid !== undefined ? { gid } : {}) };
}

/** Whether the container's process can read a file of the sidecar with this mode; undefined when its user is unknown (the image's). */
function canRead(
  container: JsonObject,
  pod: JsonObject,
  mode: number,
  owner: FileOwner,
): boolean | undefined {
  const podContext = isObject(pod.securityContext) ? pod.securityContext : {};
  const { uid, gid } = containerIds(container, pod);
  if (uid === undefined) return undefined;
  if (uid === 0 && rootBypassesModes(container)) return true;
  // The owner's bits, else the group's when the process is in the file's group, else the others'.
  if (uid === owner.uid) return (mode & 0o400) !== 0;
  const groups = [
    gid,
    ...(Array.isArray(podContext.supplementalGroups) ? podContext.supplementalGroups : []),
  ];
  if (groups.includes(owner.gid)) return (mode & 0o040) !== 0;
  return (mode & 0o004) !== 0;
}

function describeUser(container: JsonObject, pod: JsonObject): string {
  const own = isObject(container.securityContext) ? container.securityContext : {};
  const podContext = isObject(pod.securityContext) ? pod.securityContext : {};
  return `runAsUser ${String(isId(own.runAsUser) ? own.runAsUser : podContext.runAsUser)}`;
}

/**
 * One warning for each converted volume whose files a container that mounts it will not be able to read (as far
 * as the pod spec tells: a container without runAsUser runs as its image's user, which is unknown here).
 */
export function unreadableFileWarnings(
  spec: JsonObject,
  converted: ConvertedVolume[],
  fsGroup: number | undefined,
  owner: FileOwner = DEFAULT_OWNER,
): string[] {
  // With an fsGroup the files get that group and group-read, and every container of the pod is in that group.
  if (fsGroup !== undefined) return [];
  const warnings: string[] = [];
  // Who mounts each volume, in one pass over the mounts: asking every container about every volume made this
  // quadratic in the pod's size (200 containers and volumes: 5 ms per review; docs/benchmarks.md, scaling).
  const mountedBy = new Map<string, JsonObject[]>();
  for (const container of [...objectsOf(spec.initContainers), ...objectsOf(spec.containers)]) {
    const names = new Set(objectsOf(container.volumeMounts).map((mount) => mount.name));
    for (const name of names) {
      if (typeof name !== 'string') continue;
      const list = mountedBy.get(name);
      if (list) list.push(container);
      else mountedBy.set(name, [container]);
    }
  }
  for (const volume of converted) {
    const containers = mountedBy.get(volume.name);
    if (containers === undefined) continue;
    const modes = fileModes(volume.spec);
    const blocked: string[] = [];
    const unreadable = new Set<number>();
    for (const container of containers) {
      const denied = modes.filter((mode) => canRead(container, spec, mode, owner) === false);
      if (denied.length === 0) continue;
      blocked.push(`container "${stringOf(container.name) ?? ''}" (${describeUser(container, spec)})`);
      for (const mode of denied) unreadable.add(mode);
    }
    if (blocked.length === 0) continue;
    const modeText = [...unreadable].map(formatMode).join(', ');
    warnings.push(
      `volume "${volume.name}": its files get mode ${modeText} and, as the pod sets no fsGroup, belong to the config-reloader sidecar's user ${owner.uid}${owner.uid === DEFAULT_OWNER.uid ? '' : ` (the user of the container it signals)`}, so ${blocked.join(', ')} cannot read them; set spec.securityContext.fsGroup (the files then get that group with group-read, as the kubelet does), or give the volume a mode that others can read, such as 0644 (or one with group-read, such as 0440, and group ${owner.gid} in the container's runAsGroup or the pod's supplementalGroups)`,
    );
  }
  return warnings;
}
