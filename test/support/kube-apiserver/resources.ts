/** The resources this server knows: one row each, so adding a kind is one line. */
export interface ResourceDef {
  group: string;
  version: string;
  /** Plural, lower case: the URL segment and the RBAC resource. */
  resource: string;
  singular: string;
  kind: string;
  namespaced: boolean;
  shortNames?: string[];
  /** Field selector labels the real server accepts for this resource, beyond metadata.name and metadata.namespace. */
  fieldLabels?: string[];
  /** Names are DNS-1123 labels (namespaces) rather than subdomains. */
  labelName?: boolean;
  /** DELETE answers with the object (graceful deletion) rather than a Status. */
  returnsDeletedObject?: boolean;
  /** A PUT must carry metadata.resourceVersion (the kind's strategy refuses unconditional updates): 422 without. */
  conditionalUpdateOnly?: boolean;
  /** The kind has metadata.generation: 1 on create, incremented when this top-level field changes. */
  generation?: string;
  /** Extra Table columns: header and how to compute the cell. */
  columns?: Array<{
    name: string;
    type: 'string' | 'integer';
    cell: (obj: Record<string, unknown>) => string | number;
  }>;
}

const count = (field: string) => (obj: Record<string, unknown>) =>
  Object.keys((obj[field] as Record<string, unknown> | undefined) ?? {}).length;

export const RESOURCES: ResourceDef[] = [
  {
    group: '',
    version: 'v1',
    resource: 'namespaces',
    singular: 'namespace',
    kind: 'Namespace',
    namespaced: false,
    shortNames: ['ns'],
    fieldLabels: ['status.phase'],
    labelName: true,
    returnsDeletedObject: true,
    columns: [
      {
        name: 'Status',
        type: 'string',
        cell: (o) => String((o.status as { phase?: string } | undefined)?.phase ?? 'Active'),
      },
    ],
  },
  {
    group: '',
    version: 'v1',
    resource: 'secrets',
    singular: 'secret',
    kind: 'Secret',
    namespaced: true,
    fieldLabels: ['type'],
    columns: [
      { name: 'Type', type: 'string', cell: (o) => String(o.type ?? 'Opaque') },
      { name: 'Data', type: 'integer', cell: (o) => count('data')(o) },
    ],
  },
  {
    group: '',
    version: 'v1',
    resource: 'configmaps',
    singular: 'configmap',
    kind: 'ConfigMap',
    namespaced: true,
    shortNames: ['cm'],
    columns: [{ name: 'Data', type: 'integer', cell: (o) => count('data')(o) + count('binaryData')(o) }],
  },
  {
    group: '',
    version: 'v1',
    resource: 'pods',
    singular: 'pod',
    kind: 'Pod',
    namespaced: true,
    shortNames: ['po'],
    returnsDeletedObject: true,
    generation: 'spec',
    fieldLabels: [
      'spec.nodeName',
      'spec.restartPolicy',
      'spec.schedulerName',
      'spec.serviceAccountName',
      'spec.hostNetwork',
      'status.phase',
      'status.podIP',
      'status.nominatedNodeName',
    ],
    columns: [
      {
        name: 'Status',
        type: 'string',
        cell: (o) => String((o.status as { phase?: string } | undefined)?.phase ?? 'Pending'),
      },
    ],
  },
  {
    group: '',
    version: 'v1',
    resource: 'events',
    singular: 'event',
    kind: 'Event',
    namespaced: true,
    shortNames: ['ev'],
    fieldLabels: [
      'involvedObject.kind',
      'involvedObject.namespace',
      'involvedObject.name',
      'involvedObject.uid',
      'involvedObject.apiVersion',
      'involvedObject.resourceVersion',
      'involvedObject.fieldPath',
      'reason',
      'reportingComponent',
      'source',
      'type',
    ],
  },
  {
    group: '',
    version: 'v1',
    resource: 'serviceaccounts',
    singular: 'serviceaccount',
    kind: 'ServiceAccount',
    namespaced: true,
    shortNames: ['sa'],
  },
  {
    // What the webhook's missed-injection scan takes turns with: spec.acquireTime and renewTime are MicroTimes.
    group: 'coordination.k8s.io',
    version: 'v1',
    resource: 'leases',
    singular: 'lease',
    kind: 'Lease',
    namespaced: true,
    conditionalUpdateOnly: true,
    columns: [
      {
        name: 'Holder',
        type: 'string',
        cell: (o) => String((o.spec as { holderIdentity?: string } | undefined)?.holderIdentity ?? ''),
      },
    ],
  },
  {
    group: 'admissionregistration.k8s.io',
    version: 'v1',
    resource: 'mutatingwebhookconfigurations',
    singular: 'mutatingwebhookconfiguration',
    kind: 'MutatingWebhookConfiguration',
    namespaced: false,
    generation: 'webhooks',
    columns: [
      {
        name: 'Webhooks',
        type: 'integer',
        cell: (o) => ((o.webhooks as unknown[] | undefined) ?? []).length,
      },
    ],
  },
];

export function groupVersion(def: ResourceDef): string {
  return def.group ? `${def.group}/${def.version}` : def.version;
}

export function findResource(group: string, version: string, resource: string): ResourceDef | undefined {
  return RESOURCES.find((r) => r.group === group && r.version === version && r.resource === resource);
}

/** For the direct store API: 'secrets' or 'mutatingwebhookconfigurations' (or 'resource.group'). */
export function resourceByName(name: string): ResourceDef {
  const def = RESOURCES.find((r) => r.resource === name || `${r.resource}.${r.group}` === name);
  if (!def) throw new Error(`test kube-apiserver: unknown resource "${name}"`);
  return def;
}

export function resourceByKind(apiVersion: string, kind: string): ResourceDef {
  const def = RESOURCES.find((r) => groupVersion(r) === apiVersion && r.kind === kind);
  if (!def) throw new Error(`test kube-apiserver: unknown kind ${apiVersion} ${kind}`);
  return def;
}
