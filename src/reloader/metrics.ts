import { registerLogMetrics } from '../shared/log.ts';
import { Gauge, LATENCY_BUCKETS, Registry } from '../shared/metrics.ts';

/** A gauge whose one series is replaced, not added to: `..._info{sha256="..."} 1`. */
class InfoGauge extends Gauge {
  replace(labels: Record<string, string>): void {
    this.values.clear();
    this.set(1, labels);
  }
}

/** A gauge with one `sha256` series per source: a source's new value replaces its old series. */
class SourceInfoGauge extends Gauge {
  private readonly current = new Map<string, string>();
  replaceFor(source: string, sha256: string): void {
    const old = this.current.get(source);
    if (old !== undefined) this.values.delete(old);
    this.set(1, { source, sha256 });
    // The key the base class made for these labels (labels in declaration order).
    this.current.set(source, [...this.values.keys()].at(-1) as string);
  }
}

/** A gauge without labels that has no sample until set: "not read yet" must not read as 0 (a failure). */
class UnsetGauge extends Gauge {
  override render(): string {
    return this.values.size === 0
      ? `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} gauge`
      : super.render();
  }
}

export const CONTENT_HASH_PREFIX_CHARS = 16;

/** From a change to the app's confirmed apply: milliseconds to a minute (an async app is polled up to --confirm-timeout). */
const APPLIED_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** The metrics of --confirm-*: registered only when confirmation is configured. */
export function createConfirmMetrics(registry: Registry) {
  return {
    sourceApplied: registry.gauge(
      'config_reloader_source_applied',
      "1 when the source's content on disk is what the app last confirmed applying (or started with, or reloaded and found unchanged); 0 while a change is pending, rejected or unconfirmed.",
      ['source'],
    ),
    appliedContent: registry.register(
      new SourceInfoGauge(
        'config_reloader_source_applied_content_info',
        "Always 1; the label is the first 16 hex digits of the SHA-256 of the source's files the app last applied.",
        ['source', 'sha256'],
      ),
    ),
    changeToApplied: registry.histogram(
      'config_reloader_change_to_applied_seconds',
      'From the watch event that brought a change to the app confirming it applied it.',
      APPLIED_BUCKETS,
    ),
    confirmations: registry.counter(
      'config_reloader_confirmations_total',
      "The app's verdicts after a delivered reload: applied, rejected (not retried until the next change), unchanged (--confirm-unchanged-keeps-timestamp: success 1 and the same timestamp at --confirm-timeout, nothing to change in the app's effective config; counts as applied) or unconfirmed (no answer within --confirm-timeout, or its metrics could not be read).",
      ['result'],
    ),
    appSuccess: registry.register(
      new UnsetGauge(
        'config_reloader_app_last_reload_successful',
        "The app's own success metric as last read (1 success, 0 failure; no sample until read).",
      ),
    ),
    appTimestamp: registry.register(
      new UnsetGauge(
        'config_reloader_app_last_reload_success_timestamp_seconds',
        "The app's own timestamp metric as last read: Unix time of its last successful reload (no sample until read).",
      ),
    ),
  };
}

export type ConfirmMetrics = ReturnType<typeof createConfirmMetrics>;

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
    delivery: registry.register(
      new InfoGauge(
        'config_reloader_reload_delivery_info',
        'Always 1; the label says how the app is told to reload: http or signal (absent: files only).',
        ['delivery'],
      ),
    ),
    restarts: registry.counter(
      'config_reloader_container_restarts_total',
      "SIGTERMs sent to a --restart-on-change container's main process, by result: success, or failure (no single main process found, or the signal refused; retried with backoff).",
      ['container', 'result'],
    ),
    reloads: registry.counter(
      'config_reloader_reloads_total',
      'Reload deliveries (HTTP requests or signals), by result: success, failure (retried with backoff) or rejected (a 4xx other than 408, 425 and 429, or a 5xx with the success metric at 0: not retried until the next change); each attempt counts.',
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
