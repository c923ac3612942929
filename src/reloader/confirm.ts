import type { Agent as HttpAgent } from 'node:http';
import { sleep } from './backoff.ts';
import type { ConfirmConfig } from './config.ts';
import { appAgent } from './delivery.ts';
import { scrapeMetrics } from './metrics-text.ts';

/** What the app's metrics said at one read; `problem` when they could not say it (then the values may be absent). */
export interface AppReading {
  success?: number;
  timestamp?: number;
  problem?: string;
}

/** What the app did with a delivered config. */
export type Verdict =
  | { result: 'applied'; reading: AppReading }
  | { result: 'rejected'; reading: AppReading }
  /**
   * --confirm-unchanged-keeps-timestamp: success 1 and the timestamp still at or before `bar` at the timeout. The
   * app reloaded and found nothing to change in its effective config (VictoriaMetrics keeps its timestamp then).
   */
  | { result: 'unchanged'; reading: AppReading; bar: number }
  /** `reason` and `fix` are whole sentences for the log line. */
  | { result: 'unconfirmed'; reason: string; fix: string; reading?: AppReading };

/** The longest a single read of the app's metrics may take (and no longer than the whole confirmation). */
const READ_TIMEOUT_MS = 5000;
/**
 * Polling after a delivery: every 100 ms for the first 2 s, then doubling to at most 1 s between reads.
 * VictoriaMetrics serves /metrics from a copy made at most once a second (lib/appmetrics), so its report of a
 * reload shows up to 1 s late; reading every 100 ms through that second catches it within 100 ms of the new copy
 * (a doubling schedule read at 750 ms and then 1,550 ms: half a second later). Reads within that second are
 * answered from the copy, which costs the app little.
 */
const FAST_POLL_MS = 100;
const FAST_POLL_FOR_MS = 2000;
const MAX_POLL_MS = 1000;

/** The wait before the next read, `elapsed` ms after the delivery, when the last wait was `last` ms. */
export function nextPollMs(elapsed: number, last: number): number {
  if (elapsed < FAST_POLL_FOR_MS) return FAST_POLL_MS;
  return Math.min(Math.max(last, FAST_POLL_MS) * 2, MAX_POLL_MS);
}
/**
 * VictoriaMetrics reports its reload time in whole seconds from a clock that lags the wall clock by up to just
 * under 2 s (lib/fasttime: a 1 s ticker storing floor(now)). A reload delivered 2 s or more after the previous
 * reload's reported second always gets a greater one (the newest tick is at most 1 s old, so it is past that
 * second); one delivered sooner might get the same, and could not be told from the previous (docs/reloader.md,
 * Confirmation).
 */
const TIMESTAMP_RESOLUTION_WAIT_S = 2;
/**
 * How old a VictoriaMetrics /metrics page can be (a copy made at most once a second, lib/appmetrics), with 100 ms
 * to spare: a read this long after a delivery shows the app's state after it, as far as a quick reload goes.
 * reload.ts holds the next baseline read this long after a delivery whose verdict a newer change cut short; and
 * a signal's success of 1 without a timestamp metric counts only from a read this long after the delivery.
 */
const METRICS_COPY_AGE_MS = 1100;

/**
 * How long to wait before delivering so that the app's next reload timestamp is greater than `baseline`: only
 * when the baseline is a whole number (second resolution; Prometheus' are fractional) within 2 s of now.
 */
export function sameSecondWaitMs(baseline: number | undefined, nowMs: number): number {
  if (baseline === undefined || !Number.isInteger(baseline)) return 0;
  const until = (baseline + TIMESTAMP_RESOLUTION_WAIT_S) * 1000;
  // A timestamp from the future (another clock): at most the rule's 2 s and one more second.
  return Math.min(Math.max(0, until - nowMs), TIMESTAMP_RESOLUTION_WAIT_S * 1000 + 1000);
}

/** Reads the app's success (and timestamp) metric from its /metrics; one kept-alive connection. */
export class AppMetricsReader {
  readonly config: ConfirmConfig;
  private readonly agent: HttpAgent;
  private readonly names: string[];
  readonly where: string;

