import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { denial, inject, makePod, type Obj } from './pod-builder.ts';

/** Each invalid opt-in configuration is denied with a message that names the annotation and says how to fix it. */
const cases: { name: string; pod: Obj; config?: Obj; message: RegExp }[] = [
  {
    name: 'a volume name that is no volume of the pod',
    pod: makePod({ annotations: { 'config-reloader.io/volumes': 'config,missing' } }),
    message:
      /^config-reloader\.io\/volumes: "missing" is no volume of the pod; list only secret\/configMap volumes of the pod \(here: config\)/,
  },
  {
    name: 'a volume name that is not a secret/configMap volume',
    pod: makePod({
      annotations: { 'config-reloader.io/volumes': 'data' },
      volumes: [{ name: 'data', emptyDir: {} }],
      mounts: [],
    }),
    message:
      /^config-reloader\.io\/volumes: "data" is a volume that is neither a secret nor a configMap volume; the pod has no secret\/configMap volume/,
  },
  {
    name: 'a named volume that cannot be synced',
    pod: makePod({
      annotations: { 'config-reloader.io/volumes': 'config' },
      volumes: [{ name: 'config', configMap: { name: 'c', defaultMode: 4096 } }],
    }),
    message:
      /^config-reloader\.io\/volumes: volume "config" cannot be synced: its defaultMode is not a file mode/,
  },
  {
    name: 'a malformed reload URL',
    pod: makePod({ annotations: { 'config-reloader.io/reload-url': 'not a url' } }),
    message: /^config-reloader\.io\/reload-url: "not a url" is not a valid URL; set it to the http\(s\) URL/,
  },
  {
    name: 'a reload URL that is not http(s)',
    pod: makePod({ annotations: { 'config-reloader.io/reload-url': 'file:///etc/passwd' } }),
    message: /^config-reloader\.io\/reload-url: "file:\/\/\/etc\/passwd" must use http or https/,
  },
  {
    name: 'a reload URL to another host (loopback only by default)',
    pod: makePod({ annotations: { 'config-reloader.io/reload-url': 'http://10.0.0.1:8080/reload' } }),
    message: /^config-reloader\.io\/reload-url: host "10\.0\.0\.1" is not a loopback address/,
  },
  {
    name: 'a reload URL with credentials',
    pod: makePod({
      annotations: { 'config-reloader.io/reload-url': 'http://admin:hunter2@127.0.0.1/reload' },
    }),
    message: /^config-reloader\.io\/reload-url: .*must not contain credentials/,
  },
  {
    name: 'an unsupported reload method',
    pod: makePod({
      annotations: {
        'config-reloader.io/reload-url': 'http://127.0.0.1/r',
        'config-reloader.io/reload-method': 'DELETE',
      },
    }),
    message:
      /^config-reloader\.io\/reload-method: "DELETE" is not a supported HTTP method; use one of GET, POST, PUT/,
  },
  {
    name: 'a bad quantity',
    pod: makePod({ annotations: { 'config-reloader.io/memory-limit': '96MB' } }),
    message: /^config-reloader\.io\/memory-limit: "96MB" is not a Kubernetes quantity/,
  },
  {
    name: 'a negative quantity',
    pod: makePod({ annotations: { 'config-reloader.io/cpu-request': '-1' } }),
    message: /^config-reloader\.io\/cpu-request: "-1" must not be negative/,
  },
  {
    name: 'a request above the limit',
    pod: makePod({ annotations: { 'config-reloader.io/memory-request': '256Mi' } }),
    message:
      /^config-reloader\.io\/memory-request: the memory request 256Mi .* is greater than the memory limit 128Mi/,
  },
  {
    name: 'a limit below the default request',
    pod: makePod({ annotations: { 'config-reloader.io/cpu-limit': '5m' } }),
    message:
      /^config-reloader\.io\/cpu-limit: the cpu request 10m \(from the injector flag --cpu-request\) is greater than the cpu limit 5m/,
  },
  {
    name: 'a port that is not a number',
    pod: makePod({ annotations: { 'config-reloader.io/port': '95330' } }),
    message: /^config-reloader\.io\/port: "95330" is not a port number from 1 to 65535/,
  },
  {
    name: 'a fixed port that a container uses',
    pod: makePod({
      annotations: { 'config-reloader.io/port': '8080' },
      spec: { containers: [{ name: 'app', image: 'a', ports: [{ containerPort: 8080 }] }] },
    }),
    message:
      /^config-reloader\.io\/port: port 8080 is already used by container "app"; set it to a port no container of the pod uses/,
  },
  {
    name: 'a fixed port that is the reload URL port',
    pod: makePod({
      annotations: {
        'config-reloader.io/port': '80',
        'config-reloader.io/reload-url': 'http://localhost/reload',
      },
    }),
    message: /^config-reloader\.io\/port: port 80 is already used by the app's reload URL/,
  },
  {
    name: 'an unknown sidecar mode',
    pod: makePod({ annotations: { 'config-reloader.io/sidecar-mode': 'sidecar' } }),
    message:
      /^config-reloader\.io\/sidecar-mode: "sidecar" is not a sidecar mode; use "native" \(Kubernetes 1\.29 and later\) or "legacy"/,
  },
  {
    name: 'gunzip that is not a boolean',
    pod: makePod({ annotations: { 'config-reloader.io/gunzip': 'yes' } }),
    message: /^config-reloader\.io\/gunzip: "yes" is neither "true" nor "false"/,
  },
  {
    name: 'an unknown log level',
    pod: makePod({ annotations: { 'config-reloader.io/log-level': 'verbose' } }),
    message: /^config-reloader\.io\/log-level: "verbose" is not a log level/,
  },
  {
    name: 'an invalid object name in config-reloader.io/secrets',
    pod: makePod({ annotations: { 'config-reloader.io/secrets': 'Db_Creds' } }),
    message: /^config-reloader\.io\/secrets: "Db_Creds" is not a valid object name/,
  },
  {
    name: 'the same object name as Secret and ConfigMap',
    pod: makePod({
      annotations: { 'config-reloader.io/secrets': 'app', 'config-reloader.io/configmaps': 'other,app' },
    }),
    message: /^config-reloader\.io\/configmaps: "app" is also listed in config-reloader\.io\/secrets/,
  },
  {
    name: 'a relative mount path',
    pod: makePod({
      annotations: { 'config-reloader.io/secrets': 'app', 'config-reloader.io/mount-path': 'etc/app' },
    }),
    message: /^config-reloader\.io\/mount-path: "etc\/app" is not an absolute directory path/,
  },
  {
    name: 'a mount path an app container already uses',
    pod: makePod({
      annotations: { 'config-reloader.io/secrets': 'app', 'config-reloader.io/mount-path': '/etc/app' },
    }),
    message:
      /^config-reloader\.io\/mount-path: container "app" already mounts volume "config" at \/etc\/app; choose another directory/,
  },
  {
    name: 'a container name that the pod does not have',
    pod: makePod({
      annotations: { 'config-reloader.io/secrets': 'app', 'config-reloader.io/containers': 'app,sidekick' },
    }),
    message:
      /^config-reloader\.io\/containers: the pod has no container named "sidekick"; list containers of the pod \(here: app\)/,
  },
  {
    name: 'a container named config-reloader without the status annotation',
    pod: makePod({
      spec: {
        containers: [
          { name: 'app', image: 'a' },
          { name: 'config-reloader', image: 'x' },
        ],
      },
    }),
    message:
      /^config-reloader\.io\/status: the pod already has a container named "config-reloader" but no config-reloader\.io\/status: injected annotation; rename it/,
  },
  {
    name: 'an init container named config-reloader-init without the status annotation',
    pod: makePod({ spec: { initContainers: [{ name: 'config-reloader-init', image: 'x' }] } }),
    message: /container named "config-reloader-init"/,
  },
  {
    name: 'a volume named config-reloader without the status annotation',
    pod: makePod({
      volumes: [
        { name: 'config', configMap: { name: 'c' } },
        { name: 'config-reloader', emptyDir: {} },
      ],
    }),
    message: /^config-reloader\.io\/status: the pod already has a volume named "config-reloader"/,
  },
  {
    name: 'a bad quantity in the injector configuration names the flag',
    pod: makePod(),
    config: { resources: { memoryRequest: 'lots' } },
    message: /^the injector flag --memory-request: "lots" is not a Kubernetes quantity/,
  },
];

