import type { Agent as HttpAgent } from 'node:http';
import type { ReloadConfig, SignalConfig } from './config.ts';
import type { ContainerProcess, ContainerSignal } from './processes.ts';

// getBuiltinModule, not an import: an ES import of node:http evaluates its lazy web-API getters, which load undici,
// http2, zlib and web streams the reloader never uses (about 3 MiB per pod, docs/benchmarks.md).
const http = process.getBuiltinModule('node:http');
const https = process.getBuiltinModule('node:https');

/** What one delivery of "reload now" came to. */
type DeliveryResult =
  /** The app was told: a 2xx, or the signal sent. `fields` go on the log line. */
  | { outcome: 'delivered'; fields: Record<string, unknown> }
  /** The app answered an error the same request will get again (a 4xx other than 408, 425, 429). */
  | { outcome: 'refused'; status: number }
  /** A 5xx: retried, unless the app's metrics say it rejected the config (a synchronous reload). */
  | { outcome: 'server-error'; status: number }
  /** Not delivered (no connection, a timeout, no process to signal, a refused signal): retried. */
  | { outcome: 'failed'; reason: string };

/** How the app is told to reload: an HTTP request or a signal to a container's main process. */
export interface Delivery {
  readonly kind: 'http' | 'signal';
  /** For log lines: `POST http://127.0.0.1:8429/-/reload`, or `SIGHUP to container app`. */
  readonly target: string;
  /** What names the target on log lines: `{method, url}` or `{signal, container}`. */
  readonly fields: Record<string, string>;
  /** Rejects only when `signal` aborted (shutdown). */
  deliver(signal: AbortSignal): Promise<DeliveryResult>;
  /** Closes kept-alive connections, so nothing holds the process. */
  close(): void;
}

/**
 * One reload request: resolves with the status code, rejects on a network error, a timeout, or when `signal`
 * aborts (shutdown), which also ends a request in flight.
 */
function send(
  url: URL,
  method: string,
  timeoutMs: number,
  agent: HttpAgent,
  signal: AbortSignal,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = (url.protocol === 'https:' ? https.request : http.request)(
      url,
      { method, agent, signal, headers: { 'content-length': '0', 'user-agent': 'config-reloader' } },
      (res) => {
        // The body is never read into memory nor logged: an app may echo its config (Secret data) on failure.
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
        res.on('error', reject);
      },
    );
    req.setTimeout(timeoutMs, () =>
      req.destroy(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: 'ETIMEDOUT' })),
    );
    req.on('error', (err: NodeJS.ErrnoException) => {
      // The app closed the kept-alive connection just as we reused it: not a failure of the app, send again
      // (never once the trigger is closed: that is what closed the connection).
      if (req.reusedSocket && !signal.aborted && (err.code === 'ECONNRESET' || err.code === 'EPIPE')) {
        send(url, method, timeoutMs, agent, signal).then(resolve, reject);
      } else {
        reject(err);
      }
    });
    req.end();
  });
}

/**
 * Answers that the same request will get again, whatever the app's state: the URL, method or credentials are
 * wrong (404, 405, 401, 403, 400, ...). Retrying them every few seconds only fills the log; 408 (timeout), 425
 * (too early) and 429 (too many requests) are the 4xx that ask to come back later.
 */
function isPermanentRejection(status: number): boolean {
  return status >= 400 && status < 500 && status !== 408 && status !== 425 && status !== 429;
}

/** An HTTP keep-alive agent for one app: one connection, no TCP handshake between a write and its reload. */
export function appAgent(url: URL): HttpAgent {
  const options = { keepAlive: true, maxSockets: 1, timeout: 30_000 };
  return url.protocol === 'https:' ? new https.Agent(options) : new http.Agent(options);
}

/** --reload-url: the app's reload endpoint. */
export function httpDelivery(config: ReloadConfig): Delivery {
  const { url, method, timeoutMs } = config;
  const agent = appAgent(url);
  const where = url.origin + url.pathname;
  return {
    kind: 'http',
    target: `${method} ${where}`,
    fields: { method, url: where },
    async deliver(signal) {
      let status: number;
      try {
        status = await send(url, method, timeoutMs, agent, signal);
      } catch (err) {
        if (signal.aborted) throw err;
        const e = err as NodeJS.ErrnoException;
        return { outcome: 'failed', reason: e.code ?? e.message };
      }
      if (status >= 200 && status < 300) return { outcome: 'delivered', fields: { status } };
      if (isPermanentRejection(status)) return { outcome: 'refused', status };
      if (status >= 500) return { outcome: 'server-error', status };
      return { outcome: 'failed', reason: `HTTP ${status}` };
    },
    close: () => agent.destroy(),
  };
}

/**
 * Sends `signal` to `container`'s main process (processes.ts's signalContainer): nothing is sent once
 * `opts.signal` aborted (shutdown), which then rejects.
 */
export type SignalSender = (
  container: string,
  signal: ContainerSignal,
  opts?: { signal?: AbortSignal },
) => Promise<ContainerProcess>;

/** processes.ts's signalContainer, loaded on first use: a reloader that sends no signal does not carry it. */
const sendSignal: SignalSender = async (container, signal, opts) =>
  (await import('./processes.ts')).signalContainer(container, signal, opts);

/**
 * --reload-signal: the signal to --signal-container's main process, looked up at each delivery (the container
 * may have restarted since). No process, several, or a refused signal: a failed delivery with the lookup's
 * sentence, retried with backoff.
 */
export function signalDelivery(config: SignalConfig, send: SignalSender = sendSignal): Delivery {
  const { signal: sig, container } = config;
  return {
    kind: 'signal',
    target: `${sig} to container ${container}`,
    fields: { signal: sig, container },
    async deliver(abort) {
      try {
        // The lookup takes a moment: close() meanwhile must still stop the signal (checked before kill()).
        const { pid, command } = await send(container, sig, { signal: abort });
        return { outcome: 'delivered', fields: { signal: sig, container, pid, command } };
      } catch (err) {
        if (abort.aborted) throw err;
        return { outcome: 'failed', reason: err instanceof Error ? err.message : String(err) };
      }
    },
    close: () => {},
  };
}
