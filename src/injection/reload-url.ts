/** Validation of the reload endpoint the sidecar calls; the webhook itself never calls it. */

export const RELOAD_METHODS = ['GET', 'POST', 'PUT'] as const;
export type ReloadMethod = (typeof RELOAD_METHODS)[number];

/** 127.0.0.0/8, ::1 and localhost: addresses that stay inside the pod's network namespace. */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.toLowerCase();
  if (host === 'localhost' || host === '[::1]' || host === '::1') return true;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** `port`: the URL's port, or its scheme's default (the app listens there, so no sidecar port may take it). */
export type UrlCheck = { ok: true; url: string; port: number } | { ok: false; problem: string };

/**
 * The normalised URL, or why it cannot be a reload URL. The metrics URL of the confirmation follows the same rule
 * (`what` names it in the problem): either one is a request the sidecar makes on an annotation's word. The problem
 * gives no example URL: the knob's fix (knob-table.ts) gives one, and a message gives one example only.
 */
export function checkReloadUrl(
  text: string,
  allowed: 'loopback' | 'any',
  what: 'reload URL' | 'metrics URL' = 'reload URL',
): UrlCheck {
  let url: URL;
  try {
    url = new URL(text.trim());
  } catch {
    return { ok: false, problem: `"${text}" is not a valid URL` };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return { ok: false, problem: `"${text}" must use http or https, not ${url.protocol.replace(/:$/, '')}` };
  }
  if (url.username || url.password) {
    return {
      ok: false,
      problem: `"${url.host}${url.pathname}" must not contain credentials (they would be visible in the pod spec)`,
    };
  }
  if (allowed === 'loopback' && !isLoopbackHost(url.hostname)) {
    return {
      ok: false,
      problem: `host "${url.hostname}" is not a loopback address: the ${what} must point into the pod itself (127.0.0.1, ::1 or localhost)`,
    };
  }
  const port = url.port !== '' ? Number(url.port) : url.protocol === 'https:' ? 443 : 80;
  return { ok: true, url: url.href, port };
}

export function parseReloadMethod(text: string): ReloadMethod | undefined {
  const method = text.trim().toUpperCase();
  return (RELOAD_METHODS as readonly string[]).includes(method) ? (method as ReloadMethod) : undefined;
}
