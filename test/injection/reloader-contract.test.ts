import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseReloaderConfig } from '../../src/reloader/config.ts';
import { args, flag, injected, makePod, type Obj } from './pod-builder.ts';

/** The sidecar's arguments are the reloader's command line: whatever the injector emits, the reloader must accept. */
describe('sidecar arguments and the reloader command line', () => {
  const pods: [string, Obj, Parameters<typeof injected>[1]][] = [
    [
      'transparent, items and modes',
      makePod({
        volumes: [
          {
            name: 'config',
            configMap: {
              name: 'c',
              defaultMode: 0o640,
              optional: true,
              items: [{ key: 'app.yaml', path: 'x/y', mode: 0o600 }],
            },
          },
        ],
      }),
      {},
    ],
    [
      'explicit with reload and gunzip',
      makePod({
        annotations: {
          'config-reloader.io/secrets': 's',
          'config-reloader.io/configmaps': 'c',
          'config-reloader.io/reload-url': 'http://[::1]:8080/r?x=1',
          'config-reloader.io/reload-method': 'get',
          'config-reloader.io/gunzip': 'true',
        },
      }),
      {},
    ],
    ['legacy with log level', makePod(), { sidecarMode: 'legacy', reloaderLogLevel: 'debug' }],
    [
      "the pod's fsGroup",
      makePod({ spec: { securityContext: { fsGroup: 2000 } } }),
      { sidecarMode: 'legacy' },
    ],
    [
      'a preset with its confirmation, a timeout and events',
      makePod({
        annotations: {
          'config-reloader.io/preset': 'vmagent',
          'config-reloader.io/confirm-timeout': '45s',
          'config-reloader.io/events': 'true',
        },
      }),
      {},
    ],
    [
      'reload by signal with confirmation, and a restart on env change',
      makePod({
        annotations: {
          'config-reloader.io/reload-signal': 'hup',
          'config-reloader.io/metrics-url': 'http://[::1]:9090/metrics',
          'config-reloader.io/success-metric': 'prometheus_config_last_reload_successful',
          'config-reloader.io/restart-on-env-change': 'app',
        },
        spec: {
          containers: [
            {
              name: 'app',
              image: 'example/app:1',
              securityContext: { runAsUser: 1000, runAsGroup: 1000 },
              env: [{ name: 'A', valueFrom: { secretKeyRef: { name: 'creds', key: 'a', optional: true } } }],
              envFrom: [{ configMapRef: { name: 'app-env' } }],
              volumeMounts: [{ name: 'config', mountPath: '/etc/app' }],
            },
          ],
        },
      }),
      { sidecarMode: 'legacy' },
    ],
    [
      'restarts only, nothing to sync, with events (ContainerRestarted)',
      makePod({
        annotations: {
          'config-reloader.io/restart-on-env-change': 'app',
          'config-reloader.io/events': 'true',
        },
        volumes: [],
        spec: {
          containers: [
            {
              name: 'app',
              image: 'example/app:1',
              securityContext: { runAsUser: 1000, runAsGroup: 1000 },
              envFrom: [{ secretRef: { name: 'creds' } }],
            },
          ],
        },
      }),
      {},
    ],
  ];
  for (const [name, pod, config] of pods) {
    it(name, () => {
      const out = injected(pod, config).pod;
      const spec = out.spec as { initContainers: Obj[]; containers: Obj[] };
      for (const container of [...spec.initContainers, ...spec.containers].filter((c) =>
        String(c.name).startsWith('config-reloader'),
      )) {
        const [subcommand, ...rest] = args(container);
        assert.equal(subcommand, 'reloader');
        // The environment the kubelet gives the sidecar: a value for each downward-API variable it declares.
        const downward = Object.fromEntries(
          (container.env as Obj[])
            .filter((variable) => variable.valueFrom !== undefined)
            .map((variable) => [
              String(variable.name),
              `${String(variable.name).toLowerCase().replaceAll('_', '-')}-value`,
            ]),
        );
        const parsed = parseReloaderConfig(rest, {
          ...downward,
          KUBERNETES_SERVICE_HOST: '10.96.0.1',
          KUBERNETES_SERVICE_PORT: '443',
        });
        assert.ok(parsed, 'parsed');
        assert.equal(parsed.sources.length, rest.filter((arg) => arg.startsWith('--source=')).length);
        assert.equal(parsed.once, container.name === 'config-reloader-init');
        const fsGroup = ((out.spec as Obj).securityContext as Obj | undefined)?.fsGroup;
        assert.equal(parsed.fsGroup, fsGroup);
        const given = (name: string): string | undefined => flag(container, name);
        assert.equal(parsed.signal?.signal, given('reload-signal'));
        assert.equal(parsed.signal?.container, given('signal-container'));
        assert.equal(parsed.confirm?.metricsUrl.href, given('confirm-metrics-url'));
        assert.equal(parsed.confirm?.successMetric, given('confirm-success-metric'));
        assert.equal(parsed.confirm?.timestampMetric, given('confirm-timestamp-metric'));
        if (given('confirm-timeout') !== undefined) assert.equal(parsed.confirm?.timeoutMs, 45_000);
        assert.equal(
          parsed.confirm?.unchangedKeepsTimestamp,
          rest.includes('--confirm-unchanged-keeps-timestamp') ? true : undefined,
        );
        assert.deepEqual(
          parsed.events,
          rest.includes('--events')
            ? { podName: 'pod-name-value', podUid: 'pod-uid-value', podNamespace: 'pod-namespace-value' }
            : undefined,
        );
        assert.deepEqual(
          parsed.restarts.map(
            (r) => `${r.container}=${r.objects.map((o) => `${o.kind}/${o.name}`).join(',')}`,
          ),
          rest.filter((arg) => arg.startsWith('--restart-on-change=')).map((arg) => arg.slice(20)),
        );
      }
    });
  }
});
