/**
 * An application as the reloader sees it, in the test process: a reload endpoint and a /metrics page whose
 * success and timestamp metrics follow what the test scripts. `mode` is how it reloads:
 * - `async` (vmagent, vmalert): answers 200 at once, then reloads;
 * - `sync` (Prometheus, Alertmanager): reloads, then answers 200, or 500 when the config is bad;
 * - `ignore`: answers 200 and never reloads (a wrong URL or signal, or no effective change).
 * A reload reads `file` (a config the reloader wrote): content containing `broken` is a bad config (success 0,
 * timestamp kept), anything else a good one (success 1, timestamp = `clock()`). With `copyMs`, /metrics is served
 * as VictoriaMetrics serves it (lib/appmetrics): from a copy of the page, made again only when a read finds it
 * older than that.
 */
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export class StandInApp {
  mode: 'async' | 'sync' | 'ignore' = 'async';
  /** undefined: the metric is not on the page. */
  success: number | undefined = 1;
  timestamp: number | undefined = 1_700_000_000.25;
  successName = 'app_config_last_reload_successful';
  timestampName = 'app_config_last_reload_success_timestamp_seconds';
  /** The timestamp a good reload reports: fractional seconds (Prometheus) unless a test makes it whole. */
  clock: () => number = () => Date.now() / 1000;
  /**
   * false: a good reload leaves the timestamp as it is (VictoriaMetrics going back to the config it kept running
   * after a refused one, or finding nothing changed).
   */
  bump = true;
  /** The config file each reload reads. */
  file = '';
  /** `async` mode: how long after answering the app reloads. */
  reloadDelayMs = 20;
  /** 0: every read of /metrics sees the state now; else a copy up to this old (VictoriaMetrics: 1000). */
  copyMs = 0;
  private copy: { page: string; at: number } | undefined;
  /** How many times /metrics was read. */
  metricsReads = 0;
  /** Date.now() of each reload request. */
  readonly reloads: number[] = [];
  private server: Server | undefined;
  origin = '';

  get reloadUrl(): string {
    return `${this.origin}/-/reload`;
  }

  get metricsUrl(): string {
    return `${this.origin}/metrics`;
  }

  /** Reads the config as the app would: good or bad. */
  reload(): boolean {
    let good = false;
    try {
      good = !readFileSync(this.file, 'utf8').includes('broken');
    } catch {
      good = false;
    }
    if (good) {
      this.success = 1;
      if (this.bump) this.timestamp = this.clock();
    } else this.success = 0;
    return good;
  }

  page(): string {
    const lines = [
      '# HELP go_goroutines Number of goroutines.',
      '# TYPE go_goroutines gauge',
      'go_goroutines 12',
    ];
    if (this.success !== undefined) lines.push(`${this.successName} ${this.success}`);
    if (this.timestamp !== undefined) lines.push(`${this.timestampName} ${this.timestamp}`);
    lines.push('process_start_time_seconds{pid="1"} 1.7e+09');
    return lines.join('\n') + '\n';
  }

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      if (req.url === '/metrics') {
        this.metricsReads++;
        res.setHeader('content-type', 'text/plain; version=0.0.4');
        const now = performance.now();
        if (this.copyMs === 0 || !this.copy || now - this.copy.at > this.copyMs)
          this.copy = { page: this.page(), at: now };
        res.end(this.copy.page);
        return;
      }
      if (req.url !== '/-/reload') {
        res.statusCode = 404;
        res.end();
        return;
      }
      this.reloads.push(Date.now());
      if (this.mode === 'sync') {
        const good = this.reload();
        res.statusCode = good ? 200 : 500;
        // What Prometheus answers: the error, which may quote the config. The reloader must not log it.
        res.end(good ? '' : `failed to reload config: ${readFileSync(this.file, 'utf8')}`);
        return;
      }
      res.end();
      if (this.mode === 'async') setTimeout(() => this.reload(), this.reloadDelayMs);
    });
    await new Promise<void>((r) => this.server?.listen(0, '127.0.0.1', r));
    this.origin = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** The flags that point the reloader at this app. */
  flags(opts: { timestamp?: boolean; timeout?: string; delivery?: boolean } = {}): string[] {
    return [
      ...(opts.delivery === false ? [] : ['--reload-url', this.reloadUrl]),
      '--confirm-metrics-url',
      this.metricsUrl,
      '--confirm-success-metric',
      this.successName,
      ...(opts.timestamp === false ? [] : ['--confirm-timestamp-metric', this.timestampName]),
      '--confirm-timeout',
      opts.timeout ?? '10s',
    ];
  }

  async close(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}
