import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UsageError } from '../../src/shared/cli.ts';
import {
  DEFAULT_SERVICE_ACCOUNT_DIR,
  parseReloaderConfig,
  RELOADER_HELP,
  type ReloaderConfig,
} from '../../src/reloader/config.ts';

const KUBE = ['--kubeconfig', '/etc/kube/config'];

function parse(args: string[], env: NodeJS.ProcessEnv = {}): ReloaderConfig {
  const config = parseReloaderConfig(args, env);
  assert.ok(config, 'expected a config, got --help');
  return config;
}

function rejects(args: string[], message: RegExp, env: NodeJS.ProcessEnv = {}): void {
  assert.throws(
    () => parseReloaderConfig(args, env),
    (err: unknown) => err instanceof UsageError && message.test(err.message),
  );
}

void describe('reloader config', () => {
  void it('applies the documented defaults', () => {
    const c = parse(['--source', 'secret/app-config=/etc/app', ...KUBE]);
    assert.deepEqual(c.sources, [{ kind: 'secret', name: 'app-config', dir: '/etc/app' }]);
    assert.deepEqual(c.cluster, { mode: 'kubeconfig', path: '/etc/kube/config' });
    assert.equal(c.reload, undefined);
    assert.equal(c.once, false);
    assert.equal(c.onceTimeoutMs, 30_000);
    assert.deepEqual(c.listen, { host: '0.0.0.0', port: 9533 });
    assert.equal(c.logLevel, 'info');
    assert.equal(c.healthTimeoutMs, 60_000);
    assert.equal(c.resyncMs, 300_000);
    assert.equal(c.namespace, undefined);
    assert.equal(c.fsGroup, undefined);
  });

  void it('takes --fs-group as a group ID from 0 to 2147483647, and names the flag for anything else', () => {
    const at = (v: string): number | undefined =>
      parse(['--source', 'secret/a=/a', ...KUBE, `--fs-group=${v}`]).fsGroup;
    assert.equal(at('2000'), 2000);
    assert.equal(at('0'), 0);
    assert.equal(at('2147483647'), 2147483647);
    for (const bad of ['-1', '2147483648', '99999999999', '1.5', '1e3', '0x10', 'root', '', ' 2000'])
      rejects(
        ['--source', 'secret/a=/a', ...KUBE, `--fs-group=${bad}`],
        /^--fs-group ".*" is not a group ID: give the pod's securityContext.fsGroup, an integer from 0 to 2147483647$/,
      );
  });

  void it('parses every flag', () => {
    const c = parse([
      '--source',
      'secret/a=/a?optional=true&item=tls.crt:certs/tls.crt:0600',
      '--source',
      'configmap/b=/b?gunzip=true&defaultMode=0440',
      '--namespace',
      'shop',
      ...KUBE,
      '--reload-url',
      'http://127.0.0.1:8080/-/reload',
      '--reload-method',
      'put',
      '--reload-timeout',
      '2s',
      '--once',
      '--once-timeout',
      '1m',
      '--listen',
      '127.0.0.1:0',
      '--health-timeout',
      '90s',
      '--resync',
      '0',
      '--log-level',
      'trace',
    ]);
    assert.equal(c.sources.length, 2);
    assert.deepEqual(c.sources[0]?.items, [{ key: 'tls.crt', path: 'certs/tls.crt', mode: 0o600 }]);
    assert.equal(c.sources[1]?.defaultMode, 0o440);
    assert.equal(c.namespace, 'shop');
    assert.equal(c.reload?.url.href, 'http://127.0.0.1:8080/-/reload');
    assert.equal(c.reload?.method, 'PUT');
    assert.equal(c.reload?.timeoutMs, 2000);
    assert.equal(c.once, true);
    assert.equal(c.onceTimeoutMs, 60_000);
    assert.deepEqual(c.listen, { host: '127.0.0.1', port: 0 });
    assert.equal(c.healthTimeoutMs, 90_000);
    assert.equal(c.resyncMs, 0);
    assert.equal(c.logLevel, 'trace');
  });

  void it('takes the namespace from POD_NAMESPACE and the kubeconfig from KUBECONFIG (first entry)', () => {
    const c = parse(['--source', 'secret/a=/a'], {
      POD_NAMESPACE: 'team-a',
      KUBECONFIG: ':/home/me/.kube/config:/other',
    });
    assert.equal(c.namespace, 'team-a');
    assert.deepEqual(c.cluster, { mode: 'kubeconfig', path: '/home/me/.kube/config' });
    assert.equal(
      parse(['--source', 'secret/a=/a', ...KUBE, '--namespace', 'flag-wins'], { POD_NAMESPACE: 'env' })
        .namespace,
      'flag-wins',
    );
  });

  void it('falls back to the in-cluster service account', () => {
    const c = parse(['--source', 'secret/a=/a'], {
      KUBERNETES_SERVICE_HOST: '10.96.0.1',
      KUBERNETES_SERVICE_PORT: '6443',
    });
    assert.deepEqual(c.cluster, {
      mode: 'in-cluster',
      host: '10.96.0.1',
      port: '6443',
      serviceAccountDir: DEFAULT_SERVICE_ACCOUNT_DIR,
    });
    const moved = parse(['--source', 'secret/a=/a', '--serviceaccount-dir', '/tmp/sa'], {
      KUBERNETES_SERVICE_HOST: 'h',
    });
    assert.deepEqual(moved.cluster, {
      mode: 'in-cluster',
      host: 'h',
      port: '443',
      serviceAccountDir: '/tmp/sa',
    });
  });

  void it('returns undefined for --help, whose text lists every flag with its default', () => {
    assert.equal(parseReloaderConfig(['--help'], {}), undefined);
    for (const flag of [
      '--source',
      '--namespace',
      '--kubeconfig',
      '--reload-url',
      '--reload-method',
      '--reload-timeout',
      '--once',
      '--once-timeout',
      '--listen',
      '--health-timeout',
      '--resync',
      '--log-level',
      '--fs-group',
    ]) {
      assert.match(RELOADER_HELP, new RegExp(`${flag} `), flag);
    }
    assert.match(RELOADER_HELP, /default :9533/);
    assert.match(RELOADER_HELP, /default POST/);
  });

  void it('rejects bad flags with a UsageError that names the problem', () => {
    rejects([...KUBE], /at least one --source/);
    rejects(['--source', 'pod/x=/x', ...KUBE], /kind "pod"/);
    rejects(['--source', 'secret/a=relative', ...KUBE], /not absolute/);
    rejects(['--source', 'secret/a=/same', '--source', 'configmap/b=/same/', ...KUBE], /both write into/);
    rejects(
      ['--source', 'secret/a=/a', ...KUBE, '--reload-url', 'not a url'],
      /--reload-url "not a url" is not a URL/,
    );
    rejects(['--source', 'secret/a=/a', ...KUBE, '--reload-url', 'ftp://x/'], /must be http/);
    rejects(
      ['--source', 'secret/a=/a', ...KUBE, '--reload-url', 'http://x/', '--reload-method', 'GE T'],
      /--reload-method/,
    );
    rejects(
      ['--source', 'secret/a=/a', ...KUBE, '--reload-timeout', 'soon'],
      /--reload-timeout "soon" is not a duration/,
    );
    rejects(
      ['--source', 'secret/a=/a', ...KUBE, '--reload-url', 'http://x/', '--reload-timeout', '0s'],
      /--reload-timeout must be longer than 0/,
    );
    rejects(['--source', 'secret/a=/a', ...KUBE, '--listen', ':99999'], /--listen "99999"/);
    rejects(['--source', 'secret/a=/a', ...KUBE, '--log-level', 'loud'], /--log-level "loud"/);
    rejects(['--source', 'secret/a=/a', ...KUBE, '--namespace', 'Bad_NS'], /namespace "Bad_NS"/);
    rejects(
      ['--source', 'secret/a=/a', ...KUBE, '--health-timeout', '0'],
      /--health-timeout must be longer than 0/,
    );
    rejects(['--source', 'secret/a=/a', ...KUBE, '--no-such-flag'], /no-such-flag.*reloader --help/);
    rejects(['--source', 'secret/a=/a', ...KUBE, 'stray'], /unexpected argument "stray"/);
    rejects(['--source', 'secret/a=/a'], /no --kubeconfig, no KUBECONFIG and not running in a cluster/);
  });

  void it('takes the hidden --backoff BASE[:MAX] for every retry, and names the flag when it is wrong', () => {
    const base = ['--source', 'secret/a=/a', ...KUBE];
    assert.equal(parse(base).backoff, undefined);
    assert.deepEqual(parse([...base, '--backoff', '60s:60s']).backoff, { baseMs: 60_000, maxMs: 60_000 });
    assert.deepEqual(parse([...base, '--backoff', '20ms']).backoff, { baseMs: 20, maxMs: 10_000 });
    rejects([...base, '--backoff', '1s:2s:3s'], /--backoff "1s:2s:3s" is not BASE\[:MAX\]/);
    rejects([...base, '--backoff', '2s:1s'], /MAX is shorter than BASE/);
    rejects([...base, '--backoff', '0'], /--backoff must be longer than 0/);
    assert.doesNotMatch(RELOADER_HELP, /--backoff/, 'hidden');
  });
});

