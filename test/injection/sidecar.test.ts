import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { apiAccessVolume, TOKEN_MOUNT_PATH } from '../support/kube-apiserver/service-account-admission.ts';
import {
  containers,
  denial,
  flag,
  initContainers,
  inject,
  injected,
  makePod,
  sidecar,
  volume,
  volumes,
  args,
  type Obj,
} from './pod-builder.ts';

const tokenMount = (container: Obj): Obj | undefined =>
  ((container.volumeMounts ?? []) as Obj[]).find((m) => m.mountPath === TOKEN_MOUNT_PATH);
/** The volume the ServiceAccount admission step adds before any webhook runs. */
const kubeApiAccess = apiAccessVolume('kube-api-access-x7k2p');

describe('the native sidecar container', () => {
  const out = injected(
    makePod({ annotations: { 'config-reloader.io/reload-url': 'http://127.0.0.1:8429/-/reload' } }),
  ).pod;
  const c = sidecar(out);

  it('is the first init container, restartable, running the reloader subcommand of the configured image', () => {
    assert.equal(initContainers(out)[0], c);
    assert.equal(c.restartPolicy, 'Always');
    assert.equal(c.image, 'config-reloader-injector:0.1.0');
    assert.deepEqual(args(c), [
      'reloader',
      '--listen=:9533',
      '--source=configmap/app-config=/var/run/config-reloader/volumes/config',
      '--reload-url=http://127.0.0.1:8429/-/reload',
      '--reload-method=POST',
    ]);
    assert.equal(c.command, undefined);
  });

  it('waits for the first sync with a startup probe on /readyz and restarts a dead watch through /healthz', () => {
    assert.deepEqual(c.startupProbe, {
      httpGet: { path: '/readyz', port: 9533, scheme: 'HTTP' },
      periodSeconds: 1,
      timeoutSeconds: 1,
      failureThreshold: 120,
    });
    assert.deepEqual(c.livenessProbe, {
      httpGet: { path: '/healthz', port: 9533, scheme: 'HTTP' },
      periodSeconds: 10,
      timeoutSeconds: 5,
      failureThreshold: 3,
    });
    assert.deepEqual(c.ports, [{ name: 'reloader-http', containerPort: 9533, protocol: 'TCP' }]);
  });

  it('knows its namespace and name from the downward API (its uid only with --events), and runs Node with small young-generation spaces and two malloc arenas', () => {
    assert.deepEqual(c.env, [
      {
        name: 'POD_NAMESPACE',
        valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } },
      },
      { name: 'POD_NAME', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.name' } } },
      { name: 'NODE_OPTIONS', value: '--max-semi-space-size=1' },
      { name: 'MALLOC_ARENA_MAX', value: '2' },
    ]);
  });

  it('passes the restricted Pod Security Standard', () => {
    assert.deepEqual(c.securityContext, {
      runAsNonRoot: true,
      runAsUser: 65532,
      runAsGroup: 65532,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
      readOnlyRootFilesystem: true,
    });
  });

  it('requests cpu and memory and limits memory by default', () => {
    assert.deepEqual(c.resources, { requests: { cpu: '10m', memory: '48Mi' }, limits: { memory: '128Mi' } });
  });
});

