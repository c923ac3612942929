import type { Logger } from '../shared/log.ts';
import { sleep, type BackoffPolicy } from './backoff.ts';
import { CoalescingLoop, failureKey, type AttemptOutcome } from './coalesce.ts';
import type { AppliedTracker } from './applied.ts';
// Types only: confirm.ts, events.ts and applied.ts are loaded by main.ts when their flags are given, so a reloader
// without them does not carry their code (docs/benchmarks.md, footprint).
import type { AppMetricsReader, AppReading, Verdict } from './confirm.ts';
import type { Delivery } from './delivery.ts';
import type { EventSink } from './events.ts';
import { CONTENT_HASH_PREFIX_CHARS, type ConfirmMetrics, type ReloaderMetrics } from './metrics.ts';

/** Confirmation's parts: the app's metrics, the metrics of the verdicts, the per-source applied state. */
interface ConfirmParts {
  reader: AppMetricsReader;
  metrics: ConfirmMetrics;
  applied?: AppliedTracker;
}

export interface ReloadTriggerOptions {
  delivery: Delivery;
  log: Logger;
  metrics: ReloaderMetrics;
  /** The hash of everything on disk right now; recorded when a delivery that started with it succeeds. */
  contentHash: () => string;
  backoff?: BackoffPolicy;
  confirm?: ConfirmParts;
  events?: EventSink;
  /** Date.now unless a test makes the clock (the same-second wait). */
  now?: () => number;
}

const ms = (from: number): number => Math.round((performance.now() - from) * 10) / 10;

/**
 * An HTTP 500 answered this many times in a row to the same content is the app's answer to that content, not a
 * passing failure: Prometheus and Alertmanager answer 500 to a bad config, and without confirmation (or with
 * metrics that cannot be read) nothing else says so. Taken as a rejection: not retried until the content changes.
 * Only 500: 502, 503 and 504 say the app (or a proxy) is not there or not ready yet, which passes; a change made
 * while the app starts must not be dropped.
 */
const SERVER_ERRORS_TO_REJECT = 3;

/**
 * Tells the application to reload after content changed on disk, by HTTP or by signal (the Delivery), with the
 * CoalescingLoop's discipline: one delivery in flight, changes during it coalesce into exactly one more, a failed
 * delivery (no connection, a timeout, 408, 425, 429, 5xx; no process to signal) is retried with backoff, a newer
 * change cuts the wait short, `close()` ends everything at once. A permanent refusal (another 4xx), or a 5xx
 * answered three times in a row to the same content, is not retried: one error line, and the next change tries
 * again.
 *
 * With confirmation, the app's own metrics are read before the delivery (the baseline) and polled after it
 * (confirm.ts) for its verdict: applied, rejected (not retried until the next change), unchanged (the app
 * reloaded and kept its timestamp: nothing in its effective config changed; counts as applied) or unconfirmed
 * (not retried either: the delivery worked). A 5xx with the success metric at 0 is a synchronous app's rejection.
 */
export class ReloadTrigger {
  private readonly opts: ReloadTriggerOptions;
  private readonly loop: CoalescingLoop;
  private attempts = 0;
  /** Why the previous attempt failed: a repeat of the same reason is logged at debug level only. */
  private lastFailure: string | undefined;
  /** When the earliest change not yet included in a delivery arrived (hrtime). */
  private pendingSince: bigint | undefined;
  /** The change time of a delivery that failed, carried to its retry. */
  private carriedSince: bigint | undefined;
  /** Ends the wait for the app's verdict: a newer change is to be delivered (and gets its own verdict). */
  private supersede: AbortController | undefined;
  /**
   * performance.now() after the last delivery whose verdict was cut short: the next baseline is read only once
   * the app's metrics page is newer than it (AppMetricsReader.holdAfterSupersededMs).
   */
  private supersededAt: number | undefined;
  /** The content hash of the consecutive 5xx answers, and how many (SERVER_ERRORS_TO_REJECT). */
  private serverErrors: { hash: string; count: number } | undefined;

