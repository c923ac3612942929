import type { ResourceDef } from './resources.ts';
import type { KubeObject } from './types.ts';

/** How much of each object a Table row carries (the includeObject query parameter). */
export type IncludeObject = 'None' | 'Metadata' | 'Object';

/** apimachinery's duration.HumanDuration, the AGE column's format. */
export function humanDuration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 10) return s % 60 === 0 ? `${m}m` : `${m}m${s % 60}s`;
  if (m < 180) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 8) return m % 60 === 0 ? `${h}h` : `${h}h${m % 60}m`;
  if (h < 48) return `${h}h`;
  return `${Math.floor(h / 24)}d`;
}

function columns(def: ResourceDef): Array<Record<string, unknown>> {
  return [
    {
      name: 'Name',
      type: 'string',
      format: 'name',
      description: 'Name must be unique within a namespace.',
      priority: 0,
    },
    ...(def.columns ?? []).map((c) => ({
      name: c.name,
      type: c.type,
      format: '',
      description: '',
      priority: 0,
    })),
    {
      name: 'Age',
      type: 'string',
      format: '',
      description:
        'CreationTimestamp is a timestamp representing the server time when this object was created.',
      priority: 0,
    },
  ];
}

function row(def: ResourceDef, obj: KubeObject, include: IncludeObject): Record<string, unknown> {
  const created = Date.parse(String(obj.metadata.creationTimestamp ?? ''));
  const cells = [
    obj.metadata.name,
    ...(def.columns ?? []).map((c) => c.cell(obj)),
    Number.isNaN(created) ? '<unknown>' : humanDuration(Date.now() - created),
  ];
  const r: Record<string, unknown> = { cells };
  if (include === 'Object') r.object = obj;
  else if (include === 'Metadata')
    r.object = { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: obj.metadata };
  return r;
}

/** A meta.k8s.io Table: what kubectl asks for (Accept: application/json;as=Table) to print columns. */
export function toTable(
  def: ResourceDef,
  objects: KubeObject[],
  listMeta: Record<string, unknown>,
  include: IncludeObject,
  apiVersion: string,
): Record<string, unknown> {
  return {
    kind: 'Table',
    apiVersion,
    metadata: listMeta,
    columnDefinitions: columns(def),
    rows: objects.map((o) => row(def, o, include)),
  };
}
