import { ApiException } from '@kubernetes/client-node';

/** The HTTP status of a failed call, when it came from the API server. */
export function apiStatus(err: unknown): number | undefined {
  return err instanceof ApiException ? (err.code as number) : undefined;
}

/**
 * A failed API call for a log line, without its body's data: the status code and the Status message only (a
 * Secret's content must never reach a log line, and a failed write may echo it).
 */
export function describeApiError(err: unknown): { code?: number; reason: string } {
  if (err instanceof ApiException) {
    const body = (typeof err.body === 'string' ? safeJson(err.body) : err.body) as
      { message?: unknown } | undefined;
    return {
      code: err.code as number,
      reason: typeof body?.message === 'string' ? body.message : `HTTP ${String(err.code)}`,
    };
  }
  return { reason: err instanceof Error ? err.message : String(err) };
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