  constructor(opts: ReloadTriggerOptions) {
    this.opts = opts;
    this.loop = new CoalescingLoop((failures) => this.attempt(failures), opts.backoff);
    opts.metrics.delivery.replace({ delivery: opts.delivery.kind });
  }

  /** Content changed (`changedAt`: when its watch event arrived): make sure a delivery is made after now. */
  request(changedAt: bigint = process.hrtime.bigint()): void {
    if (this.loop.closed) return;
    if (this.pendingSince === undefined || changedAt < this.pendingSince) this.pendingSince = changedAt;
    this.loop.request();
    this.supersede?.abort();
  }

  /** Resolves when no delivery is in flight or pending (tests, --once, shutdown). */
  idle(): Promise<void> {
    return this.loop.idle();
  }

  /**
   * Stops for good: a wait ends, a request in flight is aborted, no retry goes out, and the connections to the
   * app are closed, so that nothing keeps the process alive.
   */
  close(): void {
    this.loop.close();
    this.opts.delivery.close();
    this.opts.confirm?.reader.close();
  }

  private get closed(): boolean {
    return this.loop.closed;
  }

  /** The app's metrics before a delivery; undefined when shutting down. */
  private async readApp(): Promise<AppReading | undefined> {
    const confirm = this.opts.confirm as ConfirmParts;
    try {
      const reading = await confirm.reader.read(this.loop.signal);
      if (reading.success !== undefined) confirm.metrics.appSuccess.set(reading.success);
      if (reading.timestamp !== undefined) confirm.metrics.appTimestamp.set(reading.timestamp);
      return reading;
    } catch {
      return undefined;
    }
  }

