import { LATENCY_BUCKETS, Registry } from '../shared/metrics.ts';

export function createWebhookMetrics() {
  const registry = new Registry();
  return {
    registry,
    requests: registry.counter(
      'config_reloader_webhook_requests_total',
      'Admission requests by path and result (injected, skipped, denied, error, bad_request).',
      ['path', 'result'],
    ),
    duration: registry.histogram(
      'config_reloader_webhook_request_duration_seconds',
      'Time to answer an admission request, from the body being read to the answer being encoded.',
      LATENCY_BUCKETS,
      ['path'],
    ),
    injections: registry.counter('config_reloader_webhook_injections_total', 'Pods patched with the config-reloader sidecar.'),
    denials: registry.counter('config_reloader_webhook_denials_total', 'Pods denied for an invalid opt-in configuration.'),
    internalErrors: registry.counter(
      'config_reloader_webhook_internal_errors_total',
      'Reviews where the webhook failed internally and admitted the pod unchanged.',
    ),
    certificateReloads: registry.counter('config_reloader_webhook_certificate_reloads_total', 'Serving certificate reloads.'),
  };
}

export type WebhookMetrics = ReturnType<typeof createWebhookMetrics>;
