import type { Checked } from './knobs.ts';
import type { ReloadMethod } from './reload-url.ts';
import type { ReloadSignal } from '../shared/reload-signal.ts';

/**
 * config-reloader.io/preset: an app's own reload endpoint and its own report of the last reload, read from each
 * app's source at a pinned version (docs/annotations.md#presets cites the lines). A preset names the app's default
 * port; a pod that moves it (a listen flag in the container's arguments) is warned, as the preset cannot know it.
 */
export interface Preset {
  /** The app as the docs name it. */
  app: string;
  port: number;
  reloadPath: string;
  reloadMethod: ReloadMethod;
  metricsPath: string;
  successMetric: string;
  timestampMetric: string;
  /** What the app does with the reload request: `sync` answers after the reload (an error status on failure). */
  answer: 'sync' | 'async';
  /**
   * A successful reload that finds nothing to change in the effective config (a comment-only edit, a key the app
   * does not read) sets the success metric to 1 and leaves the timestamp as it was: the sidecar gets
   * --confirm-unchanged-keeps-timestamp, while the timestamp metric is the preset's own (build.ts).
   */
  unchangedKeepsTimestamp: boolean;
  /** The app also reloads on this signal. */
  signal: ReloadSignal;
  /** Image names (the repository's last part) of the app, to find its container in a pod with several. */
  images: string[];
  /** The app's flags that the preset's URLs depend on, and what each one breaks. */
  flags: PresetFlags;
  /** Where each fact comes from: source files at the pinned version. */
  citations: string[];
}

export interface PresetFlags {
  /**
   * How the app's docs write its flags, for the warnings: `-` for Go's flag package (VictoriaMetrics, which takes
   * both), `--` for kingpin (Prometheus and its exporters, which take only that).
   */
  dash: '-' | '--';
  /** The flag that moves the HTTP listener: the preset's port is then wrong. */
  listen: string[];
  /** Flags that move every path under a prefix. */
  prefix?: string[];
  /** Flags without which the HTTP reload is refused, and the answer the app gives. */
  reloadNeeds?: { flag: string; answer: string };
  /** Flags that make the reload need a key the preset's URL does not carry. */
  reloadKey?: string;
  /** Flags that make the metrics need a key. */
  metricsKey?: string;
  /** The success metric exists only with this flag. */
  metricsNeed?: string;
}

const VM = 'VictoriaMetrics v1.151.0 (github.com/VictoriaMetrics/VictoriaMetrics)';
const vmFlags = (listen: string[]): PresetFlags => ({
  dash: '-',
  listen,
  reloadKey: 'reloadAuthKey',
  metricsKey: 'metricsAuthKey',
});

