import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { InjectorConfig } from '../injection/config.ts';
import type { OptIn } from '../injection/inject.ts';
import { METRICS_CONTENT_TYPE } from '../shared/metrics.ts';
import type { Logger } from '../shared/log.ts';
import { DECISIONS, encodeReview, review, type Decision } from './admission.ts';
import type { WebhookMetrics } from './metrics.ts';

export interface AppOptions {
  config: InjectorConfig;
  metrics: WebhookMetrics;
  log: Logger;
  /** Set on SIGTERM: /readyz fails so the Service stops sending reviews before the server closes. */
  lifecycle?: { draining: boolean };
}

/** An AdmissionReview of an object can approach the API server's 3 MiB request limit; leave room for the envelope. */
export const BODY_LIMIT = 8 * 1024 * 1024;

const ROUTES: Array<[string, OptIn]> = [
  ['/mutate', 'annotation'],
  ['/mutate/namespace', 'namespace'],
];

/** The webhook's routes, as a plugin with no listen(): the server owns TLS and signals; tests call app.inject(). */
export async function webhookApp(app: FastifyInstance, opts: AppOptions): Promise<void> {
  const { config, metrics, log } = opts;

  // The API server sends application/json only; anything else gets a 415 that says so.
  app.removeContentTypeParser(['text/plain']);

  app.setErrorHandler((err: FastifyError, req: FastifyRequest, reply: FastifyReply) => {
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
    metrics.requests.inc({ path: req.routeOptions.url ?? req.url, result: 'bad_request' });
    if (status === 500) {
      log.error({ err, path: req.url }, 'unexpected error while serving a request');
      return reply.code(500).send({ message: 'internal error; see the webhook logs' });
    }
    const message =
      status === 413
        ? `the request body is larger than the webhook's limit of ${BODY_LIMIT} bytes`
        : status === 415
          ? `unsupported Content-Type ${JSON.stringify(req.headers['content-type'] ?? '')}: send application/json`
          : `the request body is not valid JSON: ${err.message}`;
    log.warn({ path: req.url, status, problem: message }, 'rejected an admission request');
    return reply.code(status).send({ message });
  });

  for (const [path, optIn] of ROUTES) {
    // This route's metric series, looked up once rather than on every review.
    const duration = metrics.duration.labels({ path });
    const results = Object.fromEntries(
      [...DECISIONS, 'bad_request' as const].map((result) => [
        result,
        metrics.requests.labels({ path, result }),
      ]),
    ) as Record<Decision | 'bad_request', { inc(): void }>;
    app.post(path, async (req, reply) => {
      const started = process.hrtime.bigint();
      const answer = review(req.body, optIn, config);
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      duration.observe(seconds);
      if (answer.statusCode === 400) {
        results.bad_request.inc();
        log.warn({ path, status: 400, problem: answer.message }, 'rejected an admission request');
        return reply.code(400).send({ message: answer.message });
      }
      const { summary } = answer;
      results[summary.decision].inc();
      const line = {
        uid: summary.uid,
        namespace: summary.namespace,
        pod: summary.pod,
        operation: summary.operation,
        dryRun: summary.dryRun || undefined,
        path,
        decision: summary.decision,
        reason: summary.reason,
        warnings: summary.warnings || undefined,
        durationMs: Math.round(seconds * 1e6) / 1e3,
      };
      if (summary.decision === 'error')
        log.error(
          { ...line, err: summary.error },
          'admission review failed internally; pod admitted unchanged',
        );
      else log.info(line, 'admission review');
      return reply.code(200).type('application/json; charset=utf-8').send(encodeReview(answer.body));
    });
  }

  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) =>
    opts.lifecycle?.draining ? reply.code(503).send({ status: 'draining' }) : { status: 'ready' },
  );
  app.get('/metrics', async (_req, reply) =>
    reply.type(METRICS_CONTENT_TYPE).send(metrics.registry.render()),
  );
}
