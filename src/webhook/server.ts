import type { Server as HttpsServer } from 'node:https';
import Fastify, { LogController } from 'fastify';
import type { InjectorConfig } from '../injection/config.ts';
import { registerLogMetrics, type Logger } from '../shared/log.ts';
import { BODY_LIMIT, webhookApp } from './app.ts';
import { createWebhookMetrics, type WebhookMetrics } from './metrics.ts';
import type { TlsMaterial, TlsSource } from '../certs/source.ts';
import { TLS_OPTIONS } from '../certs/tls-options.ts';

export interface ServerOptions {
  host: string;
  port: number;
  tls: TlsSource;
  config: InjectorConfig;
  log: Logger;
  metrics?: WebhookMetrics;
}

export interface RunningServer {
  metrics: WebhookMetrics;
  /** https://HOST:PORT as bound (port 0 resolved). */
  url: string;
  /** Fail /readyz from now on, and keep serving. */
  drain(): void;
  /** Stop accepting, finish the reviews in flight, then resolve. */
  close(): Promise<void>;
}

/**
 * The HTTP server's timeouts, in milliseconds. The API server's webhook client is Go's net/http Transport
 * (client-go's transport cache, utilnet.SetTransportDefaults), whose IdleConnTimeout is http.DefaultTransport's
 * 90 s, over HTTP/1.1 here (this server does not offer h2). It closes a connection idle for 90 s, but until then
 * it may send the next review on it at any moment: a server that closes idle connections sooner races it, and a
 * POST lost that way is not retried by Go (not replayable), so failurePolicy applies (with Ignore, a pod without
 * its sidecar). The webhook therefore keeps idle connections longer than the client, by a margin for the time
 * between the end of our answer (where our timer starts) and the client pooling the connection (where its timer
 * starts), so that the client is always the side that closes.
 */
export const SERVER_TIMEOUTS = {
  /** Go's http.DefaultTransport IdleConnTimeout, used by the API server's webhook client (not ours to set). */
  clientIdle: 90_000,
  /**
   * How long an idle keep-alive connection stays open after an answer: 120 s, 30 s past the client's 90 s (Node
   * adds its keepAliveTimeoutBuffer, 1 s, to what it advertises in Keep-Alive: timeout=120).
   */
  keepAlive: 120_000,
  /**
   * The whole request, headers and body, from its first byte: the API server gives a webhook at most 30 s
   * (timeoutSeconds); nothing legitimate takes longer.
   */
  request: 30_000,
  /**
   * The request's headers, from its first byte (not from the end of the previous answer: since Node 18 an idle
   * keep-alive connection is not on this clock, so the old advice headersTimeout > keepAliveTimeout no longer
   * applies, and Node refuses a headersTimeout above requestTimeout). The API server writes its headers at once.
   */
  headers: 10_000,
  /** Socket inactivity during a request (Fastify's connectionTimeout); between requests the keep-alive applies. */
  socketIdle: 30_000,
  /** How often Node checks the headers and request timeouts (its default, 30 s, would let them run 30 s late). */
  checkInterval: 2_000,
} as const;

export async function startWebhookServer(opts: ServerOptions): Promise<RunningServer> {
  const { tls, log } = opts;
  const metrics = opts.metrics ?? createWebhookMetrics();
  // Log lines dropped while stdout's reader stalled (logging never waits for it).
  registerLogMetrics(metrics.registry);
  const app = Fastify({
    https: {
      ...TLS_OPTIONS,
      ...tls.material,
      headersTimeout: SERVER_TIMEOUTS.headers,
      requestTimeout: SERVER_TIMEOUTS.request,
      connectionsCheckingInterval: SERVER_TIMEOUTS.checkInterval,
    },
    loggerInstance: log,
    // Each review gets its own log line from the route; Fastify's per-request lines would double them.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: BODY_LIMIT,
    connectionTimeout: SERVER_TIMEOUTS.socketIdle,
    requestTimeout: SERVER_TIMEOUTS.request,
    keepAliveTimeout: SERVER_TIMEOUTS.keepAlive,
    // A review that reaches the server while it closes is still answered: a 503 would make the API server apply
    // failurePolicy (with Ignore, the pod starts without the sidecar). Closing stops the listener and closes idle
    // connections; the Connection: close below makes busy ones close after their answer.
    return503OnClosing: false,
    forceCloseConnections: 'idle',
  });
  const lifecycle = { draining: false };
  // While draining, every answer asks the client to open a new connection for its next request, which the
  // Service routes to a ready replica, instead of reusing this one.
  app.addHook('onSend', (_req, reply, payload, done) => {
    if (lifecycle.draining) reply.header('connection', 'close');
    done(null, payload);
  });
  await app.register(webhookApp, { config: opts.config, metrics, log, lifecycle });
  tls.onChange((material: TlsMaterial) => {
    // New connections get the new certificate; open ones keep theirs until they close.
    (app.server as HttpsServer).setSecureContext({ ...TLS_OPTIONS, ...material });
    metrics.certificateReloads.inc();
  });
  await app.listen({ host: opts.host, port: opts.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : opts.port;
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  return {
    metrics,
    url: `https://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}`,
    drain: () => {
      lifecycle.draining = true;
    },
    close: async () => {
      lifecycle.draining = true;
      tls.close();
      await app.close();
    },
  };
}
