import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { commandWords, flagIn, listenPort, PRESET_NAMES, PRESETS } from '../../src/injection/presets.ts';
import { args, denial, flag, injected, makePod, sidecar, type Obj } from './pod-builder.ts';

const confirmFlags = (c: Obj): Record<string, string | undefined> => ({
  reloadUrl: flag(c, 'reload-url'),
  reloadMethod: flag(c, 'reload-method'),
  metricsUrl: flag(c, 'confirm-metrics-url'),
  success: flag(c, 'confirm-success-metric'),
  timestamp: flag(c, 'confirm-timestamp-metric'),
});

function presetPod(annotations: Record<string, string>, container: Obj = {}): Obj {
  return makePod({
    annotations,
    spec: {
      containers: [
        {
          name: 'app',
          image: 'example/app:1',
          volumeMounts: [{ name: 'config', mountPath: '/etc/app' }],
          ...container,
        },
      ],
    },
  });
}

describe('config-reloader.io/preset', () => {
  it('fills the reload URL, method and confirmation of each app (the facts cited in docs/annotations.md)', () => {
    const expected: Record<string, [number, string, string]> = {
      vmagent: [
        8429,
        'vm_promscrape_config_last_reload_successful',
        'vm_promscrape_config_last_reload_success_timestamp_seconds',
      ],
      vmalert: [
        8880,
        'vmalert_config_last_reload_successful',
        'vmalert_config_last_reload_success_timestamp_seconds',
      ],
      vmauth: [
        8427,
        'vmauth_config_last_reload_successful',
        'vmauth_config_last_reload_success_timestamp_seconds',
      ],
      'victoria-metrics': [
        8428,
        'vm_promscrape_config_last_reload_successful',
        'vm_promscrape_config_last_reload_success_timestamp_seconds',
      ],
      prometheus: [
        9090,
        'prometheus_config_last_reload_successful',
        'prometheus_config_last_reload_success_timestamp_seconds',
      ],
      alertmanager: [
        9093,
        'alertmanager_config_last_reload_successful',
        'alertmanager_config_last_reload_success_timestamp_seconds',
      ],
      'blackbox-exporter': [
        9115,
        'blackbox_exporter_config_last_reload_successful',
        'blackbox_exporter_config_last_reload_success_timestamp_seconds',
      ],
    };
    assert.deepEqual(PRESET_NAMES, Object.keys(expected));
    for (const [name, [port, success, timestamp]] of Object.entries(expected)) {
      const c = sidecar(injected(presetPod({ 'config-reloader.io/preset': name })).pod);
      assert.deepEqual(
        confirmFlags(c),
        {
          reloadUrl: `http://127.0.0.1:${port}/-/reload`,
          reloadMethod: 'POST',
          metricsUrl: `http://127.0.0.1:${port}/metrics`,
          success,
          timestamp,
        },
        name,
      );
    }
  });

  it('VictoriaMetrics presets tell the sidecar that an unchanged reload keeps the timestamp; the others do not', () => {
    const keeps = (annotations: Record<string, string>): boolean =>
      args(sidecar(injected(presetPod(annotations)).pod)).includes('--confirm-unchanged-keeps-timestamp');
    const expected: Record<string, boolean> = {
      vmagent: true,
      vmalert: true,
      vmauth: true,
      'victoria-metrics': true,
      prometheus: false,
      alertmanager: false,
      'blackbox-exporter': false,
    };
    assert.deepEqual(PRESET_NAMES, Object.keys(expected));
    for (const [name, value] of Object.entries(expected))
      assert.equal(keeps({ 'config-reloader.io/preset': name }), value, name);
    // Another timestamp metric: its behaviour on an unchanged reload is unknown (vmagent's relabel config
    // advances its timestamp every time), so the flag goes.
    assert.equal(
      keeps({
        'config-reloader.io/preset': 'vmagent',
        'config-reloader.io/success-metric': 'vmagent_relabel_config_last_reload_successful',
        'config-reloader.io/timestamp-metric': 'vmagent_relabel_config_last_reload_success_timestamp_seconds',
      }),
      false,
    );
    // The preset's own metric named explicitly: the same metric, the same behaviour.
    assert.equal(
      keeps({
        'config-reloader.io/preset': 'vmalert',
        'config-reloader.io/timestamp-metric': 'vmalert_config_last_reload_success_timestamp_seconds',
      }),
      true,
    );
    // By signal the preset's confirmation, and so the flag, stay.
    assert.equal(
      args(
        sidecar(
          injected(
            presetPod(
              { 'config-reloader.io/preset': 'vmauth', 'config-reloader.io/reload-signal': 'SIGHUP' },
              { securityContext: { runAsUser: 65534, runAsGroup: 65534 } },
            ),
          ).pod,
        ),
      ).includes('--confirm-unchanged-keeps-timestamp'),
      true,
    );
  });

  it('accepts any case, and each explicit annotation overrides its part', () => {
    const c = sidecar(
      injected(
        presetPod({
          'config-reloader.io/preset': 'VMAgent',
          'config-reloader.io/reload-url': 'http://127.0.0.1:8080/-/reload',
          'config-reloader.io/reload-method': 'get',
          'config-reloader.io/success-metric': 'vmagent_relabel_config_last_reload_successful',
          'config-reloader.io/timestamp-metric':
            'vmagent_relabel_config_last_reload_success_timestamp_seconds',
        }),
      ).pod,
    );
    assert.deepEqual(confirmFlags(c), {
      reloadUrl: 'http://127.0.0.1:8080/-/reload',
      reloadMethod: 'GET',
      // The metrics follow the app to the port of the explicit reload URL.
      metricsUrl: 'http://127.0.0.1:8080/metrics',
      success: 'vmagent_relabel_config_last_reload_successful',
      timestamp: 'vmagent_relabel_config_last_reload_success_timestamp_seconds',
    });
    const own = sidecar(
      injected(
        presetPod({
          'config-reloader.io/preset': 'vmalert',
          'config-reloader.io/metrics-url': 'http://localhost:9999/m',
        }),
      ).pod,
    );
    assert.equal(flag(own, 'confirm-metrics-url'), 'http://localhost:9999/m');
    assert.equal(flag(own, 'reload-url'), 'http://127.0.0.1:8880/-/reload');
  });

  it("with reload-signal the preset's HTTP reload is not used, its confirmation is", () => {
    const c = sidecar(
      injected(
        presetPod(
          { 'config-reloader.io/preset': 'prometheus', 'config-reloader.io/reload-signal': 'SIGHUP' },
          { securityContext: { runAsUser: 65534, runAsGroup: 65534 } },
        ),
      ).pod,
    );
    assert.deepEqual(confirmFlags(c), {
      reloadUrl: undefined,
      reloadMethod: undefined,
      metricsUrl: 'http://127.0.0.1:9090/metrics',
      success: 'prometheus_config_last_reload_successful',
      timestamp: 'prometheus_config_last_reload_success_timestamp_seconds',
    });
    assert.equal(flag(c, 'reload-signal'), 'SIGHUP');
  });

  it('denies an unknown preset, listing the known ones', () => {
    assert.equal(
      denial(presetPod({ 'config-reloader.io/preset': 'nginx' })),
      `config-reloader.io/preset: "nginx" is not a known preset; use one of ${PRESET_NAMES.join(', ')}, or set reload-url, metrics-url and success-metric for another app`,
    );
  });

  it("moves the sidecar off the app's ports, which no container declares", () => {
    const vmagent = presetPod(
      { 'config-reloader.io/preset': 'vmagent' },
      { args: ['-promscrape.config=/etc/app/scrape.yml'] },
    );
    const moved = injected(vmagent, { port: 8429 });
    assert.equal(flag(sidecar(moved.pod), 'listen'), ':8430');
    assert.deepEqual(moved.warnings, [
      "port 8429 is used by the app's reload URL (config-reloader.io/reload-url or config-reloader.io/preset); the config-reloader sidecar listens on 8430 instead",
    ]);
    // The metrics URL's port counts too, when it is not the reload URL's.
    const metrics = presetPod(
      {
        'config-reloader.io/preset': 'vmagent',
        'config-reloader.io/metrics-url': 'http://127.0.0.1:9533/metrics',
      },
      { args: ['-promscrape.config=/etc/app/scrape.yml'] },
    );
    const out = injected(metrics);
    assert.equal(flag(sidecar(out.pod), 'listen'), ':9534');
    assert.match(out.warnings.join('\n'), /port 9533 is used by the app's metrics URL/);
  });
});

describe("preset warnings from the app's command line", () => {
  const warned = (preset: string, container: Obj, annotations: Record<string, string> = {}): string[] =>
    injected(presetPod({ 'config-reloader.io/preset': preset, ...annotations }, container)).warnings;

  it('Prometheus without --web.enable-lifecycle: the HTTP reload would get 403; SIGHUP needs no flag', () => {
    assert.deepEqual(warned('prometheus', { args: ['--config.file=/etc/prometheus/prometheus.yml'] }), [
      'config-reloader.io/preset: prometheus: container "app" does not pass --web.enable-lifecycle in its command or args, and without it Prometheus answers POST /-/reload with 403 "Lifecycle API is not enabled.", so every reload would fail; add --web.enable-lifecycle to the container\'s args, or reload by signal with config-reloader.io/reload-signal: SIGHUP, which needs no flag',
    ]);
    assert.deepEqual(warned('prometheus', { command: ['/bin/prometheus', '--web.enable-lifecycle'] }), []);
    assert.deepEqual(warned('prometheus', { args: ['--web.enable-lifecycle=true'] }), []);
    assert.equal(
      warned('prometheus', { args: ['--web.enable-lifecycle', '--no-web.enable-lifecycle'] }).length,
      1,
    );
    // No warning when the reload goes by signal, or to the user's own URL.
    assert.deepEqual(
      warned(
        'prometheus',
        { securityContext: { runAsUser: 65534, runAsGroup: 65534 } },
        { 'config-reloader.io/reload-signal': 'HUP' },
      ),
      [],
    );
    assert.deepEqual(
      warned('prometheus', {}, { 'config-reloader.io/reload-url': 'http://127.0.0.1:9090/-/reload' }),
      [],
    );
  });

  it('a moved listener, a route prefix, auth keys and vmagent without -promscrape.config', () => {
    assert.match(
      warned('prometheus', { args: ['--web.enable-lifecycle', '--web.listen-address=0.0.0.0:9095'] }).join(
        '\n',
      ),
      /container "app" sets --web\.listen-address=0\.0\.0\.0:9095, so Prometheus listens on port 9095, but the sidecar's reload URL calls port 9090 and its metrics URL calls port 9090; set config-reloader\.io\/reload-url and config-reloader\.io\/metrics-url to port 9095/,
    );
    assert.match(
      warned('alertmanager', { args: ['--web.external-url=https://example.com/alertmanager/'] }).join('\n'),
      /sets --web\.external-url=https:\/\/example\.com\/alertmanager\/, which moves Alertmanager's endpoints under \/alertmanager/,
    );
    assert.deepEqual(warned('alertmanager', { args: ['--web.external-url=https://example.com/'] }), []);
    const vm = warned('vmagent', {
      args: ['-httpListenAddr', ':8080', '-reloadAuthKey=k', '-metricsAuthKey=m'],
    });
    assert.equal(vm.length, 4, vm.join('\n'));
    assert.match(
      vm[0] ?? '',
      /sets -httpListenAddr=:8080, so vmagent listens on port 8080, but the sidecar's reload URL calls port 8429 and its metrics URL calls port 8429/,
    );
    // Not "put the key in reload-url": reload-url refuses credentials because the pod spec is readable.
    assert.match(
      vm[1] ?? '',
      /sets -reloadAuthKey, so vmagent refuses a reload request without \?authKey=, .*; reload by signal with config-reloader\.io\/reload-signal: SIGHUP, which needs no key \(a key in config-reloader\.io\/reload-url would be readable by anyone who can read the pod spec\)$/,
    );
    assert.match(vm[2] ?? '', /sets -metricsAuthKey, so vmagent refuses \/metrics without \?authKey=/);
    assert.match(
      vm[3] ?? '',
      /does not pass -promscrape\.config, and vm_promscrape_config_last_reload_successful exists only with it/,
    );
    assert.deepEqual(
      warned('vmagent', { args: ['-promscrape.config=/etc/vmagent/scrape.yml', '-httpListenAddr=:8429'] }),
      [],
    );
    // vmauth's internal listener, when set, is where /-/reload lives.
    assert.match(
      warned('vmauth', { args: ['-httpListenAddr=:8427', '-httpInternalListenAddr=:8426'] }).join('\n'),
      /sets -httpInternalListenAddr=:8426/,
    );
  });

  it("judges the listener against the URLs the sidecar calls, the pod's own included, not the preset's port", () => {
    const moved = { args: ['--web.enable-lifecycle', '--web.listen-address=:9191'] };
    // The pod points reload-url at the moved port: the metrics URL follows its origin, nothing is off.
    assert.deepEqual(
      warned('prometheus', moved, { 'config-reloader.io/reload-url': 'http://127.0.0.1:9191/-/reload' }),
      [],
    );
    // Only the metrics URL is off: only it is named.
    assert.deepEqual(
      warned('prometheus', moved, {
        'config-reloader.io/reload-url': 'http://127.0.0.1:9191/-/reload',
        'config-reloader.io/metrics-url': 'http://127.0.0.1:9090/metrics',
      }),
      [
        'config-reloader.io/preset: prometheus: container "app" sets --web.listen-address=:9191, so Prometheus listens on port 9191, but the sidecar\'s metrics URL calls port 9090; set config-reloader.io/metrics-url to port 9191',
      ],
    );
    // By signal there is no reload URL; the preset's metrics URL is still on the default port.
    assert.match(
      warned(
        'prometheus',
        { ...moved, securityContext: { runAsUser: 65534, runAsGroup: 65534 } },
        { 'config-reloader.io/reload-signal': 'SIGHUP' },
      ).join('\n'),
      /but the sidecar's metrics URL calls port 9090; set config-reloader\.io\/metrics-url to port 9191/,
    );
  });

  it('reads flags inside a shell line: each element of command and args split on whitespace', () => {
    assert.deepEqual(
      warned('prometheus', {
        command: ['sh', '-c', 'exec prometheus --config.file=/etc/app/p.yml --web.enable-lifecycle'],
      }),
      [],
    );
    assert.match(
      warned('vmagent', {
        command: ['/bin/sh', '-c'],
        args: ['exec /vmagent  -promscrape.config=/etc/app/s.yml\n  -httpListenAddr :8080'],
      }).join('\n'),
      /sets -httpListenAddr=:8080, so vmagent listens on port 8080/,
    );
    assert.deepEqual(commandWords(['sh', '-c', ' a  b\tc\n']), ['sh', '-c', 'a', 'b', 'c']);
  });

  it('an ignored signal-container (no reload-signal) does not choose the container judged', () => {
    const spec = {
      containers: [
        { name: 'prom', image: 'quay.io/prometheus/prometheus:v3.0.0', args: [] },
        { name: 'helper', image: 'example/prometheus:1', args: ['--web.enable-lifecycle'] },
      ],
    };
    const annotations = {
      'config-reloader.io/preset': 'prometheus',
      'config-reloader.io/signal-container': 'helper',
    };
    const { warnings } = injected(makePod({ annotations, spec }));
    assert.ok(
      warnings.includes(
        'config-reloader.io/signal-container is ignored without config-reloader.io/reload-signal',
      ),
    );
    // Two app containers and two images named prometheus: no container is judged, so no preset warning.
    assert.deepEqual(
      warnings.filter((w) => w.startsWith('config-reloader.io/preset')),
      [],
    );
    const byImage = structuredClone(spec);
    (byImage.containers[1] as Obj).image = 'example/helper:1';
    assert.match(
      injected(makePod({ annotations, spec: byImage })).warnings.join('\n'),
      /container "prom" does not pass --web\.enable-lifecycle/,
    );
  });

  it('writes each flag with the dashes its app documents', () => {
    for (const [name, preset] of Object.entries(PRESETS))
      assert.equal(
        preset.flags.dash,
        preset.citations.join(' ').startsWith('VictoriaMetrics') ? '-' : '--',
        name,
      );
    assert.match(
      warned('alertmanager', { args: ['--web.listen-address=:9999'] }).join('\n'),
      /sets --web\.listen-address=:9999/,
    );
  });

  it('judges the container the preset is for: by signal-container, the only app container, or the image', () => {
    const spec = {
      containers: [
        { name: 'proxy', image: 'nginx:1', volumeMounts: [{ name: 'config', mountPath: '/etc/nginx' }] },
        { name: 'prom', image: 'quay.io/prometheus/prometheus:v3.0.0', args: [] },
        // Not Prometheus, though its name says prometheus.
        { name: 'reloader', image: 'quay.io/prometheus-operator/prometheus-config-reloader:v0.80.0' },
      ],
    };
    const { warnings } = injected(
      makePod({ annotations: { 'config-reloader.io/preset': 'prometheus' }, spec }),
    );
    assert.match(warnings.join('\n'), /container "prom" does not pass --web\.enable-lifecycle/);
    const unknown = structuredClone(spec);
    (unknown.containers[1] as Obj).image = 'example/metrics:1';
    assert.deepEqual(
      injected(makePod({ annotations: { 'config-reloader.io/preset': 'prometheus' }, spec: unknown }))
        .warnings,
      [],
    );
  });

  it('reads Go and kingpin flags the way they do', () => {
    assert.equal(flagIn(['-a=1'], 'a'), '1');
    assert.equal(flagIn(['--a', '2'], 'a'), '2');
    assert.equal(flagIn(['-a', '--b'], 'a'), true);
    assert.equal(flagIn(['-ab=1'], 'a'), undefined);
    assert.equal(flagIn(['-a=1', '-a=2'], 'a'), '2');
    assert.equal(listenPort(':8429'), 8429);
    assert.equal(listenPort('[::]:9090'), 9090);
    assert.equal(listenPort('0.0.0.0:9090,:9091'), 9090);
    assert.equal(listenPort('localhost'), undefined);
  });

  it('every preset cites its sources', () => {
    for (const [name, preset] of Object.entries(PRESETS)) {
      assert.ok(preset.citations.length > 0, name);
      assert.match(preset.citations.join(' '), /\.go:\d+/, name);
    }
    assert.ok(args(sidecar(injected(presetPod({ 'config-reloader.io/preset': 'vmauth' })).pod)).length > 0);
  });
});
