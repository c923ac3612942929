import type { Server as HttpsServer } from 'node:https';
import Fastify, { LogController } from 'fastify';
import type { InjectorConfig } from '../injection/config.ts';
import type { Logger } from '../shared/log.ts';
import { BODY_LIMIT, webhookApp } from './app.ts';
import { createWebhookMetrics, type WebhookMetrics } from './metrics.ts';
import type { TlsMaterial, TlsSource } from './tls.ts';
import { TLS_OPTIONS } from './tls-options.ts';

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

export async function startWebhookServer(opts: ServerOptions): Promise<RunningServer> {
  const { tls, log } = opts;
  const metrics = opts.metrics ?? createWebhookMetrics();
  const app = Fastify({
    https: { ...TLS_OPTIONS, ...tls.material },
    loggerInstance: log,
    // Each review gets its own log line from the route; Fastify's per-request lines would double them.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: BODY_LIMIT,
    // The API server gives a webhook at most 30 s (timeoutSeconds); nothing legitimate takes longer.
    connectionTimeout: 30_000,
    requestTimeout: 30_000,
    keepAliveTimeout: 65_000,
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
