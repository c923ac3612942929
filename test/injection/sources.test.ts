import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  containers,
  denial,
  initContainers,
  inject,
  injected,
  makePod,
  sidecar,
  sources,
  volume,
  type Obj,
} from './pod-builder.ts';

const mountsOf = (container: Obj): Obj[] => (container.volumeMounts ?? []) as Obj[];

describe('transparent mode: secret/configMap volumes become emptyDirs the sidecar fills', () => {
  const pod = makePod({
    volumes: [
      {
        name: 'tls',
        secret: {
          secretName: 'app-tls',
          defaultMode: 0o400,
          items: [
            { key: 'tls.key', path: 'keys/tls.key', mode: 0o600 },
            { key: 'tls.crt', path: 'tls.crt' },
          ],
        },
      },
      { name: 'config', configMap: { name: 'app-config', optional: true, defaultMode: 0o644 } },
      { name: 'data', emptyDir: {} },
      { name: 'all-keys', configMap: { name: 'everything', items: [] } },
    ],
    mounts: [
      { name: 'tls', mountPath: '/etc/tls', readOnly: true },
      { name: 'config', mountPath: '/etc/app' },
      { name: 'data', mountPath: '/data' },
      { name: 'all-keys', mountPath: '/etc/all' },
    ],
  });
  const result = injected(pod).pod;

  it('keeps each volume name; a Secret becomes a memory emptyDir, a ConfigMap a plain one', () => {
    assert.deepEqual(volume(result, 'tls'), { name: 'tls', emptyDir: { medium: 'Memory' } });
    assert.deepEqual(volume(result, 'config'), { name: 'config', emptyDir: {} });
    assert.deepEqual(volume(result, 'data'), { name: 'data', emptyDir: {} });
  });

  it("leaves the app's mounts exactly as written", () => {
    assert.deepEqual(containers(result)[0], containers(pod)[0]);
  });

  it('mounts each converted volume read-write in the sidecar under /var/run/config-reloader/volumes', () => {
    const mounts = mountsOf(sidecar(result)).filter((m) =>
      String(m.mountPath).startsWith('/var/run/config-reloader'),
    );
    assert.deepEqual(mounts, [
      { name: 'tls', mountPath: '/var/run/config-reloader/volumes/tls' },
      { name: 'config', mountPath: '/var/run/config-reloader/volumes/config' },
      { name: 'all-keys', mountPath: '/var/run/config-reloader/volumes/all-keys' },
    ]);
  });

  it('carries items, modes, defaultMode and optional into --source, which the reloader parses back', () => {
    assert.deepEqual(sources(sidecar(result)), [
      {
        kind: 'secret',
        name: 'app-tls',
        dir: '/var/run/config-reloader/volumes/tls',
        defaultMode: 0o400,
        items: [
          { key: 'tls.key', path: 'keys/tls.key', mode: 0o600 },
          { key: 'tls.crt', path: 'tls.crt' },
        ],
      },
      {
        kind: 'configmap',
        name: 'app-config',
        dir: '/var/run/config-reloader/volumes/config',
        defaultMode: 0o644,
        optional: true,
      },
      { kind: 'configmap', name: 'everything', dir: '/var/run/config-reloader/volumes/all-keys' },
    ]);
  });

  it('converts only the volumes named in config-reloader.io/volumes', () => {
    const only = injected(
      makePod({ ...podParts(pod), annotations: { 'config-reloader.io/volumes': ' config , config' } }),
    ).pod;
    assert.deepEqual(volume(only, 'tls'), (pod.spec as Obj & { volumes: Obj[] }).volumes[0]);
    assert.deepEqual(
      sources(sidecar(only)).map((s) => s.name),
      ['app-config'],
    );
  });

  it('marks every source gunzip with config-reloader.io/gunzip: "true"', () => {
    const gz = injected(
      makePod({ ...podParts(pod), annotations: { 'config-reloader.io/gunzip': 'true' } }),
    ).pod;
    assert.ok(sources(sidecar(gz)).every((s) => s.gunzip === true));
  });

  it('warns about subPath mounts of converted volumes, which never see updates', () => {
    const { warnings } = injected(
      makePod({
        mounts: [
          { name: 'config', mountPath: '/etc/app/app.yaml', subPath: 'app.yaml' },
          { name: 'config', mountPath: '/etc/app/all' },
        ],
      }),
    );
    assert.match(warnings.join('\n'), /container "app" mounts volume "config" with subPath/);
  });

  it('leaves a volume that every container mounts only through subPath to the kubelet, with a warning that says why', () => {
    const pod = makePod({
      volumes: [
        { name: 'config', configMap: { name: 'app-config' } },
        { name: 'tls', secret: { secretName: 'app-tls' } },
      ],
      mounts: [
        { name: 'config', mountPath: '/etc/app' },
        { name: 'tls', mountPath: '/etc/tls/tls.crt', subPath: 'tls.crt' },
        { name: 'tls', mountPath: '/etc/tls/tls.key', subPathExpr: '$(KEY_FILE)' },
      ],
      spec: {
        initContainers: [
          { name: 'setup', image: 's', volumeMounts: [{ name: 'tls', mountPath: '/t/ca', subPath: 'ca' }] },
        ],
      },
    });
    const { pod: out, warnings } = injected(pod);
    assert.deepEqual(volume(out, 'tls'), { name: 'tls', secret: { secretName: 'app-tls' } });
    assert.deepEqual(
      sources(sidecar(out)).map((s) => s.name),
      ['app-config'],
    );
    assert.ok(
      warnings.includes(
        'volume "tls" is not kept current by config-reloader: every mount of it uses subPath (container "setup", container "app"), and a subPath mount never sees updates, whoever writes the volume; it is left to the kubelet. Mount the whole volume (a directory) to get updates',
      ),
      warnings.join('\n'),
    );
    // A volume named in config-reloader.io/volumes is left alone the same way, not denied.
    const named = injected(
      makePod({ ...podParts(pod), annotations: { 'config-reloader.io/volumes': 'config,tls' } }),
    );
    assert.deepEqual(volume(named.pod, 'tls'), { name: 'tls', secret: { secretName: 'app-tls' } });
    assert.match(
      named.warnings.join('\n'),
      /volume "tls" is not kept current by config-reloader: every mount of it uses subPath/,
    );
  });

  it('skips a pod whose only secret/configMap volumes are mounted through subPath: nothing is left to sync', () => {
    const pod = makePod({
      mounts: [{ name: 'config', mountPath: '/etc/app/app.yaml', subPath: 'app.yaml' }],
    });
    const outcome = inject(pod);
    assert.equal(outcome.action, 'skip');
    assert.equal(
      outcome.action === 'skip' && outcome.reason,
      'nothing to sync: only secret/configMap volumes mounted through subPath (config)',
    );
    assert.equal(outcome.warnings.length, 2);
    assert.match(
      outcome.warnings[0] ?? '',
      /^volume "config" is not kept current by config-reloader: every mount of it uses subPath \(container "app"\)/,
    );
    assert.match(
      outcome.warnings[1] ?? '',
      /^config-reloader\.io\/inject: the pod opted in but has nothing to sync: its secret\/configMap volumes are mounted only through subPath/,
    );
    // Namespace-wide injection skips it as well, with the warning about the volume only.
    const namespaceWide = inject(
      makePod({ ...podParts(pod), annotations: { 'config-reloader.io/inject': '' } }),
      {},
      'namespace',
    );
    assert.equal(namespaceWide.action, 'skip');
    assert.equal(namespaceWide.warnings.length, 1);
  });

  it('warns about projected volumes with Secrets or ConfigMaps, and leaves them alone', () => {
    const projected = {
      name: 'bundle',
      projected: { sources: [{ secret: { name: 's' } }, { configMap: { name: 'c' } }] },
    };
    const p = makePod({
      volumes: [{ name: 'config', configMap: { name: 'app-config' } }, projected],
      mounts: [{ name: 'bundle', mountPath: '/b' }],
    });
    const { pod: out, warnings } = injected(p);
    assert.deepEqual(volume(out, 'bundle'), projected);
    assert.match(warnings.join('\n'), /projected volume "bundle" includes Secrets or ConfigMaps/);
  });

  it('leaves a volume it cannot represent to the kubelet, with a warning', () => {
    const p = makePod({
      volumes: [
        { name: 'config', configMap: { name: 'app-config' } },
        { name: 'bad', secret: { secretName: 'x', items: [{ key: 'k', path: '../escape' }] } },
      ],
    });
    const { pod: out, warnings } = injected(p);
    assert.ok(volume(out, 'bad')?.secret);
    assert.match(warnings.join('\n'), /volume "bad" is not kept current/);
  });

  it('converts item paths the kubelet cleans (./x, sub/./x, a//b) and a path named twice, as the reloader writes them', () => {
    const items = [
      { key: 'a', path: './config.yaml' },
      { key: 'b', path: 'sub/./x' },
      { key: 'c', path: 'deep//er/' },
      { key: 'd', path: 'dup' },
      { key: 'e', path: './dup', mode: 0o600 },
    ];
    const { pod: out, warnings } = injected(
      makePod({ volumes: [{ name: 'config', configMap: { name: 'app-config', items } }] }),
    );
    assert.deepEqual(volume(out, 'config')?.emptyDir, {}, 'converted');
    assert.deepEqual(warnings, []);
    // The reloader gets them as written and parses them back (it cleans them where the kubelet would).
    assert.deepEqual(sources(sidecar(out))[0]?.items, items);
  });

  for (const [what, items, optional, reason] of [
    ['the volume itself', [{ key: 'k', path: '.' }], false, /item path "\." names the volume itself/],
    [
      'a file name over 255 bytes',
      [{ key: 'k', path: `d/${'x'.repeat(256)}` }],
      false,
      /longer than 255 bytes/,
    ],
    [
      'a ".." element',
      [{ key: 'k', path: 'a/../b' }],
      false,
      /item path "a\/\.\.\/b" must not contain '\.\.'/,
    ],
    [
      'a file and a directory at one path',
      [
        { key: 'a', path: 'conf' },
        { key: 'b', path: './conf/x' },
      ],
      false,
      /item path "conf" is a file, and a directory of item path "conf\/x": the kubelet cannot write both/,
    ],
  ] as const) {
    it(`leaves to the kubelet, or denies when named, what the kubelet cannot write either: ${what}`, () => {
      const volumes = [
        { name: 'config', configMap: { name: 'app-config' } },
        { name: 'bad', configMap: { name: 'other', items, optional } },
      ];
      const { pod: out, warnings } = injected(makePod({ volumes }));
      assert.ok(volume(out, 'bad')?.configMap, 'left to the kubelet');
      assert.match(warnings.join('\n'), reason);
      assert.match(
        denial(makePod({ volumes, annotations: { 'config-reloader.io/volumes': 'bad' } })),
        reason,
      );
    });
  }

  it('converts an optional volume whose items are a file and a directory (fine while one key is missing)', () => {
    const items = [
      { key: 'a', path: 'conf' },
      { key: 'b', path: 'conf/x' },
    ];
    const { pod: out } = injected(
      makePod({ volumes: [{ name: 'config', configMap: { name: 'app-config', items, optional: true } }] }),
    );
    assert.deepEqual(volume(out, 'config')?.emptyDir, {});
  });
});

