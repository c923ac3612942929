import { createHash } from 'node:crypto';
import type { ResourceDef } from './resources.ts';
import { RESOURCES } from './resources.ts';

/**
 * Just enough OpenAPI v3 for kubectl: it reads each group version's PATCH operations to learn that the
 * server supports `fieldValidation` (so `kubectl apply` validates server side instead of downloading schemas).
 * There are no component schemas, so kubectl builds strategic merge patches from its compiled-in types.
 */
function gvPath(def: ResourceDef): string {
  return def.group ? `apis/${def.group}/${def.version}` : `api/${def.version}`;
}

function gvDocument(gv: string): Record<string, unknown> {
  const paths: Record<string, unknown> = {};
  for (const def of RESOURCES.filter((r) => gvPath(r) === gv)) {
    const base = `/${gv}${def.namespaced ? '/namespaces/{namespace}' : ''}/${def.resource}/{name}`;
    paths[base] = {
      patch: {
        operationId: `patch${def.kind}`,
        'x-kubernetes-action': 'patch',
        'x-kubernetes-group-version-kind': { group: def.group, version: def.version, kind: def.kind },
        parameters: ['dryRun', 'fieldManager', 'fieldValidation', 'force'].map((name) => ({
          name,
          in: 'query',
          schema: { type: 'string' },
        })),
        responses: { '200': { description: 'OK' } },
      },
    };
  }
  return { openapi: '3.0.0', info: { title: 'Kubernetes', version: 'v1.32.0' }, paths };
}

function hashOf(doc: unknown): string {
  return createHash('sha512').update(JSON.stringify(doc)).digest('hex').toUpperCase();
}

/** /openapi/v3 (the index) and /openapi/v3/<group version>; undefined (404) for anything else, including /openapi/v2. */
export function openapiDocument(path: string): unknown {
  const gvs = [...new Set(RESOURCES.map(gvPath))];
  if (path === '/openapi/v3') {
    const paths: Record<string, unknown> = {};
    for (const gv of gvs)
      paths[gv] = { serverRelativeURL: `/openapi/v3/${gv}?hash=${hashOf(gvDocument(gv))}` };
    return { paths };
  }
  const gv = path.replace(/^\/openapi\/v3\//, '');
  return gvs.includes(gv) ? gvDocument(gv) : undefined;
}
