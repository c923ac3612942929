import { registerLogMetrics } from '../shared/log.ts';
import { Gauge, LATENCY_BUCKETS, Registry } from '../shared/metrics.ts';

/** A gauge whose one series is replaced, not added to: `..._info{sha256="..."} 1`. */
class InfoGauge extends Gauge {
  replace(labels: Record<string, string>): void {
    this.values.clear();
    this.set(1, labels);
  }
}

export const CONTENT_HASH_PREFIX_CHARS = 16;

/** The reloader's metrics, all `config_reloader_*`; sources are labelled `kind/namespace/name`. */
export function createReloaderMetrics(registry = new Registry()) {
  // Log lines dropped while stdout's reader stalled (the logger never blocks the reloader either).
  registerLogMetrics(registry);
  const lastReloadContent = registry.register(
    new InfoGauge(
      'config_reloader_last_reload_content_info',
      "Always 1; the label is the first 16 hex digits of the SHA-256 over every source's files at the last successful reload.",
      ['sha256'],
    ),
  );
  const lastReloadHash = registry.gauge(
    'config_reloader_last_reload_content_hash',
    'The first 48 bits of that SHA-256 as a number, to compare across pods or alert on change.',
  );
  const lastReloadSuccess = registry.gauge(
    'config_reloader_last_reload_success_timestamp_seconds',
    'Unix time of the last successful reload request (0: none yet).',
  );
  return {
    registry,
    reloads: registry.counter(
      'config_reloader_reloads_total',
      'Reload request attempts, by result: success, failure (retried with backoff) or rejected (a 4xx other than 408, 425 and 429: not retried until the next change); each attempt counts.',
      ['result'],
    ),
    lastReloadSuccess,
    lastReloadHash,
    lastReloadContent,
    /** Records the content a successful reload applied. */
    recordReload(hash: string): void {
      lastReloadSuccess.set(Date.now() / 1000);
      lastReloadHash.set(parseInt(hash.slice(0, 12), 16));
      lastReloadContent.replace({ sha256: hash.slice(0, CONTENT_HASH_PREFIX_CHARS) });
    },
    watchesOpen: registry.gauge('config_reloader_watches_open', 'Watch connections currently open.'),
    watchRestarts: registry.counter(
      'config_reloader_watch_restarts_total',
      'Watches that ended and were opened again, by reason (closed, gone: 410 expired, error).',
      ['source', 'reason'],
    ),
    apiErrors: registry.counter(
      'config_reloader_api_errors_total',
      'Failed list or watch requests, by HTTP code (0: no answer).',
      ['source', 'code'],
    ),
    events: registry.counter('config_reloader_watch_events_total', 'Watch events received, by type.', [
      'source',
      'type',
    ]),
    writes: registry.counter(
      'config_reloader_writes_total',
      "Atomic writes of a source's directory (content changed).",
      ['source'],
    ),
    writeErrors: registry.counter(
      'config_reloader_write_errors_total',
      'Objects that could not be projected or written.',
      ['source'],
    ),
    eventToWrite: registry.histogram(
      'config_reloader_event_to_write_seconds',
      "From a watch event's arrival to its content being on disk.",
      LATENCY_BUCKETS,
      ['source'],
    ),
    deletions: registry.counter(
      'config_reloader_object_deletions_total',
      "Times a source's object was deleted (its files are kept).",
      ['source'],
    ),
    synced: registry.gauge(
      'config_reloader_source_synced',
      '1 once the source has been synced (written, or confirmed absent when optional).',
      ['source'],
    ),
  };
}

export type ReloaderMetrics = ReturnType<typeof createReloaderMetrics>;
