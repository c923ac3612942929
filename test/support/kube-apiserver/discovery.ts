import type { ResourceDef } from './resources.ts';
import { RESOURCES, groupVersion } from './resources.ts';

const VERBS = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'];

export const VERSION_INFO = {
  major: '1',
  minor: '32',
  gitVersion: 'v1.32.0-test',
  gitCommit: '0000000000000000000000000000000000000000',
  gitTreeState: 'clean',
  buildDate: '2025-01-01T00:00:00Z',
  goVersion: 'go1.23.4',
  compiler: 'gc',
  platform: 'linux/amd64',
};

function apiResource(def: ResourceDef): Record<string, unknown> {
  const r: Record<string, unknown> = {
    name: def.resource,
    singularName: def.singular,
    namespaced: def.namespaced,
    kind: def.kind,
    verbs: VERBS,
  };
  if (def.shortNames) r.shortNames = def.shortNames;
  return r;
}

/** /api: the legacy group's versions. */
export function apiVersions(serverAddress: string): Record<string, unknown> {
  return {
    kind: 'APIVersions',
    versions: ['v1'],
    serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress }],
  };
}

function groupNames(): string[] {
  return [...new Set(RESOURCES.filter((r) => r.group !== '').map((r) => r.group))];
}

function apiGroup(name: string): Record<string, unknown> {
  const versions = [...new Set(RESOURCES.filter((r) => r.group === name).map((r) => r.version))].map(
    (version) => ({
      groupVersion: `${name}/${version}`,
      version,
    }),
  );
  return { name, versions, preferredVersion: versions[0] };
}

/** /apis: every named group. */
export function apiGroupList(): Record<string, unknown> {
  return { kind: 'APIGroupList', apiVersion: 'v1', groups: groupNames().map(apiGroup) };
}

/** /apis/GROUP, or undefined for an unknown group. */
export function apiGroupDoc(group: string): Record<string, unknown> | undefined {
  if (!groupNames().includes(group)) return undefined;
  return { kind: 'APIGroup', apiVersion: 'v1', ...apiGroup(group) };
}

/** /api/v1 or /apis/GROUP/VERSION, or undefined for an unknown group version. */
export function apiResourceList(group: string, version: string): Record<string, unknown> | undefined {
  const defs = RESOURCES.filter((r) => r.group === group && r.version === version);
  if (defs.length === 0) return undefined;
  return {
    kind: 'APIResourceList',
    apiVersion: 'v1',
    groupVersion: groupVersion(defs[0] as ResourceDef),
    resources: defs.map(apiResource),
  };
}
