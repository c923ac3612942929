/** A metav1.Status failure, thrown by the store and the handlers and written as the response body. */
export interface StatusBody {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: Record<string, never>;
  status: 'Failure';
  message: string;
  /** Absent when the real server has none: an error that is not an API status error (StatusReasonUnknown). */
  reason?: string;
  details?: Record<string, unknown>;
  code: number;
}

export class KubeError extends Error {
  readonly status: StatusBody;
  /** `reason` '' leaves it out of the body, as the real server does for errors that carry none. */
  constructor(code: number, reason: string, message: string, details?: Record<string, unknown>) {
    super(message);
    this.status = {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message,
      ...(reason ? { reason } : {}),
      code,
    };
    if (details) this.status.details = details;
  }
  get code(): number {
    return this.status.code;
  }
}

/** Identifies a resource the way apimachinery's GroupResource prints: `secrets`, `mutatingwebhookconfigurations.admissionregistration.k8s.io`. */
export interface QualifiedResource {
  resource: string;
  group: string;
}

export function qualified(r: QualifiedResource): string {
  return r.group ? `${r.resource}.${r.group}` : r.resource;
}

function details(r: QualifiedResource, name?: string): Record<string, unknown> {
  const d: Record<string, unknown> = {};
  if (name) d.name = name;
  if (r.group) d.group = r.group;
  d.kind = r.resource;
  return d;
}

export function notFound(r: QualifiedResource, name: string): KubeError {
  return new KubeError(404, 'NotFound', `${qualified(r)} "${name}" not found`, details(r, name));
}

export function alreadyExists(r: QualifiedResource, name: string): KubeError {
  return new KubeError(409, 'AlreadyExists', `${qualified(r)} "${name}" already exists`, details(r, name));
}

export function conflict(r: QualifiedResource, name: string, why?: string): KubeError {
  const reason =
    why ?? 'the object has been modified; please apply your changes to the latest version and try again';
  return new KubeError(
    409,
    'Conflict',
    `Operation cannot be fulfilled on ${qualified(r)} "${name}": ${reason}`,
    details(r, name),
  );
}

export function forbidden(r: QualifiedResource, name: string | undefined, why: string): KubeError {
  const subject = name ? `${qualified(r)} "${name}"` : qualified(r);
  return new KubeError(403, 'Forbidden', `${subject} is forbidden: ${why}`, details(r, name));
}

export function unauthorized(): KubeError {
  return new KubeError(401, 'Unauthorized', 'Unauthorized');
}

export function badRequest(message: string): KubeError {
  return new KubeError(400, 'BadRequest', message);
}

export function expired(message: string): KubeError {
  return new KubeError(410, 'Expired', message);
}

export function invalid(
  kind: string,
  name: string,
  field: string,
  value: string,
  why: string,
  group = '',
): KubeError {
  const message = `Invalid value: ${JSON.stringify(value)}: ${why}`;
  const d: Record<string, unknown> = {
    name,
    kind,
    causes: [{ reason: 'FieldValueInvalid', message, field }],
  };
  if (group) d.group = group;
  return new KubeError(
    422,
    'Invalid',
    `${kind}${group ? `.${group}` : ''} "${name}" is invalid: ${field}: ${message}`,
    d,
  );
}

/** One field error of a 422 Invalid, as apimachinery's field.Error: `Required value`, `Invalid value: ...`. */
export interface FieldCause {
  reason: 'FieldValueRequired' | 'FieldValueInvalid' | 'FieldValueForbidden';
  message: string;
  field: string;
}

/** A 422 Invalid with several causes: `Kind "name" is invalid: [field: message, field: message]` (no brackets for one). */
export function invalidCauses(kind: string, name: string, causes: FieldCause[], group = ''): KubeError {
  const parts = causes.map((c) => `${c.field}: ${c.message}`);
  const list = parts.length === 1 ? (parts[0] as string) : `[${parts.join(', ')}]`;
  const d: Record<string, unknown> = { name, kind, causes };
  if (group) d.group = group;
  return new KubeError(422, 'Invalid', `${kind}${group ? `.${group}` : ''} "${name}" is invalid: ${list}`, d);
}

export function methodNotAllowed(): KubeError {
  return new KubeError(
    405,
    'MethodNotAllowed',
    'the server does not allow this method on the requested resource',
  );
}

export function pathNotFound(): KubeError {
  return new KubeError(404, 'NotFound', 'the server could not find the requested resource');
}

const REASON_BY_CODE: Record<number, [string, string]> = {
  400: ['BadRequest', 'the server rejected our request for an unknown reason'],
  401: ['Unauthorized', 'Unauthorized'],
  403: ['Forbidden', 'forbidden'],
  404: ['NotFound', 'the server could not find the requested resource'],
  409: ['Conflict', 'the server reported a conflict'],
  410: ['Gone', 'the requested resource is no longer available'],
  422: ['Invalid', 'the server rejected our request due to an error in our request'],
  429: ['TooManyRequests', 'the server has received too many requests and has asked us to try again later'],
  500: [
    'InternalError',
    'an error on the server ("injected fault") has prevented the request from succeeding',
  ],
  503: ['ServiceUnavailable', 'the server is currently unable to handle the request'],
  504: [
    'Timeout',
    'the server was unable to return a response in the time allotted, but may still be processing the request',
  ],
};

/** The Status the real server sends for a bare HTTP code (used by fault injection). */
export function statusForCode(code: number): KubeError {
  const [reason, message] = REASON_BY_CODE[code] ?? ['InternalError', `injected fault: HTTP ${code}`];
  const err = new KubeError(code, reason, message);
  if (code === 429 || code === 503) err.status.details = { retryAfterSeconds: 1 };
  return err;
}