  private async attempt(failures: number): Promise<AttemptOutcome> {
    const { delivery, log, metrics, confirm } = this.opts;
    const now = this.opts.now ?? Date.now;
    const attempt = ++this.attempts;
    let baseline: AppReading | undefined;
    if (confirm) {
      // VictoriaMetrics serves /metrics from a copy up to 1 s old: read sooner after a delivery whose verdict was
      // cut short, the baseline could predate that delivery's reload, whose result would then be taken for this
      // one's (a good config rejected, or a bad one applied). Changes during the hold are in this delivery.
      const hold =
        this.supersededAt === undefined
          ? 0
          : confirm.reader.holdAfterSupersededMs(this.supersededAt, performance.now());
      if (hold > 0) {
        log.debug(
          { waitMs: Math.round(hold) },
          "waiting until the app's metrics show the reload whose verdict a newer change cut short, before reading the baseline",
        );
        await sleep(hold, this.loop.signal).done;
        if (this.closed) return 'failed';
      }
      baseline = await this.readApp();
      if (!baseline) return 'failed'; // shutting down
      const wait = confirm.reader.holdBeforeDeliveryMs(baseline.timestamp, now());
      if (wait > 0) {
        // Changes during the wait are delivered by this attempt (the hash is taken after it).
        log.debug(
          { waitMs: Math.round(wait), appTimestamp: baseline.timestamp },
          "waiting for the app's whole-second reload timestamp to move on, so that this reload's is newer",
        );
        await sleep(wait, this.loop.signal).done;
        if (this.closed) return 'failed';
      }
    }
    // Everything written so far is in this delivery.
    this.loop.absorb();
    const since = min(this.carriedSince, this.pendingSince);
    this.pendingSince = undefined;
    const hash = this.opts.contentHash();
    const snapshot = confirm?.applied?.snapshot();
    const started = performance.now();
    const deliveredAtMs = now();
    let result;
    try {
      result = await delivery.deliver(this.loop.signal);
    } catch {
      log.debug({ attempt, delivery: delivery.kind }, 'reload abandoned: shutting down');
      return 'failed';
    }
    const contentHash = hash.slice(0, CONTENT_HASH_PREFIX_CHARS);
    const base = { attempt, delivery: delivery.kind, contentHash };
    if (result.outcome !== 'server-error' || result.status !== 500) this.serverErrors = undefined;
    if (result.outcome === 'delivered') {
      metrics.reloads.inc({ result: 'success' });
      metrics.recordReload(hash);
      log.info(
        {
          ...base,
          ...result.fields,
          durationMs: ms(started),
          ...(failures > 0 ? { afterFailedAttempts: failures } : {}),
        },
        delivery.kind === 'http' ? 'reload request succeeded' : 'reload signal sent',
      );
      this.lastFailure = undefined;
      this.carriedSince = undefined;
      if (!confirm || !baseline) return 'done';
      // A newer change ends the wait: polling up to --confirm-timeout must not hold its delivery back.
      const supersede = new AbortController();
      this.supersede = supersede;
      const deliveredAt = performance.now();
      const verdict = this.loop.pending
        ? undefined
        : await confirm.reader.verdict({
            baseline,
            deliveredAtMs,
            delivery: delivery.kind,
            signal: AbortSignal.any([this.loop.signal, supersede.signal]),
          });
      this.supersede = undefined;
      if (verdict) this.report(verdict, { hash, since, snapshot, started });
      else if (!this.closed) {
        // The next delivery includes this change: its time counts from here.
        this.carriedSince = since;
        this.supersededAt = deliveredAt;
        log.info(
          { contentHash, delivery: delivery.kind },
          "a newer change came before the app's verdict on this one: delivering it, the verdict will be on the newer content",
        );
      }
      return 'done';
    }
    if (result.outcome === 'refused') {
      metrics.reloads.inc({ result: 'rejected' });
      this.lastFailure = undefined;
      this.carriedSince = undefined;
      log.error(
        { ...base, status: result.status, ...delivery.fields },
        `the app rejected the reload request: ${delivery.target} answered HTTP ${result.status}; not retried until the content changes again (check config-reloader.io/reload-url and reload-method, and that the app allows reloads)`,
      );
      return 'done';
    }
    let reason = result.outcome === 'failed' ? result.reason : `HTTP ${result.status}`;
    if (result.outcome === 'server-error' && confirm) {
      // A synchronous reload (Prometheus, Alertmanager) answers 5xx when the config is bad: the metric says so.
      const reading = await this.readApp();
      if (!reading) return 'failed';
      if (reading.problem === undefined && reading.success === 0) {
        metrics.reloads.inc({ result: 'rejected' });
        this.serverErrors = undefined;
        this.lastFailure = undefined;
        this.carriedSince = undefined;
        this.report(
          { result: 'rejected', reading },
          { hash, since, snapshot, started, status: result.status },
        );
        return 'done';
      }
      if (reading.problem !== undefined) reason += ` (and ${reading.problem})`;
    }
    if (result.outcome === 'server-error' && result.status === 500) {
      const count = this.serverErrors?.hash === hash ? this.serverErrors.count + 1 : 1;
      this.serverErrors = { hash, count };
      if (count >= SERVER_ERRORS_TO_REJECT) {
        metrics.reloads.inc({ result: 'rejected' });
        this.serverErrors = undefined;
        this.lastFailure = undefined;
        this.carriedSince = undefined;
        log.error(
          { ...base, status: result.status, error: reason, ...delivery.fields },
          `the app answered HTTP ${result.status} to ${count} reload requests in a row for config ${contentHash} (${delivery.target}): taken as a rejection of this config; as far as the reloader knows, the app keeps running its previous config. Fix the Secret/ConfigMap (the app's own log says what is wrong), or, if the app fails to reload for another reason, fix that; not retried until the content changes`,
        );
        return 'done';
      }
    }
    metrics.reloads.inc({ result: 'failure' });
    this.carriedSince = since;
    const fields = { ...base, error: reason, ...delivery.fields };
    if (failureKey(reason) === this.lastFailure) {
      log.debug(fields, 'reload not delivered again, same reason: retrying with backoff');
    } else {
      log.warn(
        fields,
        delivery.kind === 'http'
          ? `reload request to ${delivery.target} failed (${reason}); retrying with backoff (check that the app is running and serves its reload endpoint there: config-reloader.io/reload-url and reload-method; repeats of this failure are logged at debug level)`
          : `reload signal not delivered: ${reason}; retrying with backoff (repeats of this failure are logged at debug level)`,
      );
    }
    this.lastFailure = failureKey(reason);
    return 'failed';
  }

