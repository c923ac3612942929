import type { Agent as HttpAgent } from 'node:http';
import type { Logger } from '../shared/log.ts';
import { backoffDelay, DEFAULT_BACKOFF, sleep, type BackoffPolicy } from './backoff.ts';
import type { ReloadConfig } from './config.ts';
import type { ReloaderMetrics } from './metrics.ts';

// getBuiltinModule, not an import: an ES import of node:http evaluates its lazy web-API getters, which load undici,
// http2, zlib and web streams the reloader never uses (about 3 MiB per pod, docs/benchmarks.md).
const http = process.getBuiltinModule('node:http');
const https = process.getBuiltinModule('node:https');

export interface ReloadTriggerOptions extends ReloadConfig {
  log: Logger;
  metrics: ReloaderMetrics;
  /** The hash of everything on disk right now; recorded when a reload that started with it succeeds. */
  contentHash: () => string;
  backoff?: BackoffPolicy;
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
export function isPermanentRejection(status: number): boolean {
  return status >= 400 && status < 500 && status !== 408 && status !== 425 && status !== 429;
}

/**
 * Calls the application's reload URL after content changed on disk. At most one request is in flight;
 * any number of changes during it cause exactly one more request, sent when it ends (the newest content is
 * already on disk, since `request()` is called after each write). A failed attempt (connection error, timeout,
 * 408, 425, 429, 5xx) is retried with jittered backoff until one succeeds; a newer change cuts the wait short.
 * A permanent rejection (another 4xx) is not retried: one error line, and the next change tries again.
 * `close()` ends everything at once: the wait, the request in flight, the connection.
 */
export class ReloadTrigger {
  private readonly opts: ReloadTriggerOptions;
  private dirty = false;
  private active = false;
  private done: Promise<void> = Promise.resolve();
  private wake: (() => void) | undefined;
  private readonly closing = new AbortController();
  private attempts = 0;
  /** One kept-alive connection to the app: no TCP handshake between a write and its reload. */
  private readonly agent: HttpAgent;

  constructor(opts: ReloadTriggerOptions) {
    this.opts = opts;
    const agentOptions = { keepAlive: true, maxSockets: 1, timeout: 30_000 };
    this.agent =
      opts.url.protocol === 'https:' ? new https.Agent(agentOptions) : new http.Agent(agentOptions);
  }

  private get closed(): boolean {
    return this.closing.signal.aborted;
  }

  /** Content changed: make sure a reload request is sent after now. */
  request(): void {
    if (this.closed) return;
    this.dirty = true;
    if (this.wake) this.wake();
    else if (!this.active) {
      this.active = true;
      this.done = this.loop();
    }
  }

  /** Resolves when no request is in flight or pending (tests, --once, shutdown). */
  async idle(): Promise<void> {
    while (this.active) await this.done;
  }

  /**
   * Stops for good: the backoff wait ends, a request in flight is aborted, no retry goes out, and the
   * connection to the app is closed, so that nothing keeps the process alive.
   */
  close(): void {
    this.closing.abort();
    this.wake?.();
    this.agent.destroy();
  }

  private async loop(): Promise<void> {
    let failures = 0;
    while (this.dirty && !this.closed) {
      this.dirty = false;
      const outcome = await this.attempt();
      if (this.closed) break;
      if (outcome === 'success' || outcome === 'rejected') {
        // A rejection waits for the next change (a request() during the attempt counts as one).
        failures = 0;
        continue;
      }
      failures++;
      if (!this.dirty) {
        const wait = sleep(backoffDelay(failures, this.opts.backoff ?? DEFAULT_BACKOFF), this.closing.signal);
        this.wake = wait.wake;
        await wait.done;
        this.wake = undefined;
      }
      this.dirty = true; // retry, or send the newer content (the loop ends here if closed meanwhile)
    }
    this.active = false;
  }

  private async attempt(): Promise<'success' | 'failure' | 'rejected'> {
    const { url, method, timeoutMs, log, metrics } = this.opts;
    const hash = this.opts.contentHash();
    const attempt = ++this.attempts;
    const started = performance.now();
    const where = url.origin + url.pathname;
    let failure: string;
    try {
      const status = await send(url, method, timeoutMs, this.agent, this.closing.signal);
      const durationMs = Math.round((performance.now() - started) * 10) / 10;
      if (status >= 200 && status < 300) {
        metrics.reloads.inc({ result: 'success' });
        metrics.recordReload(hash);
        log.info({ attempt, status, durationMs, contentHash: hash.slice(0, 16) }, 'reload request succeeded');
        return 'success';
      }
      if (isPermanentRejection(status)) {
        metrics.reloads.inc({ result: 'rejected' });
        log.error(
          { attempt, status, url: where, method },
          `the app rejected the reload request: ${method} ${where} answered HTTP ${status}; not retried until the content changes again (check config-reloader.io/reload-url and reload-method, and that the app allows reloads)`,
        );
        return 'rejected';
      }
      failure = `HTTP ${status}`;
    } catch (err) {
      if (this.closed) {
        log.debug({ attempt, url: where }, 'reload request abandoned: shutting down');
        return 'failure';
      }
      const e = err as NodeJS.ErrnoException;
      failure = e.code ?? e.message;
    }
    metrics.reloads.inc({ result: 'failure' });
    log.warn({ attempt, error: failure, url: where }, `reload request failed (${failure}); retrying`);
    return 'failure';
  }
}
