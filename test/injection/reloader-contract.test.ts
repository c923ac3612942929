import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseReloaderConfig } from '../../src/reloader/config.ts';
import { args, injected, makePod, type Obj } from './pod-builder.ts';

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
        const parsed = parseReloaderConfig(rest, {
          POD_NAMESPACE: 'demo',
          KUBERNETES_SERVICE_HOST: '10.96.0.1',
          KUBERNETES_SERVICE_PORT: '443',
        });
        assert.ok(parsed, 'parsed');
        assert.equal(parsed.sources.length, rest.filter((arg) => arg.startsWith('--source=')).length);
        assert.equal(parsed.once, container.name === 'config-reloader-init');
        const fsGroup = ((out.spec as Obj).securityContext as Obj | undefined)?.fsGroup;
        assert.equal(parsed.fsGroup, fsGroup);
      }
    });
  }
});