  constructor(config: ConfirmConfig) {
    this.config = config;
    this.agent = appAgent(config.metricsUrl);
    this.names = [config.successMetric, ...(config.timestampMetric ? [config.timestampMetric] : [])];
    this.where = config.metricsUrl.origin + config.metricsUrl.pathname;
  }

  /** One read; never throws except when `signal` aborted. */
  async read(signal: AbortSignal): Promise<AppReading> {
    const { successMetric, timestampMetric, metricsUrl } = this.config;
    const scrape = () =>
      scrapeMetrics(metricsUrl, this.names, {
        timeoutMs: Math.min(READ_TIMEOUT_MS, this.config.timeoutMs),
        signal,
        agent: this.agent,
      });
    let reader;
    try {
      reader = await scrape().catch((err: NodeJS.ErrnoException) => {
        // The app closed the kept-alive connection as we reused it: once more, on a new one.
        if (!signal.aborted && (err.code === 'ECONNRESET' || err.code === 'EPIPE')) return scrape();
        throw err;
      });
    } catch (err) {
      if (signal.aborted) throw err;
      const e = err as NodeJS.ErrnoException;
      return { problem: `cannot read ${this.where}: ${e.code ?? e.message}` };
    }
    const reading: AppReading = {};
    const success = reader.resolve(successMetric);
    if ('value' in success) reading.success = success.value;
    else reading.problem = `${this.where}: ${success.problem}`;
    if (timestampMetric) {
      const ts = reader.resolve(timestampMetric);
      if ('value' in ts) reading.timestamp = ts.value;
      else reading.problem ??= `${this.where}: ${ts.problem}`;
    }
    if (reading.success !== undefined && reading.success !== 0 && reading.success !== 1)
      reading.problem ??= `${successMetric} reads ${reading.success}, not 0 or 1`;
    return reading;
  }

  /**
   * How long to wait before reading the baseline after a delivery made at `deliveredAt` (performance.now()) whose
   * verdict a newer change cut short: until the page the app serves is certain to be newer than that delivery,
   * so that the older reload's effect is in the baseline and not taken for the newer one's.
   */
  holdAfterSupersededMs(deliveredAt: number, now: number): number {
    return Math.max(0, deliveredAt + METRICS_COPY_AGE_MS - now);
  }

  /** sameSecondWaitMs for this app's baseline timestamp. */
  holdBeforeDeliveryMs(baselineTimestamp: number | undefined, nowMs: number): number {
    return sameSecondWaitMs(baselineTimestamp, nowMs);
  }

  /** awaitVerdict on this app's metrics. */
  verdict(opts: Omit<VerdictOptions, 'config'>): Promise<Verdict | undefined> {
    return awaitVerdict((s) => this.read(s), { ...opts, config: this.config });
  }

  close(): void {
    this.agent.destroy();
  }
}

export interface VerdictOptions {
  config: ConfirmConfig;
  /** The read just before the delivery. */
  baseline: AppReading;
  /** Date.now() when the delivery was made: the timestamp bar when the baseline had none. */
  deliveredAtMs: number;
  /**
   * How the app was told. A signal is handled after it is sent, so without a timestamp metric a success of 1 is
   * taken only from a read made METRICS_COPY_AGE_MS after the delivery (it may be the state before the reload).
   */
  delivery: 'http' | 'signal';
  signal: AbortSignal;
}

/** The timestamp a reading must exceed to be a reload after the delivery. */
function timestampBar(baseline: AppReading, deliveredAtMs: number): number {
  if (baseline.timestamp !== undefined && Number.isFinite(baseline.timestamp)) return baseline.timestamp;
  // No baseline: anything from floor(delivery) - 2 s on (a whole-second clock lags by up to just under 2 s).
  return Math.floor(deliveredAtMs / 1000) - TIMESTAMP_RESOLUTION_WAIT_S - 1;
}

