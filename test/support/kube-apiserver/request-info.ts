/** A resource request decoded from its URL, as apiserver's RequestInfoFactory does it. */
export interface ResourceRequest {
  group: string;
  version: string;
  resource: string;
  subresource?: string;
  namespace?: string;
  name?: string;
  /** get, list, watch, create, update, patch, delete, deletecollection. */
  verb: string;
}

export type ParsedPath =
  | { kind: 'resource'; req: ResourceRequest }
  | { kind: 'discovery'; group: string; version?: string }
  | { kind: 'other' };

const NAMESPACE_SUBRESOURCES = new Set(['status', 'finalize']);

function isWatch(query: URLSearchParams): boolean {
  const w = query.get('watch');
  return w === 'true' || w === '1';
}

export function parsePath(method: string, pathname: string, query: URLSearchParams): ParsedPath {
  const parts = pathname
    .split('/')
    .filter((p) => p !== '')
    .map(decodeURIComponent);
  let group: string;
  let version: string | undefined;
  let rest: string[];
  if (parts[0] === 'api') {
    group = '';
    version = parts[1];
    rest = parts.slice(2);
  } else if (parts[0] === 'apis' && parts.length >= 2) {
    group = parts[1] as string;
    version = parts[2];
    rest = parts.slice(3);
  } else return { kind: 'other' };
  if (version === undefined || rest.length === 0) return { kind: 'discovery', group, version };

  let legacyWatch = false;
  if (rest[0] === 'watch') {
    legacyWatch = true;
    rest = rest.slice(1);
  }
  let namespace: string | undefined;
  if (rest[0] === 'namespaces' && rest.length > 1) {
    namespace = rest[1];
    if (rest.length > 2 && !NAMESPACE_SUBRESOURCES.has(rest[2] as string)) rest = rest.slice(2);
  }
  const [resource, name, subresource] = rest as [string, string | undefined, string | undefined];
  let verb: string;
  switch (method) {
    case 'GET':
    case 'HEAD':
      verb = legacyWatch || isWatch(query) ? 'watch' : name ? 'get' : 'list';
      break;
    case 'POST':
      verb = 'create';
      break;
    case 'PUT':
      verb = 'update';
      break;
    case 'PATCH':
      verb = 'patch';
      break;
    case 'DELETE':
      verb = name ? 'delete' : 'deletecollection';
      break;
    default:
      verb = method.toLowerCase();
  }
  const req: ResourceRequest = { group, version, resource, verb };
  if (namespace !== undefined) req.namespace = namespace;
  if (name !== undefined) req.name = name;
  if (subresource !== undefined) req.subresource = subresource;
  return { kind: 'resource', req };
}