export const PRESETS = {
  vmagent: {
    app: 'vmagent',
    port: 8429,
    reloadPath: '/-/reload',
    reloadMethod: 'POST',
    metricsPath: '/metrics',
    // The scrape config's report (names vm_promscrape_*, not vmagent_*): registered only with -promscrape.config.
    successMetric: 'vm_promscrape_config_last_reload_successful',
    timestampMetric: 'vm_promscrape_config_last_reload_success_timestamp_seconds',
    answer: 'async',
    unchangedKeepsTimestamp: true,
    signal: 'SIGHUP',
    images: ['vmagent'],
    flags: { ...vmFlags(['httpListenAddr']), metricsNeed: 'promscrape.config' },
    citations: [
      `${VM}: app/vmagent/main.go:148 (port 8429), app/vmagent/main.go:545-551 (/-/reload: SIGHUP to itself, then 200), lib/promscrape/scraper.go:105-110,222-227 (the metrics, only with -promscrape.config), lib/promscrape/scraper.go:187-191 (no job changed: success 1, timestamp kept), lib/procutil/signal.go:19-48 (SIGHUP)`,
    ],
  },
  vmalert: {
    app: 'vmalert',
    port: 8880,
    reloadPath: '/-/reload',
    reloadMethod: 'POST',
    metricsPath: '/metrics',
    successMetric: 'vmalert_config_last_reload_successful',
    timestampMetric: 'vmalert_config_last_reload_success_timestamp_seconds',
    answer: 'async',
    unchangedKeepsTimestamp: true,
    signal: 'SIGHUP',
    images: ['vmalert'],
    flags: vmFlags(['httpListenAddr']),
    citations: [
      `${VM}: app/vmalert/main.go:179-181 (port 8880), app/vmalert/web.go:226-232 (/-/reload), app/vmalert/main.go:171,300-376 (SIGHUP, the reload), app/vmalert/main.go:200-205 (the metrics), app/vmalert/main.go:357-365 (rule groups unchanged: success 1, timestamp kept)`,
    ],
  },
  vmauth: {
    app: 'vmauth',
    port: 8427,
    reloadPath: '/-/reload',
    reloadMethod: 'POST',
    metricsPath: '/metrics',
    successMetric: 'vmauth_config_last_reload_successful',
    timestampMetric: 'vmauth_config_last_reload_success_timestamp_seconds',
    answer: 'async',
    unchangedKeepsTimestamp: true,
    signal: 'SIGHUP',
    images: ['vmauth'],
    // With -httpInternalListenAddr, /-/reload and /metrics are served only there.
    flags: vmFlags(['httpInternalListenAddr', 'httpListenAddr']),
    citations: [
      `${VM}: app/vmauth/main.go:117 (port 8427), app/vmauth/main.go:43,123-136 (-httpInternalListenAddr), app/vmauth/main.go:155-166 (/-/reload), app/vmauth/auth_config.go:794-799,830-865 (the metrics), app/vmauth/auth_config.go:847-851,914-918 (the same bytes: success 1, timestamp kept)`,
    ],
  },
  'victoria-metrics': {
    app: 'VictoriaMetrics single-node',
    port: 8428,
    reloadPath: '/-/reload',
    reloadMethod: 'POST',
    metricsPath: '/metrics',
    successMetric: 'vm_promscrape_config_last_reload_successful',
    timestampMetric: 'vm_promscrape_config_last_reload_success_timestamp_seconds',
    answer: 'async',
    unchangedKeepsTimestamp: true,
    signal: 'SIGHUP',
    images: ['victoria-metrics'],
    flags: { ...vmFlags(['httpListenAddr']), metricsNeed: 'promscrape.config' },
    citations: [
      `${VM}: app/victoria-metrics/main.go:92 (port 8428), app/vminsert/main.go:370-377 (/-/reload), lib/promscrape/scraper.go:222-227 (the metrics, only with -promscrape.config), lib/promscrape/scraper.go:187-191 (no job changed: success 1, timestamp kept)`,
    ],
  },
  prometheus: {
    app: 'Prometheus',
    port: 9090,
    reloadPath: '/-/reload',
    reloadMethod: 'POST',
    metricsPath: '/metrics',
    successMetric: 'prometheus_config_last_reload_successful',
    timestampMetric: 'prometheus_config_last_reload_success_timestamp_seconds',
    answer: 'sync',
    unchangedKeepsTimestamp: false,
    signal: 'SIGHUP',
    images: ['prometheus'],
    flags: {
      dash: '--',
      listen: ['web.listen-address'],
      prefix: ['web.route-prefix', 'web.external-url'],
      reloadNeeds: {
        flag: 'web.enable-lifecycle',
        answer: 'Prometheus answers POST /-/reload with 403 "Lifecycle API is not enabled."',
      },
    },
    citations: [
      'Prometheus 3.16.0 (module v0.316.0), github.com/prometheus/prometheus: cmd/prometheus/main.go:439 (port 9090), web/web.go:585-607 (/-/reload: POST or PUT, 403 without --web.enable-lifecycle), web/web.go:966-972 (synchronous, 500 on failure), cmd/prometheus/main.go:135-142,1741-1754 (the metrics), cmd/prometheus/main.go:1405,1431 (SIGHUP)',
    ],
  },
  alertmanager: {
    app: 'Alertmanager',
    port: 9093,
    reloadPath: '/-/reload',
    reloadMethod: 'POST',
    metricsPath: '/metrics',
    successMetric: 'alertmanager_config_last_reload_successful',
    timestampMetric: 'alertmanager_config_last_reload_success_timestamp_seconds',
    answer: 'sync',
    unchangedKeepsTimestamp: false,
    signal: 'SIGHUP',
    images: ['alertmanager'],
    flags: { dash: '--', listen: ['web.listen-address'], prefix: ['web.route-prefix', 'web.external-url'] },
    citations: [
      'Alertmanager v0.34.0 (github.com/prometheus/alertmanager): cmd/alertmanager/main.go:63 (port 9093), httpserver/httpserver.go:29-39 (/metrics; /-/reload: POST only, synchronous, 500 on failure), cmd/alertmanager/main.go:135-150 (SIGHUP), config/coordinator.go:59-73,108-146 (the metrics)',
    ],
  },
  'blackbox-exporter': {
    app: 'blackbox_exporter',
    port: 9115,
    reloadPath: '/-/reload',
    reloadMethod: 'POST',
    metricsPath: '/metrics',
    successMetric: 'blackbox_exporter_config_last_reload_successful',
    timestampMetric: 'blackbox_exporter_config_last_reload_success_timestamp_seconds',
    answer: 'sync',
    unchangedKeepsTimestamp: false,
    signal: 'SIGHUP',
    images: ['blackbox-exporter', 'blackbox_exporter'],
    flags: { dash: '--', listen: ['web.listen-address'], prefix: ['web.route-prefix', 'web.external-url'] },
    citations: [
      'blackbox_exporter v0.28.0-72-ge39d7d4 (github.com/prometheus/blackbox_exporter): main.go:61 (port 9115), main.go:189-202 (/-/reload: POST only, synchronous, 500 on failure), main.go:145-154 (SIGHUP), config/config.go:106-142 (the metrics)',
    ],
  },
} as const satisfies Record<string, Preset>;