describe('sidecar settings from flags and annotations', () => {
  it('legacy mode: a sync-once init container without probes plus a watching container after the app', () => {
    for (const [config, annotations] of [
      [{ sidecarMode: 'legacy' as const }, {}],
      [{}, { 'config-reloader.io/sidecar-mode': 'Legacy' }],
    ] as const) {
      const out = injected(
        makePod({ annotations, spec: { initContainers: [{ name: 'setup', image: 's' }] } }),
        config,
      ).pod;
      const init = initContainers(out)[0] as Obj;
      assert.equal(init.name, 'config-reloader-init');
      assert.equal(args(init).at(-1), '--once');
      for (const key of ['restartPolicy', 'startupProbe', 'livenessProbe', 'readinessProbe', 'ports'])
        assert.equal(init[key], undefined, key);
      assert.deepEqual(
        initContainers(out).map((x) => x.name),
        ['config-reloader-init', 'setup'],
      );
      const watcher = containers(out).at(-1) as Obj;
      assert.deepEqual(
        containers(out).map((x) => x.name),
        ['app', 'config-reloader'],
      );
      assert.deepEqual(args(watcher), args(init).slice(0, -1));
      assert.equal(watcher.restartPolicy, undefined);
      assert.ok(watcher.livenessProbe);
    }
  });

  it('legacy mode denies a pod that runs to completion (restartPolicy Never/OnFailure): its watcher would never exit', () => {
    for (const restartPolicy of ['Never', 'OnFailure']) {
      const fromFlag = denial(makePod({ spec: { restartPolicy } }), { sidecarMode: 'legacy' });
      assert.match(
        fromFlag,
        new RegExp(
          `^the injector flag --sidecar-mode=legacy cannot be used for this pod: the pod has restartPolicy: ${restartPolicy} \\(a Job's or CronJob's pod\\), and legacy mode adds a regular container "config-reloader" that keeps watching and never exits, so the pod would never complete and its Job would hang; set the annotation config-reloader\\.io/sidecar-mode: "native" on the pod to use the native sidecar \\(Kubernetes 1\\.29 and later\\)`,
        ),
      );
      const fromAnnotation = denial(
        makePod({ annotations: { 'config-reloader.io/sidecar-mode': 'legacy' }, spec: { restartPolicy } }),
      );
      assert.match(
        fromAnnotation,
        /^config-reloader\.io\/sidecar-mode: "legacy" cannot be used here: the pod has restartPolicy: .*; remove the annotation or set it to "native" to use the native sidecar \(Kubernetes 1\.29 and later\)/,
      );
    }
    // Pods that run until deleted keep legacy mode; a Job's pod in native mode is injected.
    for (const restartPolicy of [undefined, 'Always']) {
      const spec = restartPolicy ? { restartPolicy } : {};
      assert.equal(inject(makePod({ spec }), { sidecarMode: 'legacy' }).action, 'patch');
    }
    assert.equal(inject(makePod({ spec: { restartPolicy: 'Never' } })).action, 'patch');
    assert.equal(
      inject(
        makePod({
          annotations: { 'config-reloader.io/sidecar-mode': 'native' },
          spec: { restartPolicy: 'Never' },
        }),
        { sidecarMode: 'legacy' },
      ).action,
      'patch',
    );
  });

  it('annotation native overrides a legacy cluster default', () => {
    const out = injected(makePod({ annotations: { 'config-reloader.io/sidecar-mode': 'native' } }), {
      sidecarMode: 'legacy',
    }).pod;
    assert.equal((initContainers(out)[0] as Obj).restartPolicy, 'Always');
  });

  it('resources: flags set the defaults, annotations override them', () => {
    const out = injected(
      makePod({
        annotations: {
          'config-reloader.io/cpu-limit': '200m',
          'config-reloader.io/memory-request': '64Mi',
          'config-reloader.io/memory-limit': '0.125Gi',
        },
      }),
      { resources: { cpuRequest: '20m', memoryLimit: '1Gi' } },
    ).pod;
    assert.deepEqual(sidecar(out).resources, {
      requests: { cpu: '20m', memory: '64Mi' },
      limits: { cpu: '200m', memory: '0.125Gi' },
    });
  });

  it('image, pull policy and log level come from the configuration; the log-level annotation overrides', () => {
    const config = {
      reloaderImage: 'registry.local/cri:1.2.3',
      imagePullPolicy: 'IfNotPresent' as const,
      reloaderLogLevel: 'warn',
    };
    const c = sidecar(injected(makePod(), config).pod);
    assert.equal(c.image, 'registry.local/cri:1.2.3');
    assert.equal(c.imagePullPolicy, 'IfNotPresent');
    assert.equal(flag(c, 'log-level'), 'warn');
    assert.equal(
      flag(
        sidecar(injected(makePod({ annotations: { 'config-reloader.io/log-level': 'DEBUG' } }), config).pod),
        'log-level',
      ),
      'debug',
    );
  });

  it('reload: method upper-cased, URL normalised, no reload flags without a URL', () => {
    const c = sidecar(
      injected(
        makePod({
          annotations: {
            'config-reloader.io/reload-url': 'http://LOCALHOST:9090/-/reload',
            'config-reloader.io/reload-method': 'put',
          },
        }),
      ).pod,
    );
    assert.equal(flag(c, 'reload-url'), 'http://localhost:9090/-/reload');
    assert.equal(flag(c, 'reload-method'), 'PUT');
    const plain = sidecar(injected(makePod()).pod);
    assert.equal(flag(plain, 'reload-url'), undefined);
    assert.equal(flag(plain, 'reload-method'), undefined);
  });

  it('a reload URL to another host is allowed when the injector allows any host', () => {
    const c = sidecar(
      injected(
        makePod({ annotations: { 'config-reloader.io/reload-url': 'https://app.shop.svc:8443/reload' } }),
        { allowedReloadHosts: 'any' },
      ).pod,
    );
    assert.equal(flag(c, 'reload-url'), 'https://app.shop.svc:8443/reload');
  });

  it('warns that a reload method without a URL is ignored, and about unknown annotations', () => {
    const outcome = inject(
      makePod({
        annotations: { 'config-reloader.io/reload-method': 'GET', 'config-reloader.io/reload-uri': 'x' },
      }),
    );
    const text = outcome.warnings.join('\n');
    assert.match(
      text,
      /config-reloader\.io\/reload-method is ignored without config-reloader\.io\/reload-url/,
    );
    assert.match(text, /unknown annotation config-reloader\.io\/reload-uri/);
  });
});