void describe('reloader config: signal delivery, confirmation, events, restarts', () => {
  const base = ['--source', 'secret/a=/a', ...KUBE];
  const POD_ENV = { POD_NAME: 'web-0', POD_UID: '1b4e-uid', POD_NAMESPACE: 'shop' };

  void it('takes --reload-signal in any spelling, canonical SIGHUP, with --signal-container', () => {
    for (const spelling of ['HUP', 'hup', 'SIGHUP', 'sighup', ' SigHup ']) {
      const c = parse([...base, '--reload-signal', spelling, '--signal-container', 'app']);
      assert.deepEqual(c.signal, { signal: 'SIGHUP', container: 'app' });
      assert.equal(c.reload, undefined);
    }
    assert.equal(
      parse([...base, '--reload-signal', 'usr2', '--signal-container', 'a']).signal?.signal,
      'SIGUSR2',
    );
    assert.equal(parse(base).signal, undefined);
  });

  void it('names the flag and the fix for every signal problem', () => {
    rejects(
      [...base, '--reload-signal', 'SIGTERM', '--signal-container', 'app'],
      /--reload-signal "SIGTERM" is not a reload signal: give SIGHUP, SIGUSR1 or SIGUSR2/,
    );
    rejects([...base, '--reload-signal', 'KILL', '--signal-container', 'app'], /not a reload signal/);
    rejects([...base, '--reload-signal', 'HUP'], /--reload-signal SIGHUP needs --signal-container NAME/);
    rejects([...base, '--signal-container', 'app'], /--signal-container needs --reload-signal/);
    rejects(
      [
        ...base,
        '--reload-signal',
        'HUP',
        '--signal-container',
        'app',
        '--reload-url',
        'http://127.0.0.1/-/reload',
      ],
      /--reload-url and --reload-signal both given/,
    );
    rejects(
      [...base, '--reload-signal', 'HUP', '--signal-container', 'App_1'],
      /--signal-container: "App_1" is not a container name/,
    );
  });

  void it('parses confirmation with its default timeout, with HTTP or signal delivery', () => {
    const c = parse([
      ...base,
      '--reload-url',
      'http://127.0.0.1:8429/-/reload',
      '--confirm-metrics-url',
      'http://127.0.0.1:8429/metrics',
      '--confirm-success-metric',
      'vm_promscrape_config_last_reload_successful',
      '--confirm-timestamp-metric',
      'vm_promscrape_config_last_reload_success_timestamp_seconds',
    ]);
    assert.equal(c.confirm?.metricsUrl.href, 'http://127.0.0.1:8429/metrics');
    assert.equal(c.confirm?.successMetric, 'vm_promscrape_config_last_reload_successful');
    assert.equal(c.confirm?.timestampMetric, 'vm_promscrape_config_last_reload_success_timestamp_seconds');
    assert.equal(c.confirm?.timeoutMs, 30_000);
    assert.equal(c.confirm?.unchangedKeepsTimestamp, undefined, 'off unless given');
    const vm = parse([
      ...base,
      '--reload-url=http://127.0.0.1:8880/-/reload',
      '--confirm-metrics-url=http://127.0.0.1:8880/metrics',
      '--confirm-success-metric=vmalert_config_last_reload_successful',
      '--confirm-timestamp-metric=vmalert_config_last_reload_success_timestamp_seconds',
      '--confirm-unchanged-keeps-timestamp',
    ]);
    assert.equal(vm.confirm?.unchangedKeepsTimestamp, true);
    const s = parse([
      ...base,
      '--reload-signal=HUP',
      '--signal-container=app',
      '--confirm-metrics-url=https://127.0.0.1:9090/metrics',
      '--confirm-success-metric=prometheus_config_last_reload_successful',
      '--confirm-timeout=5s',
    ]);
    assert.equal(s.confirm?.timestampMetric, undefined);
    assert.equal(s.confirm?.timeoutMs, 5000);
    assert.equal(parse(base).confirm, undefined);
  });

  void it('names the flag and the fix for every confirmation problem', () => {
    const url = ['--reload-url', 'http://127.0.0.1/-/reload'];
    rejects(
      [...base, ...url, '--confirm-metrics-url', 'http://x/metrics'],
      /--confirm-metrics-url needs --confirm-success-metric/,
    );
    rejects(
      [...base, ...url, '--confirm-success-metric', 'up'],
      /--confirm-success-metric needs --confirm-metrics-url/,
    );
    rejects(
      [...base, ...url, '--confirm-timestamp-metric', 'ts'],
      /--confirm-timestamp-metric needs --confirm-metrics-url and --confirm-success-metric/,
    );
    rejects(
      [...base, '--confirm-metrics-url', 'http://x/metrics', '--confirm-success-metric', 'up'],
      /confirmation \(--confirm-metrics-url\) needs a delivery: give --reload-url or --reload-signal/,
    );
    rejects(
      [...base, ...url, '--confirm-metrics-url', 'nope', '--confirm-success-metric', 'up'],
      /--confirm-metrics-url "nope" is not a URL/,
    );
    rejects(
      [...base, ...url, '--confirm-metrics-url', 'file:///m', '--confirm-success-metric', 'up'],
      /--confirm-metrics-url "file:\/\/\/m" must be http/,
    );
    rejects(
      [...base, ...url, '--confirm-metrics-url', 'http://x/m', '--confirm-success-metric', 'up{job="a"}'],
      /--confirm-success-metric "up\{job="a"\}" is not a metric name/,
    );
    const confirming = [
      ...base,
      ...url,
      '--confirm-metrics-url',
      'http://x/m',
      '--confirm-success-metric',
      'up',
    ];
    rejects(
      [...confirming, '--confirm-timestamp-metric', '1ts'],
      /--confirm-timestamp-metric "1ts" is not a metric name/,
    );
    // It says what a timestamp that did not move means: without one it means nothing.
    const unchanged =
      /^--confirm-unchanged-keeps-timestamp needs --confirm-timestamp-metric: .*; add the app's timestamp metric, or drop the flag$/;
    rejects([...confirming, '--confirm-unchanged-keeps-timestamp'], unchanged);
    rejects([...base, '--confirm-unchanged-keeps-timestamp'], unchanged);
    rejects([...base, '--confirm-timeout', 'soon'], /--confirm-timeout "soon" is not a duration/);
    rejects([...base, '--confirm-timeout', '0'], /--confirm-timeout must be longer than 0/);
  });

  void it('--events takes the pod from POD_NAME, POD_UID and POD_NAMESPACE, and names the one missing', () => {
    assert.deepEqual(parse([...base, '--events'], POD_ENV).events, {
      podName: 'web-0',
      podUid: '1b4e-uid',
      podNamespace: 'shop',
    });
    assert.equal(parse(base, POD_ENV).events, undefined);
    for (const name of ['POD_NAME', 'POD_UID', 'POD_NAMESPACE'])
      rejects([...base, '--events'], new RegExp(`^--events needs env ${name} \\(from the downward API`), {
        ...POD_ENV,
        [name]: '',
      });
  });

  void it('--restart-on-change groups objects per container, repeatable, and alone needs no --source', () => {
    const c = parse([
      ...base,
      '--restart-on-change',
      'app=secret/app-env,configmap/app-settings',
      '--restart-on-change',
      'worker=Secret/app-env',
      '--restart-on-change',
      'app=secret/app-env,secret/more',
    ]);
    assert.deepEqual(c.restarts, [
      {
        container: 'app',
        objects: [
          { kind: 'secret', name: 'app-env' },
          { kind: 'configmap', name: 'app-settings' },
          { kind: 'secret', name: 'more' },
        ],
      },
      { container: 'worker', objects: [{ kind: 'secret', name: 'app-env' }] },
    ]);
    assert.deepEqual(parse(base).restarts, []);
    const alone = parse([...KUBE, '--restart-on-change', 'app=secret/env']);
    assert.deepEqual(alone.sources, []);
    rejects([...KUBE], /at least one --source KIND\/NAME=DIR \(or --restart-on-change\) is required/);
  });

  void it('names the flag and the expected form for every --restart-on-change problem', () => {
    for (const bad of [
      'app',
      'app=',
      '=secret/x',
      'app=secret',
      'app=pod/x',
      'app=secret/x/y',
      'app=secret/x,',
    ])
      rejects(
        [...base, '--restart-on-change', bad],
        /--restart-on-change ".*" is not CONTAINER=KIND\/NAME\[,KIND\/NAME\.\.\.\]/,
      );
    rejects(
      [...base, '--restart-on-change', 'App=secret/x'],
      /--restart-on-change: "App" is not a container name/,
    );
    rejects(
      [...base, '--restart-on-change', 'app=secret/Bad_Name'],
      /"Bad_Name" is not a Secret or ConfigMap name: a DNS-1123 subdomain \(lowercase letters, digits, '-' and '\.'/,
    );
  });

  void it('--help lists the new flags', () => {
    for (const flag of [
      '--reload-signal',
      '--signal-container',
      '--confirm-metrics-url',
      '--confirm-success-metric',
      '--confirm-timestamp-metric',
      '--confirm-timeout',
      '--events',
      '--restart-on-change',
    ])
      assert.match(RELOADER_HELP, new RegExp(`\\n  ${flag} `), flag);
    assert.match(RELOADER_HELP, /\n {2}--confirm-unchanged-keeps-timestamp\n {35}the app does not advance/);
  });
});
