import { randomBytes } from 'node:crypto';
import type { QualifiedResource } from './status.ts';
import { forbidden, unauthorized } from './status.ts';
import type { Grant } from './types.ts';

/** What RBAC sees of a request (apiserver's RequestInfo plus the user). */
export interface Attributes {
  verb: string;
  group: string;
  resource: string;
  subresource?: string;
  namespace?: string;
  /** The object's name: from the URL, or from fieldSelector=metadata.name for list and watch. */
  name?: string;
}

export interface User {
  name: string;
  /** undefined: everything is allowed (system:masters). */
  grants?: Grant[];
}

/** Bearer tokens to users, and RBAC-like authorization with the real server's Forbidden messages. */
export class Authorizer {
  readonly #users = new Map<string, User>();

  addUser(user: User): string {
    const token = randomBytes(24).toString('base64url');
    this.#users.set(token, user);
    return token;
  }

  authenticate(authorization: string | undefined): User {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
    const user = m ? this.#users.get(m[1] as string) : undefined;
    if (!user) throw unauthorized();
    return user;
  }

  authorize(user: User, a: Attributes): void {
    if (!user.grants || user.grants.some((g) => allows(g, a))) return;
    const resource = a.subresource ? `${a.resource}/${a.subresource}` : a.resource;
    const scope = a.namespace ? `in the namespace "${a.namespace}"` : 'at the cluster scope';
    const qr: QualifiedResource = { resource: a.resource, group: a.group };
    throw forbidden(
      qr,
      a.name,
      `User "${user.name}" cannot ${a.verb} resource "${resource}" in API group "${a.group}" ${scope}`,
    );
  }
}

function allows(g: Grant, a: Attributes): boolean {
  const resource = a.subresource ? `${a.resource}/${a.subresource}` : a.resource;
  if (!g.verbs.includes(a.verb) && !g.verbs.includes('*')) return false;
  if (g.resource !== resource && g.resource !== '*') return false;
  if ((g.group ?? '') !== a.group && g.group !== '*') return false;
  if (g.namespace !== undefined && g.namespace !== a.namespace) return false;
  // RBAC resourceNames never match a request without a name (a plain list, watch or create).
  if (g.names && (a.name === undefined || !g.names.includes(a.name))) return false;
  return true;
}