/**
 * Polls the app's metrics after a delivery until it tells: applied (success 1, and the timestamp past the
 * baseline when there is a timestamp metric, or success back from a 0 baseline; without a timestamp metric after
 * a signal, a success of 1 that was 1 before only from a read METRICS_COPY_AGE_MS after the delivery), rejected
 * (success 0, at once when it was 1 before the delivery: that is news; at the timeout when it stays 0), or at the
 * timeout with success 1 and no newer timestamp: unchanged when the app keeps its timestamp on a reload that
 * changes nothing (config.unchangedKeepsTimestamp), else unconfirmed; unconfirmed too when the metrics could not
 * be read. Resolves undefined when `signal` aborts (shutdown).
 */
export async function awaitVerdict(
  read: (signal: AbortSignal) => Promise<AppReading>,
  opts: VerdictOptions,
): Promise<Verdict | undefined> {
  const { config, baseline, signal } = opts;
  const bar = timestampBar(baseline, opts.deliveredAtMs);
  // Without a timestamp, success 1 after a signal says nothing until the app has had time to take it.
  const settleMs =
    config.timestampMetric === undefined && opts.delivery === 'signal' ? METRICS_COPY_AGE_MS : 0;
  // Durations on the monotonic clock: a wall clock stepped meanwhile neither ends the wait early nor stretches it.
  const started = performance.now();
  const deadline = started + Math.max(config.timeoutMs, settleMs);
  let delay = 0;
  let last: AppReading | undefined;
  for (;;) {
    const settled = performance.now() - started >= settleMs;
    try {
      last = await read(signal);
    } catch {
      return undefined;
    }
    if (signal.aborted) return undefined;
    if (last.problem === undefined) {
      const newer = config.timestampMetric === undefined ? settled : (last.timestamp ?? -Infinity) > bar;
      // Success after a failed reload is news whatever the timestamp: VictoriaMetrics does not bump it when the
      // config it goes back to is the one it kept running (docs/e2e.md).
      const recovered = baseline.success === 0 && baseline.problem === undefined;
      if (last.success === 1 && (newer || recovered)) return { result: 'applied', reading: last };
      if (last.success === 0 && baseline.success === 1) return { result: 'rejected', reading: last };
    }
    const left = deadline - performance.now();
    // A read that started before the settle time does not end the wait: one more comes after it.
    if (left <= 0 && settled) break;
    delay = nextPollMs(performance.now() - started, delay);
    await sleep(Math.max(0, Math.min(delay, left)), signal).done;
    if (signal.aborted) return undefined;
  }
  const seconds = config.timeoutMs / 1000;
  if (last.problem !== undefined) return { ...unreadable(last.problem, config), reading: last };
  if (last.success === 0) return { result: 'rejected', reading: last };
  // Not earlier than the timeout: nothing marks the end of a reload that changed nothing. VictoriaMetrics' reload
  // counters (vmalert_config_last_reload_total, vmauth_config_last_reload_total) move before the files are read,
  // so a read between the two would take a reload in progress for one that kept everything (docs/reloader.md).
  if (config.unchangedKeepsTimestamp) return { result: 'unchanged', reading: last, bar };
  return {
    result: 'unconfirmed',
    reading: last,
    reason: `${config.successMetric} is 1 but ${config.timestampMetric} stayed at ${last.timestamp} (not after ${bar}) for ${seconds}s`,
    fix:
      'the app may not have reloaded (is the signal or URL the one it reloads on?), or reloaded slower than ' +
      'config-reloader.io/confirm-timeout; an app that keeps its timestamp when a reload changes nothing ' +
      '(VictoriaMetrics components, for a comment-only edit or a file they do not read) needs ' +
      '--confirm-unchanged-keeps-timestamp, which the VictoriaMetrics presets pass',
  };
}

/** The unconfirmed verdict when the metrics could not be read or lack the metric, with the fix for each. */
function unreadable(
  problem: string,
  config: ConfirmConfig,
): { result: 'unconfirmed'; reason: string; fix: string } {
  const missing = / no metric /.test(problem);
  return {
    result: 'unconfirmed',
    reason: problem,
    fix: missing
      ? 'check the metric name (config-reloader.io/success-metric, timestamp-metric) or the preset: the app may ' +
        'not export it (e.g. VictoriaMetrics single-node without -promscrape.config)'
      : `check config-reloader.io/metrics-url (${config.metricsUrl.origin}${config.metricsUrl.pathname}) or the preset's port, and that the app serves Prometheus text there`,
  };
}
