import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { restrictedViolations } from './pod-security.ts';
import {
  containers,
  denial,
  flag,
  initContainers,
  injected,
  makePod,
  sidecar,
  type Obj,
} from './pod-builder.ts';

/** A container that passes PodSecurity restricted, as user 1000 and group 3000 unless told otherwise. */
function app(name: string, context: Obj = { runAsUser: 1000, runAsGroup: 3000 }, extra: Obj = {}): Obj {
  return {
    name,
    image: `example/${name}:1`,
    securityContext: {
      runAsNonRoot: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
      ...context,
    },
    volumeMounts: [{ name: 'config', mountPath: `/etc/${name}` }],
    ...extra,
  };
}

function signalPod(annotations: Record<string, string> = {}, spec: Obj = {}): Obj {
  return makePod({
    annotations: { 'config-reloader.io/reload-signal': 'SIGHUP', ...annotations },
    spec: { containers: [app('app')], ...spec },
  });
}

/** The marker mount's path in the container, if it has one (src/shared/process-marker.ts). */
const marker = (container: Obj): unknown =>
  ((container.volumeMounts ?? []) as Obj[]).find((m) => m.name === 'config-reloader-target')?.mountPath;
const markerPath = (name: string): string => `/run/config-reloader/containers/${name}`;