describe('bad input is denied with a message that names the annotation and the fix', () => {
  for (const c of cases) {
    it(c.name, () => {
      assert.match(denial(c.pod, c.config), c.message);
    });
  }
});

describe('every problem of a pod is reported in one denial, not only the first', () => {
  const problemsOf = (pod: Obj, config?: Obj): { message: string; problems: string[] } => {
    const message = denial(pod, config);
    const outcome = inject(pod, config);
    return { message, problems: outcome.action === 'deny' ? outcome.problems : [] };
  };

  it('lists each invalid annotation, with its value and its fix, numbered under one line', () => {
    const { message, problems } = problemsOf(
      makePod({
        annotations: {
          'config-reloader.io/port': 'none',
          'config-reloader.io/reload-url': 'ftp://127.0.0.1/reload',
          'config-reloader.io/log-level': 'verbose',
          'config-reloader.io/memory-limit': '96MB',
          'config-reloader.io/volumes': 'config,missing',
        },
      }),
    );
    assert.deepEqual(
      problems.map((p) => p.replace(/:.*/s, '')),
      [
        'config-reloader.io/reload-url',
        'config-reloader.io/port',
        'config-reloader.io/memory-limit',
        'config-reloader.io/log-level',
        'config-reloader.io/volumes',
      ],
    );
    assert.equal(problems.length, 5);
    const lines = message.split('\n');
    assert.equal(lines[0], "5 problems with the pod's config-reloader settings, fix each of them:");
    assert.deepEqual(
      lines.slice(1),
      problems.map((p, i) => `${i + 1}. ${p}`),
    );
    assert.match(
      message,
      /config-reloader\.io\/port: "none" is not a port number from 1 to 65535; set a port/,
    );
    assert.match(
      message,
      /config-reloader\.io\/reload-url: "ftp:\/\/127\.0\.0\.1\/reload" must use http or https/,
    );
    assert.match(message, /config-reloader\.io\/log-level: "verbose" is not a log level; use one of trace/);
    assert.match(message, /config-reloader\.io\/memory-limit: "96MB" is not a Kubernetes quantity/);
    assert.match(message, /config-reloader\.io\/volumes: "missing" is no volume of the pod; list only/);
  });

  it('reports a bad inject value together with the other annotations', () => {
    const { problems } = problemsOf(
      makePod({ annotations: { 'config-reloader.io/inject': 'yes', 'config-reloader.io/gunzip': 'yes' } }),
    );
    assert.equal(problems.length, 2);
    assert.match(problems[0] ?? '', /^config-reloader\.io\/inject: "yes" is neither "true" nor "false"/);
    assert.match(problems[1] ?? '', /^config-reloader\.io\/gunzip: "yes" is neither "true" nor "false"/);
  });

  it('reports every invalid name in a list, and the checks of the pod (containers, fixed port) as well', () => {
    const { problems } = problemsOf(
      makePod({
        annotations: {
          'config-reloader.io/secrets': 'Db_Creds,ok,Other_One',
          'config-reloader.io/containers': 'app,sidekick',
          'config-reloader.io/port': '8080',
        },
        spec: {
          containers: [
            {
              name: 'app',
              image: 'a',
              ports: [{ containerPort: 8080 }],
              volumeMounts: [{ name: 'config', mountPath: '/etc/app' }],
            },
          ],
        },
      }),
    );
    assert.deepEqual(
      problems.map((p) => p.replace(/;.*/, '')),
      [
        'config-reloader.io/secrets: "Db_Creds" is not a valid object name',
        'config-reloader.io/secrets: "Other_One" is not a valid object name',
        'config-reloader.io/containers: the pod has no container named "sidekick"',
        'config-reloader.io/port: port 8080 is already used by container "app"',
      ],
    );
  });

  it('does not add problems that only follow from another one (an invalid mount path is not also "in use")', () => {
    const { problems } = problemsOf(
      makePod({
        annotations: {
          'config-reloader.io/secrets': 'app',
          'config-reloader.io/mount-path': 'etc/app',
          'config-reloader.io/reload-method': 'DELETE',
        },
        mounts: [{ name: 'config', mountPath: '/etc/config-reloader' }],
      }),
    );
    assert.deepEqual(
      problems.map((p) => p.replace(/:.*/, '')),
      ['config-reloader.io/mount-path', 'config-reloader.io/reload-method'],
    );
  });

  it('keeps a single problem as the whole message, as before', () => {
    const { message, problems } = problemsOf(makePod({ annotations: { 'config-reloader.io/port': 'x' } }));
    assert.deepEqual(problems, [message]);
    assert.doesNotMatch(message, /\n/);
  });
});
