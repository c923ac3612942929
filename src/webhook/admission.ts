import { INTERNAL_ERROR, injectPod, type OptIn } from '../injection/inject.ts';
import type { InjectorConfig } from '../injection/config.ts';
import { isObject } from '../injection/json.ts';

/**
 * The AdmissionReview envelope: decode the request, call the pure injection core, encode the answer.
 * No I/O here, so every branch is tested without a socket.
 */

export const DECISIONS = ['injected', 'skipped', 'denied', 'error'] as const;
export type Decision = (typeof DECISIONS)[number];

export interface ReviewSummary {
  uid: string;
  namespace: string | undefined;
  /** metadata.name, or `generateName*` for pods made by controllers. */
  pod: string | undefined;
  operation: string | undefined;
  dryRun: boolean;
  decision: Decision;
  /** Why it was skipped, denied or failed. */
  reason?: string;
  warnings: number;
  /** An internal error, for the log only. */
  error?: unknown;
}

export type AdmissionAnswer =
  | { statusCode: 200; body: AdmissionReviewResponse; summary: ReviewSummary }
  | { statusCode: 400; message: string };

export interface AdmissionReviewResponse {
  apiVersion: 'admission.k8s.io/v1';
  kind: 'AdmissionReview';
  response: {
    uid: string;
    allowed: boolean;
    status?: { code: number; message: string; reason?: string };
    patchType?: 'JSONPatch';
    patch?: string;
    warnings?: string[];
  };
}

type Json = Record<string, unknown>;

/**
 * The answer as JSON text, the same text as JSON.stringify(body), without JSON.stringify scanning the patch (most
 * of the answer) for characters to escape: it is base64, which has none, and review() puts it last in response.
 */
export function encodeReview(body: AdmissionReviewResponse): string {
  const { patch, ...rest } = body.response;
  if (patch === undefined) return JSON.stringify(body);
  const head = JSON.stringify({ ...body, response: rest });
  // head ends with the closing braces of response and of the review: the patch goes in before them.
  return `${head.slice(0, -2)},"patch":"${patch}"}}`;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

const EXPECTED =
  'expected an AdmissionReview {"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{...}}';

/** Checks the envelope; returns a message for a 400 or the request. */
function decode(body: unknown): { request: Json } | { message: string } {
  if (!isObject(body)) return { message: `the body is not a JSON object: ${EXPECTED}` };
  if (body.kind !== 'AdmissionReview')
    return { message: `kind is ${JSON.stringify(body.kind)}, not AdmissionReview: ${EXPECTED}` };
  if (body.apiVersion !== 'admission.k8s.io/v1') {
    return {
      message: `apiVersion ${JSON.stringify(body.apiVersion)} is not supported: only admission.k8s.io/v1 (set admissionReviewVersions: [v1] in the MutatingWebhookConfiguration)`,
    };
  }
  if (!isObject(body.request)) return { message: `the AdmissionReview has no request object: ${EXPECTED}` };
  const uid = body.request.uid;
  if (typeof uid !== 'string' || uid === '')
    return { message: 'request.uid is missing or not a string: the API server always sends one' };
  return { request: body.request };
}

function isPodCreate(request: Json): { pod: true } | { pod: false; reason: string } {
  const kind = isObject(request.kind) ? request.kind : {};
  if (kind.kind !== 'Pod' || (kind.group ?? '') !== '')
    return { pod: false, reason: `not a Pod (${str(kind.kind) ?? 'unknown kind'})` };
  if (str(request.subResource)) return { pod: false, reason: `subresource ${String(request.subResource)}` };
  if (request.operation !== 'CREATE') return { pod: false, reason: `operation ${String(request.operation)}` };
  return { pod: true };
}

function podLabel(object: unknown): string | undefined {
  if (!isObject(object) || !isObject(object.metadata)) return undefined;
  const name = str(object.metadata.name);
  if (name) return name;
  const generate = str(object.metadata.generateName);
  return generate ? `${generate}*` : undefined;
}

export function review(body: unknown, optIn: OptIn, config: InjectorConfig): AdmissionAnswer {
  const decoded = decode(body);
  if ('message' in decoded) return { statusCode: 400, message: decoded.message };
  const { request } = decoded;
  const uid = request.uid as string;
  const object = request.object;
  const namespace =
    str(request.namespace) ??
    (isObject(object) && isObject(object.metadata) ? str(object.metadata.namespace) : undefined);
  const summary: ReviewSummary = {
    uid,
    namespace,
    pod: podLabel(object),
    operation: str(request.operation),
    dryRun: request.dryRun === true,
    decision: 'skipped',
    warnings: 0,
  };
  const answer = (response: Omit<AdmissionReviewResponse['response'], 'uid'>): AdmissionAnswer => {
    summary.warnings = response.warnings?.length ?? 0;
    return {
      statusCode: 200,
      body: { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid, ...response } },
      summary,
    };
  };
  const warn = (warnings: string[]): { warnings?: string[] } => (warnings.length ? { warnings } : {});

  const target = isPodCreate(request);
  if (!target.pod) {
    summary.reason = target.reason;
    return answer({ allowed: true });
  }
  if (!isObject(object))
    return {
      statusCode: 400,
      message: 'request.object is missing or not an object: a Pod CREATE review carries the pod',
    };

  // dryRun changes nothing: the webhook has no side effects, so the answer is the same.
  const outcome = injectPod(object, { namespace, optIn }, config);
  switch (outcome.action) {
    case 'skip':
      // An internal error is never a denial: the pod is admitted as it is, with a warning; the cause is logged and counted.
      if (outcome.reason === INTERNAL_ERROR) {
        summary.decision = 'error';
        summary.error = outcome.error;
      }
      summary.reason = outcome.reason;
      return answer({ allowed: true, ...warn(outcome.warnings) });
    case 'deny':
      summary.decision = 'denied';
      summary.reason = outcome.message;
      return answer({
        allowed: false,
        status: { code: 400, reason: 'BadRequest', message: outcome.message },
        ...warn(outcome.warnings),
      });
    case 'patch':
      summary.decision = 'injected';
      summary.reason = `${outcome.sources} source(s)`;
      return answer({
        allowed: true,
        patchType: 'JSONPatch',
        ...warn(outcome.warnings),
        // Last, for encodeReview.
        patch: Buffer.from(JSON.stringify(outcome.patch)).toString('base64'),
      });
  }
}