describe('config-reloader.io/reload-signal', () => {
  it('becomes --reload-signal and --signal-container, with the only app container as the default target', () => {
    for (const [given, canonical] of [
      ['SIGHUP', 'SIGHUP'],
      ['hup', 'SIGHUP'],
      ['SigUsr1', 'SIGUSR1'],
      ['USR2', 'SIGUSR2'],
    ]) {
      const out = injected(signalPod({ 'config-reloader.io/reload-signal': given as string })).pod;
      const c = sidecar(out);
      assert.equal(flag(c, 'reload-signal'), canonical);
      assert.equal(flag(c, 'signal-container'), 'app');
      assert.equal(flag(c, 'reload-url'), undefined);
      assert.equal(flag(c, 'reload-method'), undefined);
    }
  });

  it("shares the process namespace, mounts the marker in the target and runs the sidecar as its user, in the sidecar's own group", () => {
    const out = injected(signalPod()).pod;
    assert.equal((out.spec as Obj).shareProcessNamespace, true);
    assert.deepEqual(((containers(out)[0] as Obj).volumeMounts as Obj[]).at(-1), {
      name: 'config-reloader-target',
      mountPath: '/run/config-reloader/containers/app',
      readOnly: true,
    });
    assert.deepEqual(
      ((out.spec as Obj).volumes as Obj[]).filter((v) => v.name === 'config-reloader-target'),
      [{ name: 'config-reloader-target', emptyDir: { medium: 'Memory', sizeLimit: '1Ki' } }],
    );
    const context = sidecar(out).securityContext as Obj;
    assert.equal(context.runAsUser, 1000);
    // Not the target's 3000: with its user and group the app could read the sidecar's token through /proc.
    assert.equal(context.runAsGroup, 65532);
    assert.equal(context.runAsNonRoot, true);
    // Only the target is marked.
    assert.equal(marker(sidecar(out)), undefined);
  });

  it("takes the pod's runAsUser when the container sets none, the container's over the pod's; never a group", () => {
    const pod = signalPod(
      {},
      {
        securityContext: { runAsUser: 2000, runAsGroup: 2001 },
        containers: [app('app', { runAsGroup: 4000 })],
      },
    );
    const context = sidecar(injected(pod).pod).securityContext as Obj;
    assert.deepEqual([context.runAsUser, context.runAsGroup], [2000, 65532]);
    const own = signalPod(
      {},
      { securityContext: { runAsUser: 2000 }, containers: [app('app', { runAsUser: 2500 })] },
    );
    assert.equal((sidecar(injected(own).pod).securityContext as Obj).runAsUser, 2500);
  });

  it('runs both legacy containers as the target user', () => {
    const out = injected(signalPod(), { sidecarMode: 'legacy' }).pod;
    const init = initContainers(out)[0] as Obj;
    const watcher = containers(out).at(-1) as Obj;
    for (const c of [init, watcher]) {
      assert.equal((c.securityContext as Obj).runAsUser, 1000);
      assert.equal((c.securityContext as Obj).runAsGroup, 65532);
      assert.equal(flag(c, 'reload-signal'), 'SIGHUP');
    }
  });

  it('passes PodSecurity restricted with a non-root target: shareProcessNamespace is not a check of any level', () => {
    const pod = signalPod({}, { securityContext: { seccompProfile: { type: 'RuntimeDefault' } } });
    assert.deepEqual(restrictedViolations(pod), []);
    const out = injected(pod).pod;
    assert.equal((out.spec as Obj).shareProcessNamespace, true);
    assert.deepEqual(restrictedViolations(out), []);
    // The checker can fail: a root sidecar would break it.
    const broken = structuredClone(out);
    ((initContainers(broken)[0] as Obj).securityContext as Obj).runAsUser = 0;
    assert.deepEqual(restrictedViolations(broken), ['initContainers "config-reloader": runAsUser 0']);
    assert.deepEqual(restrictedViolations({ spec: { ...(out.spec as Obj), hostPID: true } }), [
      'host namespaces: hostPID',
    ]);
  });

  it('a named target: an app container among several, or a native sidecar', () => {
    const spec = {
      initContainers: [app('proxy', undefined, { restartPolicy: 'Always' })],
      containers: [app('web'), app('worker')],
    };
    const out = injected(signalPod({ 'config-reloader.io/signal-container': 'worker' }, spec)).pod;
    assert.equal(flag(sidecar(out), 'signal-container'), 'worker');
    assert.equal(marker(containers(out)[1] as Obj), markerPath('worker'));
    assert.equal(marker(containers(out)[0] as Obj), undefined);
    const native = injected(signalPod({ 'config-reloader.io/signal-container': 'proxy' }, spec)).pod;
    assert.equal(marker(initContainers(native)[1] as Obj), markerPath('proxy'));
  });

  it("runs as the targets' user with the sidecar's own group when the pod spec names none: kill(2) needs only the user", () => {
    const out = injected(signalPod({}, { containers: [app('app', { runAsUser: 1000 })] })).pod;
    const context = sidecar(out).securityContext as Obj;
    assert.deepEqual([context.runAsUser, context.runAsGroup], [1000, 65532]);
  });

  it('ignores signal-container without reload-signal, with a warning', () => {
    const { pod, warnings } = injected(
      makePod({ annotations: { 'config-reloader.io/signal-container': 'app' } }),
    );
    assert.ok(
      warnings.includes(
        'config-reloader.io/signal-container is ignored without config-reloader.io/reload-signal',
      ),
    );
    assert.equal((pod.spec as Obj).shareProcessNamespace, undefined);
    assert.equal(flag(sidecar(pod), 'signal-container'), undefined);
  });

  it('the sidecar of a pod without a signal target keeps its own user 65532 and the pod its process namespace', () => {
    const out = injected(
      makePod({ annotations: { 'config-reloader.io/reload-url': 'http://127.0.0.1:1/r' } }),
    ).pod;
    assert.equal((sidecar(out).securityContext as Obj).runAsUser, 65532);
    assert.equal((out.spec as Obj).shareProcessNamespace, undefined);
  });
});