function podParts(pod: Obj): { volumes: Obj[]; mounts: Obj[] } {
  return { volumes: (pod.spec as Obj).volumes as Obj[], mounts: mountsOf(containers(pod)[0] as Obj) };
}

describe('explicit mode: objects named in annotations, under one shared volume', () => {
  const annotations = {
    'config-reloader.io/secrets': 'db-creds',
    'config-reloader.io/configmaps': 'rules,alerts',
  };

  it('adds one memory emptyDir mounted read-only at the mount path in every app container, one directory per object', () => {
    const pod = makePod({
      annotations,
      spec: {
        containers: [
          { name: 'app', image: 'a' },
          { name: 'helper', image: 'h', volumeMounts: [{ name: 'config', mountPath: '/c' }] },
        ],
      },
    });
    const out = injected(pod).pod;
    assert.deepEqual(volume(out, 'config-reloader'), {
      name: 'config-reloader',
      emptyDir: { medium: 'Memory' },
    });
    for (const container of containers(out)) {
      assert.deepEqual(mountsOf(container).at(-1), {
        name: 'config-reloader',
        mountPath: '/etc/config-reloader',
        readOnly: true,
      });
    }
    assert.deepEqual(
      sources(sidecar(out)).map((s) => `${s.kind}/${s.name}=${s.dir}`),
      [
        'secret/db-creds=/var/run/config-reloader/shared/db-creds',
        'configmap/rules=/var/run/config-reloader/shared/rules',
        'configmap/alerts=/var/run/config-reloader/shared/alerts',
      ],
    );
    assert.ok(
      mountsOf(sidecar(out)).some(
        (m) => m.name === 'config-reloader' && m.mountPath === '/var/run/config-reloader/shared',
      ),
    );
    // Explicit mode leaves the pod's own volumes alone.
    assert.deepEqual(volume(out, 'config'), { name: 'config', configMap: { name: 'app-config' } });
  });

  it('uses a plain emptyDir for ConfigMaps only, honours mount-path and containers (init containers included)', () => {
    const pod = makePod({
      annotations: {
        'config-reloader.io/configmaps': 'rules',
        'config-reloader.io/mount-path': '/etc/rules/',
        'config-reloader.io/containers': 'setup',
      },
      spec: { initContainers: [{ name: 'setup', image: 's' }] },
    });
    const out = injected(pod).pod;
    assert.deepEqual(volume(out, 'config-reloader'), { name: 'config-reloader', emptyDir: {} });
    assert.deepEqual(mountsOf(initContainers(out)[1] as Obj), [
      { name: 'config-reloader', mountPath: '/etc/rules', readOnly: true },
    ]);
    assert.deepEqual(containers(out)[0], containers(pod)[0]);
  });

  it('also converts the volumes named in config-reloader.io/volumes', () => {
    const out = injected(
      makePod({ annotations: { ...annotations, 'config-reloader.io/volumes': 'config' } }),
    ).pod;
    assert.deepEqual(volume(out, 'config'), { name: 'config', emptyDir: {} });
    assert.equal(sources(sidecar(out)).length, 4);
  });

  it('warns that mount-path and containers mean nothing without explicit objects', () => {
    const outcome = inject(makePod({ annotations: { 'config-reloader.io/mount-path': '/x' } }));
    assert.match(outcome.warnings.join('\n'), /config-reloader\.io\/mount-path is ignored/);
  });
});