describe('the sidecar port', () => {
  const withPorts = (ports: number[], extra: Obj = {}): Obj =>
    makePod({
      spec: {
        containers: [
          {
            name: 'app',
            image: 'a',
            ports: ports.map((p) => ({ containerPort: p })),
            volumeMounts: [{ name: 'config', mountPath: '/c' }],
          },
        ],
        ...extra,
      },
    });

  it('moves to the next free port when a container declares it, with a warning', () => {
    const { pod, warnings } = injected(withPorts([9533, 9534, 8080]));
    assert.equal(flag(sidecar(pod), 'listen'), ':9535');
    assert.equal(((sidecar(pod).startupProbe as Obj).httpGet as Obj).port, 9535);
    assert.match(
      warnings.join('\n'),
      /port 9533 is used by container "app"; the config-reloader sidecar listens on 9535/,
    );
  });

  it('counts ports of init containers and the port of the reload URL as taken', () => {
    const pod = makePod({
      annotations: { 'config-reloader.io/reload-url': 'http://127.0.0.1:9533/reload' },
      spec: {
        initContainers: [
          { name: 'proxy', image: 'p', restartPolicy: 'Always', ports: [{ containerPort: 9534 }] },
        ],
      },
    });
    assert.equal(flag(sidecar(injected(pod).pod), 'listen'), ':9535');
  });

  it('uses the port of config-reloader.io/port and the --reloader-port default', () => {
    assert.equal(
      flag(sidecar(injected(makePod({ annotations: { 'config-reloader.io/port': '7000' } })).pod), 'listen'),
      ':7000',
    );
    assert.equal(flag(sidecar(injected(makePod(), { port: 7100 }).pod), 'listen'), ':7100');
  });

  it('does not declare its port name when the pod already uses it', () => {
    const pod = makePod({
      spec: {
        containers: [{ name: 'app', image: 'a', ports: [{ name: 'reloader-http', containerPort: 80 }] }],
      },
    });
    assert.equal(sidecar(injected(pod).pod).ports, undefined);
  });

  it('warns on hostNetwork pods, whose ports are the node ports', () => {
    const { warnings } = injected(withPorts([], { hostNetwork: true }));
    assert.match(
      warnings.join('\n'),
      /hostNetwork: the config-reloader sidecar listens on port 9533 of the node/,
    );
  });
});

describe('API access for the sidecar', () => {
  it("reuses the pod's kube-api-access volume, read-only at the standard path", () => {
    const pod = makePod({ volumes: [{ name: 'config', configMap: { name: 'c' } }, kubeApiAccess] });
    const out = injected(pod).pod;
    assert.deepEqual(tokenMount(sidecar(out)), {
      name: 'kube-api-access-x7k2p',
      mountPath: TOKEN_MOUNT_PATH,
      readOnly: true,
    });
    assert.equal(volume(out, 'config-reloader-api-access'), undefined);
    assert.deepEqual(volume(out, 'kube-api-access-x7k2p'), kubeApiAccess);
  });

  it('reuses whatever volume an app container mounts at the standard path', () => {
    const pod = makePod({
      volumes: [
        { name: 'config', configMap: { name: 'c' } },
        { name: 'legacy-token', secret: { secretName: 'default-token-abcde' } },
      ],
      mounts: [
        { name: 'config', mountPath: '/c' },
        { name: 'legacy-token', mountPath: `${TOKEN_MOUNT_PATH}/`, readOnly: true },
      ],
    });
    const out = injected(pod).pod;
    assert.equal(tokenMount(sidecar(out))?.name, 'legacy-token');
    assert.ok(volume(out, 'legacy-token')?.secret, 'the token volume is never converted');
  });

  it('with automountServiceAccountToken: false, gives the sidecar alone its own projected token volume', () => {
    const pod = makePod({
      volumes: [{ name: 'config', configMap: { name: 'c' } }, kubeApiAccess],
      spec: { automountServiceAccountToken: false },
    });
    const out = injected(pod).pod;
    assert.equal(tokenMount(sidecar(out))?.name, 'config-reloader-api-access');
    assert.deepEqual(volume(out, 'config-reloader-api-access'), {
      name: 'config-reloader-api-access',
      projected: {
        sources: [
          { serviceAccountToken: { path: 'token', expirationSeconds: 3607 } },
          { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
          {
            downwardAPI: {
              items: [{ path: 'namespace', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } }],
            },
          },
        ],
      },
    });
    assert.equal(tokenMount(containers(out)[0] as Obj), undefined);
  });

  it('does not take a token meant for another audience (Vault, SPIRE) for its API token', () => {
    const vault = {
      name: 'vault-token',
      projected: {
        sources: [
          { serviceAccountToken: { path: 'token', audience: 'vault' } },
          { configMap: { name: 'kube-root-ca.crt' } },
        ],
      },
    };
    const out = injected(makePod({ volumes: [{ name: 'config', configMap: { name: 'c' } }, vault] })).pod;
    assert.equal(tokenMount(sidecar(out))?.name, 'config-reloader-api-access');
    assert.equal(volumes(out).length, 3);
  });
});