describe('reload-signal denials name the problem and the fix', () => {
  const cases: [string, Obj, RegExp][] = [
    [
      'an unknown signal',
      signalPod({ 'config-reloader.io/reload-signal': 'SIGKILL' }),
      /^config-reloader\.io\/reload-signal: "SIGKILL" is not a signal the sidecar sends; use one of SIGHUP, SIGUSR1, SIGUSR2/,
    ],
    [
      'reload-url and reload-signal together',
      signalPod({ 'config-reloader.io/reload-url': 'http://127.0.0.1:8080/-/reload' }),
      /^config-reloader\.io\/reload-signal: it cannot be used together with config-reloader\.io\/reload-url: .*; keep one of them/,
    ],
    [
      'several app containers and no signal-container',
      signalPod({}, { containers: [app('web'), app('worker')] }),
      /^config-reloader\.io\/reload-signal: the pod has 2 app containers \(web, worker\), .*; set config-reloader\.io\/signal-container to the container/,
    ],
    [
      'a signal-container the pod does not have',
      signalPod({ 'config-reloader.io/signal-container': 'nginx' }),
      /^config-reloader\.io\/signal-container: the pod has no container named "nginx"; name one of its containers \(here: app\)/,
    ],
    [
      'an init container that runs once',
      signalPod({ 'config-reloader.io/signal-container': 'setup' }, { initContainers: [app('setup')] }),
      /^config-reloader\.io\/signal-container: "setup" is an init container that runs once before the app .*; name an app container or a native sidecar/,
    ],
    [
      'shareProcessNamespace: false',
      signalPod({}, { shareProcessNamespace: false }),
      /^spec\.shareProcessNamespace is false, but .*; remove the field \(the injector sets it to true\), or reload through config-reloader\.io\/reload-url instead/,
    ],
    [
      'hostPID',
      signalPod({}, { hostPID: true }),
      /^spec\.hostPID is true: .*; remove hostPID, or reload through config-reloader\.io\/reload-url instead/,
    ],
    [
      'a target whose user is the image’s',
      signalPod({}, { containers: [app('app', { runAsUser: undefined, runAsGroup: 3000 })] }),
      /^container "app" sets no runAsUser, so it runs as its image's user, .*; set spec\.containers\[name=app\]\.securityContext\.runAsUser or spec\.securityContext\.runAsUser to the user id the image runs as/,
    ],
    [
      'a native sidecar target whose user is the image’s: the field is in initContainers',
      signalPod(
        { 'config-reloader.io/signal-container': 'proxy' },
        { initContainers: [app('proxy', { runAsUser: undefined }, { restartPolicy: 'Always' })] },
      ),
      /^container "proxy" sets no runAsUser, .*; set spec\.initContainers\[name=proxy\]\.securityContext\.runAsUser or spec\.securityContext\.runAsUser/,
    ],
    [
      'a target in the sidecar’s own group 65532: with both ids the app could read the sidecar’s token',
      signalPod({}, { containers: [app('app', { runAsUser: 1000, runAsGroup: 65532 })] }),
      /^container "app" runs as group 65532 \(runAsGroup\), the sidecar's own group, .*could read the sidecar's environment and files through \/proc, its ServiceAccount token among them; set spec\.containers\[name=app\]\.securityContext\.runAsGroup or spec\.securityContext\.runAsGroup to another group id$/,
    ],
    [
      'a target in group 65532 from the pod’s securityContext',
      signalPod(
        {},
        { securityContext: { runAsGroup: 65532 }, containers: [app('app', { runAsUser: 1000 })] },
      ),
      /^container "app" runs as group 65532 \(runAsGroup\), the sidecar's own group/,
    ],
    [
      'a root target',
      signalPod({}, { containers: [app('app', { runAsUser: 0, runAsGroup: 0, runAsNonRoot: false })] }),
      /^container "app" runs as root \(runAsUser 0\), .*which would make the sidecar root; run the container as a non-root user/,
    ],
    [
      'a target that mounts something at its marker path',
      signalPod(
        {},
        {
          containers: [
            app('app', undefined, {
              volumeMounts: [{ name: 'config', mountPath: '/run/config-reloader/containers/app' }],
            }),
          ],
        },
      ),
      /^container "app" already mounts a volume at \/run\/config-reloader\/containers\/app, .*; mount it elsewhere/,
    ],
    [
      'a pod that already has a volume named like the marker',
      signalPod({}, { volumes: [{ name: 'config-reloader-target', emptyDir: {} }] }),
      /config-reloader\.io\/status: the pod already has a volume named "config-reloader-target" but no config-reloader\.io\/status: injected annotation/,
    ],
  ];
  for (const [what, pod, expected] of cases) {
    it(what, () => assert.match(denial(pod), expected));
  }

  it('every problem in one denial', () => {
    const message = denial(
      signalPod(
        { 'config-reloader.io/reload-url': 'http://127.0.0.1:8080/-/reload' },
        { hostPID: true, containers: [app('app', { runAsUser: 0, runAsGroup: 0 })] },
      ),
    );
    assert.match(
      message,
      /^3 problems with the pod's config-reloader settings, fix each of them:\n1\. config-reloader\.io\/reload-signal: it cannot be used together/,
    );
    assert.match(message, /\n2\. spec\.hostPID is true/);
    assert.match(message, /\n3\. container "app" runs as root/);
  });

  it('targets of one user and different groups: the sidecar keeps its own group', () => {
    const pod = makePod({
      annotations: {
        'config-reloader.io/reload-signal': 'SIGHUP',
        'config-reloader.io/signal-container': 'web',
        'config-reloader.io/restart-on-env-change': 'worker',
      },
      spec: {
        containers: [
          app('web'),
          app(
            'worker',
            { runAsUser: 1000, runAsGroup: 4000 },
            { env: [{ name: 'A', valueFrom: { secretKeyRef: { name: 'creds', key: 'a' } } }] },
          ),
        ],
      },
    });
    const context = sidecar(injected(pod).pod).securityContext as Obj;
    assert.deepEqual([context.runAsUser, context.runAsGroup], [1000, 65532]);
  });

  it('targets of different users', () => {
    const pod = makePod({
      annotations: {
        'config-reloader.io/reload-signal': 'SIGHUP',
        'config-reloader.io/signal-container': 'web',
        'config-reloader.io/restart-on-env-change': 'worker',
      },
      spec: {
        containers: [
          app('web'),
          app(
            'worker',
            { runAsUser: 1001, runAsGroup: 3000 },
            {
              env: [{ name: 'A', valueFrom: { secretKeyRef: { name: 'creds', key: 'a' } } }],
            },
          ),
        ],
      },
    });
    assert.match(
      denial(pod),
      /^containers "web" \(runAsUser 1000\) and "worker" \(runAsUser 1001\) run as different users, .*; run them with the same runAsUser, or signal only one of them/,
    );
  });
});

