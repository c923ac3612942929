import { LATENCY_BUCKETS, Registry } from '../shared/metrics.ts';
import { servedCertificateExpiry } from '../certs/source.ts';

const CERTIFICATE_EXPIRY = 'config_reloader_webhook_certificate_expiry_timestamp_seconds';

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
    certificateReloads: registry.counter(
      'config_reloader_webhook_certificate_reloads_total',
      'Serving certificate reloads.',
    ),
    // Read when scraped from the certificate sources open in the process (files, self-signed, self-managed): no
    // source has to know the registry, and a reload shows at the next scrape.
    certificateExpiry: registry.register({
      render: (): string => {
        const notAfter = servedCertificateExpiry();
        return [
          `# HELP ${CERTIFICATE_EXPIRY} Expiry (notAfter, Unix seconds) of the serving certificate this process serves; absent until one is served.`,
          `# TYPE ${CERTIFICATE_EXPIRY} gauge`,
          ...(notAfter === undefined ? [] : [`${CERTIFICATE_EXPIRY} ${notAfter}`]),
        ].join('\n');
      },
    }),
  };
}

export type WebhookMetrics = ReturnType<typeof createWebhookMetrics>;
