import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { envReferences } from '../../src/injection/env-consumers.ts';
import { args, containers, denial, inject, injected, makePod, sidecar, type Obj } from './pod-builder.ts';

const user = { runAsUser: 1000, runAsGroup: 1000 };

function consumer(name: string, extra: Obj = {}): Obj {
  return {
    name,
    image: `example/${name}:1`,
    securityContext: user,
    volumeMounts: [{ name: 'config', mountPath: `/etc/${name}` }],
    ...extra,
  };
}

const readsCreds: Obj = {
  env: [
    { name: 'PLAIN', value: 'x' },
    { name: 'DB_PASSWORD', valueFrom: { secretKeyRef: { name: 'app-config', key: 'password' } } },
    { name: 'POD', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
  ],
};

/** A pod whose volume "config" is the Secret app-config, which containers may also read through env. */
function pod(containerList: Obj[], annotations: Record<string, string> = {}, spec: Obj = {}): Obj {
  return makePod({
    annotations,
    volumes: [{ name: 'config', secret: { secretName: 'app-config' } }],
    spec: { containers: containerList, ...spec },
  });
}

const envWarnings = (warnings: string[]): string[] =>
  warnings.filter((w) => w.includes('through its environment'));
const restartArgs = (c: Obj): string[] => args(c).filter((a) => a.startsWith('--restart-on-change='));

describe('envReferences: the Secrets and ConfigMaps a container reads through its environment', () => {
  it('env valueFrom and envFrom, optional ones included, each with how it is read', () => {
    assert.deepEqual(
      envReferences({
        env: [
          { name: 'A', valueFrom: { secretKeyRef: { name: 's1', key: 'k', optional: true } } },
          { name: 'B', valueFrom: { configMapKeyRef: { name: 'c1', key: 'k' } } },
          { name: 'C', value: 'plain' },
          { name: 'D', valueFrom: { secretKeyRef: { key: 'no-name' } } },
        ],
        envFrom: [
          { secretRef: { name: 's2', optional: true } },
          { prefix: 'X_', configMapRef: { name: 'c2' } },
        ],
      }),
      [
        { kind: 'secret', name: 's1', via: 'env A' },
        { kind: 'configmap', name: 'c1', via: 'env B' },
        { kind: 'secret', name: 's2', via: 'envFrom' },
        { kind: 'configmap', name: 'c2', via: 'envFrom' },
      ],
    );
    assert.deepEqual(envReferences({ env: 'nonsense', envFrom: [null, 3] }), []);
  });
});

describe('the env-var warning', () => {
  it('warns for a container that reads a synced object through env, naming the object, the variable and the opt-in', () => {
    const { warnings } = injected(pod([consumer('app', readsCreds)]));
    assert.deepEqual(envWarnings(warnings), [
      'container "app" reads Secret "app-config" (env DB_PASSWORD) through its environment, which the kubelet sets once when the container starts: config-reloader keeps the files current, but this container\'s environment keeps the old values until it restarts; to restart just this container when the objects change, add config-reloader.io/restart-on-env-change: "app"',
    ]);
  });

  it('covers explicit sources and envFrom, and native sidecars, but not objects the sidecar does not sync', () => {
    const { warnings } = injected(
      makePod({
        annotations: { 'config-reloader.io/configmaps': 'rules' },
        volumes: [],
        mounts: [],
        spec: {
          initContainers: [
            { name: 'setup', image: 's', envFrom: [{ configMapRef: { name: 'rules' } }] },
            {
              name: 'proxy',
              image: 'p',
              restartPolicy: 'Always',
              envFrom: [{ configMapRef: { name: 'rules' } }],
            },
          ],
          containers: [
            {
              name: 'app',
              image: 'a',
              envFrom: [{ configMapRef: { name: 'rules' } }, { secretRef: { name: 'unsynced' } }],
            },
          ],
        },
      }),
    );
    const found = envWarnings(warnings);
    assert.equal(found.length, 2, found.join('\n'));
    assert.match(found[0] ?? '', /^container "proxy" reads ConfigMap "rules" \(envFrom\)/);
    assert.match(found[1] ?? '', /^container "app" reads ConfigMap "rules" \(envFrom\) through/);
    assert.doesNotMatch(found.join('\n'), /unsynced|"setup"/);
  });

  it('is not given for a container that opted in to restarts', () => {
    const { warnings } = injected(
      pod([consumer('app', readsCreds)], { 'config-reloader.io/restart-on-env-change': 'app' }),
    );
    assert.deepEqual(envWarnings(warnings), []);
  });
});

describe('config-reloader.io/restart-on-env-change', () => {
  it('becomes --restart-on-change=CONTAINER=KIND/NAME,... with every object read through env, optional ones and unsynced ones included', () => {
    const app = consumer('app', {
      env: [
        ...(readsCreds.env as Obj[]),
        { name: 'LEVEL', valueFrom: { configMapKeyRef: { name: 'app-env', key: 'level', optional: true } } },
        { name: 'AGAIN', valueFrom: { secretKeyRef: { name: 'app-config', key: 'user' } } },
      ],
      envFrom: [{ secretRef: { name: 'extra', optional: true } }],
    });
    const out = injected(pod([app], { 'config-reloader.io/restart-on-env-change': 'app' })).pod;
    const c = sidecar(out);
    assert.deepEqual(restartArgs(c), [
      '--restart-on-change=app=secret/app-config,configmap/app-env,secret/extra',
    ]);
    assert.equal((out.spec as Obj).shareProcessNamespace, true);
    assert.deepEqual(((containers(out)[0] as Obj).volumeMounts as Obj[]).at(-1), {
      name: 'config-reloader-target',
      mountPath: '/run/config-reloader/containers/app',
      readOnly: true,
    });
    assert.equal((c.securityContext as Obj).runAsUser, 1000);
    assert.equal(args(c).includes('--reload-signal'), false);
  });

  it('injects a pod with nothing to sync but a container to restart: the sidecar only watches', () => {
    const out = injected(
      makePod({
        annotations: { 'config-reloader.io/restart-on-env-change': 'app' },
        volumes: [],
        mounts: [],
        spec: { containers: [consumer('app', { ...readsCreds, volumeMounts: [] })] },
      }),
    ).pod;
    const c = sidecar(out);
    assert.deepEqual(restartArgs(c), ['--restart-on-change=app=secret/app-config']);
    assert.equal(
      args(c).some((a) => a.startsWith('--source=')),
      false,
    );
    // Without the opt-in such a pod has nothing for the sidecar to do.
    assert.equal(
      inject(makePod({ volumes: [], mounts: [], spec: { containers: [consumer('app', readsCreds)] } }))
        .action,
      'skip',
    );
  });

  it('one argument per container, a native sidecar included, also under restartPolicy Never', () => {
    const spec = {
      restartPolicy: 'Never',
      initContainers: [
        consumer('proxy', { restartPolicy: 'Always', envFrom: [{ secretRef: { name: 'p' } }] }),
      ],
    };
    const out = injected(
      pod([consumer('app', readsCreds)], { 'config-reloader.io/restart-on-env-change': 'proxy' }, spec),
    ).pod;
    assert.deepEqual(restartArgs(sidecar(out)), ['--restart-on-change=proxy=secret/p']);
    const both = injected(
      pod([consumer('app', readsCreds), consumer('worker', { envFrom: [{ configMapRef: { name: 'w' } }] })], {
        'config-reloader.io/restart-on-env-change': 'app, worker',
      }),
    ).pod;
    assert.deepEqual(restartArgs(sidecar(both)), [
      '--restart-on-change=app=secret/app-config',
      '--restart-on-change=worker=configmap/w',
    ]);
  });

  it("a regular container's own restartPolicy (Kubernetes 1.35 ContainerRestartRules) counts over the pod's", () => {
    const always = consumer('app', { ...readsCreds, restartPolicy: 'Always' });
    const outcome = inject(
      pod([always], { 'config-reloader.io/restart-on-env-change': 'app' }, { restartPolicy: 'Never' }),
    );
    assert.equal(outcome.action, 'patch', JSON.stringify(outcome));
    const never = consumer('app', { ...readsCreds, restartPolicy: 'Never' });
    assert.equal(
      denial(pod([never], { 'config-reloader.io/restart-on-env-change': 'app' })),
      'config-reloader.io/restart-on-env-change: container "app" has restartPolicy: Never (the pod has Always, the default), so container "app" would not come back after the sidecar stops it; set the container\'s restartPolicy to Always, or remove "app" from the annotation',
    );
    const onFailure = consumer('app', { ...readsCreds, restartPolicy: 'OnFailure' });
    assert.match(
      denial(
        pod([onFailure], { 'config-reloader.io/restart-on-env-change': 'app' }, { restartPolicy: 'Never' }),
      ),
      /^config-reloader\.io\/restart-on-env-change: container "app" has restartPolicy: OnFailure \(the pod has Never\), so container "app" would not come back when it exits cleanly on the SIGTERM the sidecar sends;/,
    );
  });

  it('signal target and restart target may be the same container: one marker', () => {
    const out = injected(
      pod([consumer('app', readsCreds)], {
        'config-reloader.io/restart-on-env-change': 'app',
        'config-reloader.io/reload-signal': 'SIGHUP',
      }),
    ).pod;
    const markers = ((containers(out)[0] as Obj).volumeMounts as Obj[]).filter(
      (m) => m.name === 'config-reloader-target',
    );
    assert.equal(markers.length, 1);
  });

  for (const [what, built, expected] of [
    [
      'a container that reads nothing through env',
      pod([consumer('app')], { 'config-reloader.io/restart-on-env-change': 'app' }),
      /^config-reloader\.io\/restart-on-env-change: container "app" reads no Secret or ConfigMap through env .*; remove it from the list/,
    ],
    [
      'restartPolicy Never',
      pod(
        [consumer('app', readsCreds)],
        { 'config-reloader.io/restart-on-env-change': 'app' },
        { restartPolicy: 'Never' },
      ),
      /^config-reloader\.io\/restart-on-env-change: the pod has restartPolicy: Never, so container "app" would not come back after the sidecar stops it; give the container its own restartPolicy: Always \(Kubernetes 1\.35 and later, ContainerRestartRules\), or remove "app" from the annotation$/,
    ],
    [
      'restartPolicy OnFailure',
      pod(
        [consumer('app', readsCreds)],
        { 'config-reloader.io/restart-on-env-change': 'app' },
        { restartPolicy: 'OnFailure' },
      ),
      /^config-reloader\.io\/restart-on-env-change: the pod has restartPolicy: OnFailure, so container "app" would not come back when it exits cleanly on the SIGTERM the sidecar sends; give the container its own restartPolicy: Always/,
    ],
    [
      'an unknown container',
      pod([consumer('app', readsCreds)], { 'config-reloader.io/restart-on-env-change': 'ap' }),
      /^config-reloader\.io\/restart-on-env-change: the pod has no container named "ap"; list containers of the pod \(here: app\)/,
    ],
    [
      'an init container that runs once',
      pod(
        [consumer('app', readsCreds)],
        { 'config-reloader.io/restart-on-env-change': 'setup' },
        {
          initContainers: [consumer('setup', readsCreds)],
        },
      ),
      /^config-reloader\.io\/restart-on-env-change: "setup" is an init container that runs once/,
    ],
    [
      'an invalid name',
      pod([consumer('app', readsCreds)], { 'config-reloader.io/restart-on-env-change': 'App_1' }),
      /^config-reloader\.io\/restart-on-env-change: "App_1" is not a container name; list container names of the pod/,
    ],
    [
      'a target without a known user',
      pod([consumer('app', { ...readsCreds, securityContext: {} })], {
        'config-reloader.io/restart-on-env-change': 'app',
      }),
      /^container "app" sets no runAsUser, so it runs as its image's user/,
    ],
  ] as const) {
    it(`denies ${what}`, () => assert.match(denial(built), expected));
  }
});