export type PresetName = keyof typeof PRESETS;
export const PRESET_NAMES = Object.keys(PRESETS) as PresetName[];

export function checkPreset(text: string): Checked<PresetName> {
  const name = text.toLowerCase();
  if (Object.hasOwn(PRESETS, name)) return { ok: true, value: name as PresetName };
  return {
    ok: false,
    problem: `"${text}" is not a known preset`,
    fix: `use one of ${PRESET_NAMES.join(', ')}, or set reload-url, metrics-url and success-metric for another app`,
  };
}

/** The preset's reload URL on the loopback address, at the app's default port. */
export function presetReloadUrl(preset: Preset): string {
  return `http://127.0.0.1:${preset.port}${preset.reloadPath}`;
}

/** The metrics URL: the reload URL's origin (the app's listener, wherever the pod moved it) and the metrics path. */
export function presetMetricsUrl(preset: Preset, reloadUrl: string | undefined): string {
  return new URL(preset.metricsPath, reloadUrl ?? presetReloadUrl(preset)).href;
}

/**
 * The words of a container's command line: each element of command and args split on whitespace, so that flags
 * inside a shell line (`[sh, -c, "exec prometheus --web.enable-lifecycle"]`) are seen. Quotes are not parsed;
 * flags set outside the command line (environment variables, a config file) are not seen at all.
 */
export function commandWords(argv: readonly string[]): string[] {
  return argv.flatMap((arg) => arg.split(/\s+/).filter((word) => word !== ''));
}

/**
 * A flag's value in a container's command line, as Go's flag package (`-name=v`, `--name=v`, `-name v`) and
 * kingpin (`--name=v`, `--name v`) read it; `true` for a flag without a value; undefined when absent. `argv` is
 * already split into words (commandWords).
 */
export function flagIn(argv: readonly string[], name: string): string | true | undefined {
  let found: string | true | undefined;
  argv.forEach((arg, i) => {
    const match = /^--?([^=]+)(?:=(.*))?$/.exec(arg);
    if (match === null || match[1] !== name) return;
    if (match[2] !== undefined) found = match[2];
    else {
      const next = argv[i + 1];
      found = next !== undefined && !next.startsWith('-') ? next : true;
    }
  });
  return found;
}

/** The port of a listen address (`:8429`, `0.0.0.0:9090`, `[::]:9090`, a comma-separated list's first one). */
export function listenPort(address: string): number | undefined {
  const first = address.split(',')[0] ?? '';
  const match = /:(\d+)$/.exec(first.trim());
  return match ? Number(match[1]) : undefined;
}

/** How the sidecar calls the app: each URL's port, given when the URL is used, and whether the pod set it itself. */
export interface PresetUses {
  /** The HTTP reload's port (the preset's or reload-url's); undefined without an HTTP reload. */
  reloadPort: number | undefined;
  /** The confirmation's metrics port (the preset's, metrics-url's or reload-url's); undefined without confirmation. */
  metricsPort: number | undefined;
  ownReloadUrl: boolean;
  ownMetricsUrl: boolean;
}

/**
 * What the container's command line says against the preset's URLs: one warning each, naming the flag and the
 * annotation that fixes it. Only what a command line shows is judged (commandWords); flags set another way are not
 * seen, so these are warnings, not denials.
 */