  /** The one line (and Event, and metrics) of the app's verdict on a delivered config. */
  private report(
    verdict: Verdict,
    at: {
      hash: string;
      since: bigint | undefined;
      snapshot: Array<string | undefined> | undefined;
      started: number;
      status?: number;
    },
  ): void {
    const { log, delivery, events } = this.opts;
    const confirm = this.opts.confirm as ConfirmParts;
    const { successMetric, timestampMetric } = confirm.reader.config;
    const metricsUrl = confirm.reader.where;
    const contentHash = at.hash.slice(0, CONTENT_HASH_PREFIX_CHARS);
    confirm.metrics.confirmations.inc({ result: verdict.result });
    if (verdict.reading?.success !== undefined) confirm.metrics.appSuccess.set(verdict.reading.success);
    if (verdict.reading?.timestamp !== undefined) confirm.metrics.appTimestamp.set(verdict.reading.timestamp);
    if (verdict.result === 'applied') {
      const reading = verdict.reading;
      if (at.snapshot) confirm.applied?.confirmed(at.snapshot);
      const changeToApplied =
        at.since === undefined ? undefined : Number(process.hrtime.bigint() - at.since) / 1e9;
      if (changeToApplied !== undefined) confirm.metrics.changeToApplied.observe(changeToApplied);
      log.info(
        {
          contentHash,
          delivery: delivery.kind,
          ...(changeToApplied !== undefined
            ? { changeToAppliedMs: Math.round(changeToApplied * 10_000) / 10 }
            : {}),
          confirmMs: ms(at.started),
          ...(timestampMetric ? { appTimestamp: reading.timestamp } : {}),
        },
        'the app applied the new config',
      );
      events?.record(
        'ConfigApplied',
        'Normal',
        `The app applied config ${contentHash} (${delivery.target}).`,
      );
      return;
    }
    if (verdict.result === 'rejected') {
      const reading = verdict.reading;
      const answer = `${at.status !== undefined ? `${delivery.target} answered HTTP ${at.status} and ` : ''}${successMetric} = ${reading.success} at ${metricsUrl}`;
      log.error(
        {
          contentHash,
          delivery: delivery.kind,
          ...(at.status !== undefined ? { status: at.status } : {}),
          successMetric,
          successValue: reading.success,
          metricsUrl,
        },
        `the app rejected the new config ${contentHash}: ${answer}. It keeps running its previous config; fix the Secret/ConfigMap (the app's own log says what is wrong). Not retried until the content changes`,
      );
      events?.record(
        'ConfigRejected',
        'Warning',
        `The app rejected config ${contentHash} (${successMetric} = ${reading.success}${at.status !== undefined ? `, HTTP ${at.status}` : ''}); it keeps running its previous config.`,
      );
      return;
    }
    if (verdict.result === 'unchanged') {
      // What the app runs, as far as it can tell: the delivered content is applied. Not a change to the app, so no
      // Event and no change-to-applied time (that would be the timeout).
      if (at.snapshot) confirm.applied?.confirmed(at.snapshot);
      const seconds = confirm.reader.config.timeoutMs / 1000;
      const ts = verdict.reading.timestamp;
      const stamp =
        ts === verdict.bar ? `is still ${String(ts)}` : `is ${String(ts)}, not after ${verdict.bar}`;
      log.info(
        {
          contentHash,
          delivery: delivery.kind,
          successMetric,
          timestampMetric,
          appTimestamp: ts,
          metricsUrl,
        },
        `the app found nothing to change in config ${contentHash}: ${successMetric} is 1 and ${String(timestampMetric)} ${stamp} ${seconds}s after the reload, so it reloaded and its effective config is the one it was running (VictoriaMetrics keeps its timestamp for edits it does not use: comments, keys or files it does not read). Counted as applied`,
      );
      return;
    }
    log.warn(
      { contentHash, delivery: delivery.kind, metricsUrl, reason: verdict.reason },
      `could not confirm that the app applied config ${contentHash}: ${verdict.reason}. ${verdict.fix}. Not retried: the reload was delivered`,
    );
  }
}

function min(a: bigint | undefined, b: bigint | undefined): bigint | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return a < b ? a : b;
}
