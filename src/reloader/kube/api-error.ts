/** The API server's `Status` object, as sent with error responses and in watch ERROR events. */
export interface KubeStatus {
  kind?: string;
  status?: string;
  message?: string;
  reason?: string;
  code?: number;
}

/** A non-2xx answer from the API server (or a watch ERROR event), with its Status when it sent one. */
export class ApiError extends Error {
  readonly code: number;
  readonly status: KubeStatus | undefined;
  constructor(code: number, status: KubeStatus | undefined, context: string) {
    super(
      `${context}: HTTP ${code}${status?.reason ? ` ${status.reason}` : ''}${status?.message ? `: ${status.message}` : ''}`,
    );
    this.name = 'ApiError';
    this.code = code;
    this.status = status;
  }
}

export function isStatus(value: unknown): value is KubeStatus {
  return typeof value === 'object' && value !== null && (value as KubeStatus).kind === 'Status';
}

/** Parses an error body: the Status JSON when it is one, else nothing (bodies of proxies are not logged). */
export function parseStatus(body: string): KubeStatus | undefined {
  try {
    const value: unknown = JSON.parse(body);
    return isStatus(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

export function isGone(err: unknown): boolean {
  return err instanceof ApiError && err.code === 410;
}

const USER_RE = /User "([^"]*)"/;
const SA_PREFIX = 'system:serviceaccount:';

/** Who the API server says we are, from a 403 message such as `... User "system:serviceaccount:shop:default" cannot ...`. */
export function forbiddenSubject(message: string | undefined): string {
  const user = USER_RE.exec(message ?? '')?.[1];
  if (user === undefined) return "the reloader's credentials";
  if (user.startsWith(SA_PREFIX)) {
    const [ns, name] = user.slice(SA_PREFIX.length).split(':');
    if (ns && name) return `serviceaccount ${ns}/${name}`;
  }
  return `user "${user}"`;
}

/**
 * The one line an operator needs after a 403: which identity lacks which permission on which object, e.g.
 * `serviceaccount shop/default cannot watch secrets "app-config" in namespace shop: grant get, list, watch`.
 * "watch" names what the reloader does (it lists, then watches); the grant lists every verb it uses.
 */
export function describeForbidden(err: ApiError, resource: string, name: string, namespace: string): string {
  return `${forbiddenSubject(err.status?.message)} cannot watch ${resource} "${name}" in namespace ${namespace}: grant get, list, watch`;
}

/** What failed, without data: the API's Status message or the network error code. */
export function describeError(err: unknown): string {
  if (err instanceof ApiError) return err.message;
  const e = err as NodeJS.ErrnoException;
  return e.code
    ? `${e.code}${e.message && !e.message.includes(e.code) ? ` ${e.message}` : ''}`
    : String(e.message ?? err);
}