export function presetArgWarnings(
  name: PresetName,
  container: string,
  command: readonly string[],
  uses: PresetUses,
): string[] {
  const preset: Preset = PRESETS[name];
  const { flags } = preset;
  const argv = commandWords(command);
  const dashed = (flag: string): string => `${flags.dash}${flag}`;
  const httpReload = uses.reloadPort !== undefined;
  const confirms = uses.metricsPort !== undefined;
  const warnings: string[] = [];
  const where = `container "${container}"`;
  const prefix = `config-reloader.io/preset: ${name}`;
  for (const flag of flags.listen) {
    const value = flagIn(argv, flag);
    const port = typeof value === 'string' ? listenPort(value) : undefined;
    if (port !== undefined) {
      // The URLs the sidecar calls, wherever they came from (the preset, reload-url, metrics-url), against the listener.
      const off = [
        { annotation: 'config-reloader.io/reload-url', what: 'reload URL', at: uses.reloadPort },
        { annotation: 'config-reloader.io/metrics-url', what: 'metrics URL', at: uses.metricsPort },
      ].filter(({ at }) => at !== undefined && at !== port);
      if (off.length > 0) {
        warnings.push(
          `${prefix}: ${where} sets ${dashed(flag)}=${String(value)}, so ${preset.app} listens on port ${port}, but the sidecar's ${off.map(({ what, at }) => `${what} calls port ${String(at)}`).join(' and its ')}; set ${off.map(({ annotation }) => annotation).join(' and ')} to port ${port}`,
        );
      }
    }
    // A set listener settles it (vmauth's internal listener comes first).
    if (value !== undefined) break;
  }
  const urlsFromPreset = (httpReload && !uses.ownReloadUrl) || (confirms && !uses.ownMetricsUrl);
  if (urlsFromPreset) {
    for (const flag of flags.prefix ?? []) {
      const value = flagIn(argv, flag);
      const path = typeof value === 'string' ? pathOf(value) : undefined;
      if (path !== undefined && path !== '' && path !== '/') {
        warnings.push(
          `${prefix}: ${where} sets ${dashed(flag)}=${String(value)}, which moves ${preset.app}'s endpoints under ${path}, but the preset's URLs have no prefix; set config-reloader.io/reload-url and config-reloader.io/metrics-url with the prefix`,
        );
        break;
      }
    }
  }
  if (httpReload && !uses.ownReloadUrl) {
    const needs = flags.reloadNeeds;
    if (needs !== undefined && !booleanOn(argv, needs.flag)) {
      warnings.push(
        `${prefix}: ${where} does not pass ${dashed(needs.flag)} in its command or args, and without it ${needs.answer}, so every reload would fail; add ${dashed(needs.flag)} to the container's args, or reload by signal with config-reloader.io/reload-signal: ${preset.signal}, which needs no flag`,
      );
    }
    if (flags.reloadKey !== undefined && flagIn(argv, flags.reloadKey) !== undefined) {
      // Not "put the key in reload-url": the URL is in the pod spec for anyone who can read it, which is why
      // reload-url refuses credentials (reload-url.ts).
      warnings.push(
        `${prefix}: ${where} sets ${dashed(flags.reloadKey)}, so ${preset.app} refuses a reload request without ?authKey=, which the preset's URL does not carry; reload by signal with config-reloader.io/reload-signal: ${preset.signal}, which needs no key (a key in config-reloader.io/reload-url would be readable by anyone who can read the pod spec)`,
      );
    }
  }
  if (confirms && flags.metricsKey !== undefined && flagIn(argv, flags.metricsKey) !== undefined) {
    warnings.push(
      `${prefix}: ${where} sets ${dashed(flags.metricsKey)}, so ${preset.app} refuses /metrics without ?authKey= and the reload cannot be confirmed; set config-reloader.io/metrics-url with ?authKey= (readable by anyone who can read the pod spec, so give /metrics a key of its own), or drop ${dashed(flags.metricsKey)}`,
    );
  }
  if (confirms && !uses.ownMetricsUrl && flags.metricsNeed !== undefined) {
    if (flagIn(argv, flags.metricsNeed) === undefined) {
      warnings.push(
        `${prefix}: ${where} does not pass ${dashed(flags.metricsNeed)}, and ${preset.successMetric} exists only with it, so no reload can be confirmed; set config-reloader.io/success-metric and config-reloader.io/timestamp-metric to the metrics of the config the sidecar writes`,
      );
    }
  }
  return warnings;
}

/** A kingpin boolean flag: `--name` or `--name=true`, unless a later `--no-name` or `--name=false` turns it off. */
function booleanOn(argv: readonly string[], name: string): boolean {
  let on = false;
  for (const arg of argv) {
    if (arg === `--${name}` || arg === `--${name}=true`) on = true;
    else if (arg === `--no-${name}` || arg === `--${name}=false`) on = false;
  }
  return on;
}

/** The path of --web.external-url or --web.route-prefix (a URL or a bare path). */
function pathOf(value: string): string | undefined {
  if (value.startsWith('/')) return value.replace(/\/+$/, '');
  try {
    return new URL(value).pathname.replace(/\/+$/, '');
  } catch {
    return undefined;
  }
}