describe('files written as the target user: who can read them', () => {
  const secretPod = (appContext: Obj, other?: Obj): Obj =>
    makePod({
      annotations: {
        'config-reloader.io/reload-signal': 'SIGHUP',
        'config-reloader.io/signal-container': 'app',
      },
      volumes: [{ name: 'config', secret: { secretName: 's', defaultMode: 0o400 } }],
      spec: { containers: [app('app', appContext), ...(other ? [other] : [])] },
    });
  const unreadable = (warnings: string[]): string[] => warnings.filter((w) => w.includes('cannot read them'));

  it('the target reads a 0400 Secret as the owner: no warning (as 65532 it could not)', () => {
    assert.deepEqual(unreadable(injected(secretPod({ runAsUser: 1000, runAsGroup: 3000 })).warnings), []);
    const withoutSignal = makePod({
      volumes: [{ name: 'config', secret: { secretName: 's', defaultMode: 0o400 } }],
      spec: { containers: [app('app')] },
    });
    assert.equal(unreadable(injected(withoutSignal).warnings).length, 1);
  });

  it("another container reads 0440 only in the sidecar's group 65532, not the target's; the warning names the owner", () => {
    const pod = secretPod(
      { runAsUser: 1000, runAsGroup: 3000 },
      app('reader', { runAsUser: 1200, runAsGroup: 3000 }),
    );
    ((pod.spec as Obj).volumes as Obj[])[0] = {
      name: 'config',
      secret: { secretName: 's', defaultMode: 0o440 },
    };
    const [warning] = unreadable(injected(pod).warnings);
    assert.match(
      warning ?? '',
      /belong to the config-reloader sidecar's user 1000 \(the user of the container it signals\), so container "reader" \(runAsUser 1200\) cannot read them; .*group 65532 in the container's runAsGroup or the pod's supplementalGroups/,
    );
    (pod.spec as Obj).securityContext = { supplementalGroups: [65532] };
    assert.deepEqual(unreadable(injected(pod).warnings), []);
  });

  it('with an fsGroup the sidecar passes it on whatever its user', () => {
    const pod = secretPod({ runAsUser: 1000, runAsGroup: 3000 });
    (pod.spec as Obj).securityContext = { fsGroup: 5000 };
    const out = injected(pod);
    assert.equal(flag(sidecar(out.pod), 'fs-group'), '5000');
    assert.deepEqual(unreadable(out.warnings), []);
  });
});
