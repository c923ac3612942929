import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { serviceHosts } from '../../src/certs/generate.ts';
import { TestApiServer } from '../support/kube-apiserver/index.ts';
import type { KubeObject } from '../support/kube-apiserver/index.ts';
import { rawRequest } from '../support/kube-apiserver/raw-client.ts';
import type { StubAnswer, StubWebhook } from '../support/kube-apiserver/stub-webhook.ts';
import { startStubWebhook } from '../support/kube-apiserver/stub-webhook.ts';

type Obj = Record<string, unknown>;

function pod(
  name: string,
  extra: { labels?: Record<string, string>; annotations?: Record<string, string>; spec?: Obj } = {},
): Obj {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      ...(extra.labels ? { labels: extra.labels } : {}),
      ...(extra.annotations ? { annotations: extra.annotations } : {}),
    },
    spec: { containers: [{ name: 'app', image: 'example.com/app:1.0' }], ...extra.spec },
  };
}

const containerOf = (p: Obj, list = 'containers', i = 0): Obj => ((p.spec as Obj)[list] as Obj[])[i] as Obj;

void describe('test kube-apiserver: the pod admission chain', () => {
  let api: TestApiServer;
  let stub: StubWebhook;
  let answer: (request: Obj, path: string) => StubAnswer = () => ({ allowed: true });

  const create = async (namespace: string, body: Obj, token = api.adminToken, query = '') =>
    rawRequest(api, 'POST', `/api/v1/namespaces/${namespace}/pods${query}`, { token, body });
  const webhookConfig = (name: string, webhooks: Obj[]): KubeObject => ({
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'MutatingWebhookConfiguration',
    metadata: { name },
    webhooks: webhooks.map((w) => ({
      admissionReviewVersions: ['v1'],
      sideEffects: 'None',
      failurePolicy: 'Fail',
      timeoutSeconds: 5,
      clientConfig: { url: `${stub.url}/mutate`, caBundle: stub.caBundle },
      rules: [
        {
          apiGroups: [''],
          apiVersions: ['v1'],
          operations: ['CREATE'],
          resources: ['pods'],
          scope: 'Namespaced',
        },
      ],
      ...w,
    })),
  });
  const install = (config: KubeObject): (() => void) => {
    api.create(config);
    return () => api.delete('mutatingwebhookconfigurations', undefined, config.metadata.name);
  };

  before(async () => {
    api = await TestApiServer.start({ namespaceControllers: true });
    stub = await startStubWebhook((r, p) => answer(r, p), ['127.0.0.1', ...serviceHosts('stub', 'hooks')]);
    for (const ns of ['plain', 'chain', 'labelled'])
      await rawRequest(api, 'POST', '/api/v1/namespaces', {
        token: api.adminToken,
        body: {
          apiVersion: 'v1',
          kind: 'Namespace',
          metadata: { name: ns, ...(ns === 'labelled' ? { labels: { inject: 'yes' } } : {}) },
        },
      });
  });
  after(async () => {
    await stub.close();
    await api.close();
  });

  void test('namespace controllers give every namespace the default ServiceAccount and kube-root-ca.crt', () => {
    for (const ns of ['default', 'plain']) {
      assert.ok(api.get('serviceaccounts', ns, 'default'));
      assert.equal((api.get('configmaps', ns, 'kube-root-ca.crt')?.data as Obj)['ca.crt'], api.caCert);
      assert.equal(
        ((api.get('namespaces', undefined, ns)?.metadata.labels ?? {}) as Obj)['kubernetes.io/metadata.name'],
        ns,
      );
    }
  });

  void test('defaults the pod and runs the ServiceAccount step: token volume mounted in the containers present', async () => {
    const res = await create(
      'plain',
      pod('p1', { spec: { initContainers: [{ name: 'init', image: 'busybox' }] } }),
    );
    assert.equal(res.status, 201, res.body);
    const stored = JSON.parse(res.body) as Obj;
    const spec = stored.spec as Obj;
    assert.equal(spec.serviceAccountName, 'default');
    assert.equal(spec.serviceAccount, 'default');
    assert.equal(spec.restartPolicy, 'Always');
    assert.equal(spec.dnsPolicy, 'ClusterFirst');
    assert.equal(spec.terminationGracePeriodSeconds, 30);
    assert.equal(spec.schedulerName, 'default-scheduler');
    assert.equal(spec.enableServiceLinks, true);
    assert.deepEqual(spec.securityContext, {});
    assert.equal((stored.status as Obj).phase, 'Pending');
    const volumes = spec.volumes as Obj[];
    assert.equal(volumes.length, 1);
    const volume = volumes[0] as Obj;
    assert.match(String(volume.name), /^kube-api-access-[bcdfghjklmnpqrstvwxz2456789]{5}$/);
    assert.deepEqual(volume.projected, {
      sources: [
        { serviceAccountToken: { expirationSeconds: 3607, path: 'token' } },
        { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
        {
          downwardAPI: {
            items: [{ path: 'namespace', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } }],
          },
        },
      ],
      defaultMode: 420,
    });
    for (const c of [containerOf(stored), containerOf(stored, 'initContainers')]) {
      assert.deepEqual(c.volumeMounts, [
        { name: volume.name, readOnly: true, mountPath: '/var/run/secrets/kubernetes.io/serviceaccount' },
      ]);
      assert.equal(c.terminationMessagePath, '/dev/termination-log');
      assert.equal(c.terminationMessagePolicy, 'File');
    }
    assert.equal(containerOf(stored).imagePullPolicy, 'IfNotPresent');
    assert.equal(containerOf(stored, 'initContainers').imagePullPolicy, 'Always');
  });

  void test('no token volume when the pod or its ServiceAccount turns automount off; a missing ServiceAccount is Forbidden', async () => {
    const off = JSON.parse(
      (await create('plain', pod('p2', { spec: { automountServiceAccountToken: false } }))).body,
    ) as Obj;
    assert.equal((off.spec as Obj).volumes, undefined);
    api.create({
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: { name: 'quiet', namespace: 'plain' },
      automountServiceAccountToken: false,
    });
    const quiet = JSON.parse(
      (await create('plain', pod('p3', { spec: { serviceAccountName: 'quiet' } }))).body,
    ) as Obj;
    assert.equal((quiet.spec as Obj).volumes, undefined);
    const missing = await create('plain', pod('p4', { spec: { serviceAccountName: 'ghost' } }));
    assert.equal(missing.status, 403);
    assert.equal(
      (JSON.parse(missing.body) as Obj).message,
      'pods "p4" is forbidden: error looking up service account plain/ghost: serviceaccount "ghost" not found',
    );
  });

  void test('an invalid pod is rejected with 422 Invalid and not stored', async () => {
    const res = await create('plain', {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'bad' },
      spec: { containers: [{ name: 'app' }] },
    });
    assert.equal(res.status, 422);
    assert.match((JSON.parse(res.body) as Obj).message as string, /^Pod "bad" is invalid: .*no image/);
    assert.equal(api.get('pods', 'plain', 'bad'), undefined);
  });

  void test('calls a matching webhook with the real AdmissionReview, applies its patch and passes its warnings on', async () => {
    answer = () => ({
      allowed: true,
      patch: [
        { op: 'add', path: '/spec/containers/-', value: { name: 'added', image: 'example.com/sidecar:2' } },
      ],
      warnings: ['careful: "quoted", naïve → ok'],
    });
    const uninstall = install(webhookConfig('stub', [{ name: 'add.example.com' }]));
    try {
      stub.calls.length = 0;
      const sa = api.addServiceAccount('chain', 'deployer', [{ verbs: ['create'], resource: 'pods' }]);
      const res = await create('chain', pod('w1'), sa, '?dryRun=All&fieldManager=tester');
      assert.equal(res.status, 201, res.body);
      // UTF-8 on the wire (node's client decodes header bytes as latin1); node:http cannot send "→".
      assert.equal(
        Buffer.from(String(res.headers.warning), 'latin1').toString('utf8'),
        '299 - "careful: \\"quoted\\", naïve ? ok"',
      );
      const created = JSON.parse(res.body) as Obj;
      const added = containerOf(created, 'containers', 1);
      assert.equal(added.name, 'added');
      // Defaults apply to what the webhook added, as the real server decodes the patched object again.
      assert.equal(added.terminationMessagePath, '/dev/termination-log');
      assert.equal(added.imagePullPolicy, 'IfNotPresent');
      assert.equal(added.volumeMounts, undefined);
      assert.equal(stub.calls.length, 1);
      const call = stub.calls[0] as { path: string; review: Obj };
      assert.equal(call.path, '/mutate?timeout=5s');
      const request = call.review.request as Obj;
      assert.equal(call.review.apiVersion, 'admission.k8s.io/v1');
      assert.match(String(request.uid), /^[0-9a-f-]{36}$/);
      assert.deepEqual(request.kind, { group: '', version: 'v1', kind: 'Pod' });
      assert.deepEqual(request.resource, { group: '', version: 'v1', resource: 'pods' });
      assert.deepEqual(request.requestKind, { group: '', version: 'v1', kind: 'Pod' });
      assert.equal(request.name, 'w1');
      assert.equal(request.namespace, 'chain');
      assert.equal(request.operation, 'CREATE');
      assert.equal(request.oldObject, null);
      assert.equal(request.dryRun, true);
      assert.deepEqual(request.options, {
        kind: 'CreateOptions',
        apiVersion: 'meta.k8s.io/v1',
        fieldManager: 'tester',
      });
      assert.deepEqual(request.userInfo, {
        username: 'system:serviceaccount:chain:deployer',
        groups: ['system:serviceaccounts', 'system:serviceaccounts:chain', 'system:authenticated'],
      });
      // The webhook sees the pod after the built-in steps.
      const sent = request.object as Obj;
      assert.match(String(((sent.spec as Obj).volumes as Obj[])[0]?.name), /^kube-api-access-/);
      assert.equal(api.get('pods', 'chain', 'w1'), undefined, 'dryRun stores nothing');
    } finally {
      uninstall();
      answer = () => ({ allowed: true });
    }
  });

  void test('namespaceSelector, objectSelector, rules and matchConditions decide which pods are sent', async () => {
    const uninstall = install(
      webhookConfig('selective', [
        {
          name: 'selective.example.com',
          namespaceSelector: { matchExpressions: [{ key: 'inject', operator: 'In', values: ['yes'] }] },
          objectSelector: { matchExpressions: [{ key: 'skip', operator: 'DoesNotExist' }] },
          matchConditions: [
            {
              name: 'not-opted-out',
              expression: "!has(object.metadata.annotations) || !('off' in object.metadata.annotations)",
            },
            { name: 'is-create', expression: "request.operation == 'CREATE' && oldObject == null" },
          ],
        },
        {
          name: 'other-resource.example.com',
          rules: [
            { apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['pods/status'] },
          ],
        },
      ]),
    );
    try {
      stub.calls.length = 0;
      const before = api.admissions.length;
      assert.equal((await create('plain', pod('s1'))).status, 201);
      assert.equal((await create('labelled', pod('s2', { labels: { skip: 'x' } }))).status, 201);
      assert.equal((await create('labelled', pod('s3', { annotations: { off: '' } }))).status, 201);
      assert.equal(stub.calls.length, 0);
      assert.deepEqual(
        api.admissions.slice(before).map((r) => [r.webhook, r.name, r.result]),
        [['selective.example.com', 's3', 'skipped-condition']],
      );
      assert.equal((await create('labelled', pod('s4'))).status, 201);
      assert.deepEqual(
        stub.calls.map((c) => (c.review.request as Obj).name),
        ['s4'],
      );
    } finally {
      uninstall();
    }
  });

  void test("a denial is the webhook's message, prefixed as the real server does, with its code", async () => {
    answer = () => ({
      allowed: false,
      status: { code: 400, reason: 'BadRequest', message: 'annotation x is wrong' },
    });
    const uninstall = install(webhookConfig('denier', [{ name: 'deny.example.com' }]));
    try {
      const res = await create('plain', pod('d1'));
      assert.equal(res.status, 400);
      const status = JSON.parse(res.body) as Obj;
      assert.equal(
        status.message,
        'admission webhook "deny.example.com" denied the request: annotation x is wrong',
      );
      assert.equal(status.reason, 'BadRequest');
      assert.equal(api.get('pods', 'plain', 'd1'), undefined);
    } finally {
      uninstall();
      answer = () => ({ allowed: true });
    }
  });

  void test('failurePolicy: an unreachable, untrusted or slow webhook is skipped with Ignore and fails the create with Fail', async () => {
    const svc = { service: { name: 'stub', namespace: 'hooks', path: '/mutate', port: 443 } };
    const cases: Array<{
      name: string;
      clientConfig: Obj;
      hang?: boolean;
      timeoutSeconds?: number;
      error: RegExp;
    }> = [
      {
        name: 'refused',
        clientConfig: { url: 'https://127.0.0.1:1/mutate', caBundle: stub.caBundle },
        error:
          /failed to call webhook: Post "https:\/\/127\.0\.0\.1:1\/mutate\?timeout=5s": dial tcp 127\.0\.0\.1:1: connect: connection refused$/,
      },
      {
        name: 'untrusted',
        clientConfig: { ...svc, caBundle: Buffer.from(api.caCert).toString('base64') },
        error: /certificate/,
      },
      {
        name: 'slow',
        clientConfig: { ...svc, caBundle: stub.caBundle },
        hang: true,
        timeoutSeconds: 1,
        error: /context deadline exceeded$/,
      },
    ];
    api.setServiceResolver((ns, name, port) =>
      ns === 'hooks' && name === 'stub' && port === 443 ? { host: '127.0.0.1', port: stub.port } : undefined,
    );
    try {
      for (const c of cases) {
        answer = () =>
          c.hang
            ? 'hang'
            : { allowed: true, patch: [{ op: 'add', path: '/metadata/labels', value: { hooked: 'yes' } }] };
        for (const failurePolicy of ['Ignore', 'Fail']) {
          const uninstall = install(
            webhookConfig('failing', [
              {
                name: 'failing.example.com',
                failurePolicy,
                clientConfig: c.clientConfig,
                timeoutSeconds: c.timeoutSeconds ?? 5,
              },
            ]),
          );
          try {
            const name = `${c.name}-${failurePolicy.toLowerCase()}`;
            const res = await create('plain', pod(name));
            if (failurePolicy === 'Ignore') {
              assert.equal(res.status, 201, `${name}: ${res.body}`);
              assert.equal(((JSON.parse(res.body) as Obj).metadata as Obj).labels, undefined);
            } else {
              assert.equal(res.status, 500, `${name}: ${res.body}`);
              const status = JSON.parse(res.body) as Obj;
              assert.equal(status.reason, 'InternalError');
              assert.match(
                String(status.message),
                /^Internal error occurred: failed calling webhook "failing\.example\.com": /,
              );
              assert.match(String(status.message), c.error);
            }
          } finally {
            uninstall();
          }
        }
      }
      // The certificate is checked for the Service's name: the same CA, reached through the Service, works.
      answer = () => ({
        allowed: true,
        patch: [{ op: 'add', path: '/metadata/labels', value: { hooked: 'yes' } }],
      });
      const uninstall = install(
        webhookConfig('served', [
          { name: 'served.example.com', clientConfig: { ...svc, caBundle: stub.caBundle } },
        ]),
      );
      try {
        const res = await create('plain', pod('via-service'));
        assert.deepEqual(((JSON.parse(res.body) as Obj).metadata as Obj).labels, { hooked: 'yes' });
      } finally {
        uninstall();
      }
    } finally {
      api.setServiceResolver(undefined);
      answer = () => ({ allowed: true });
    }
  });

  void test('a matchConditions error follows failurePolicy', async () => {
    for (const failurePolicy of ['Ignore', 'Fail']) {
      const uninstall = install(
        webhookConfig('broken-condition', [
          {
            name: 'cel.example.com',
            failurePolicy,
            matchConditions: [{ name: 'bad', expression: 'object.spec.nothing == 1' }],
          },
        ]),
      );
      try {
        const res = await create('plain', pod(`cel-${failurePolicy.toLowerCase()}`));
        if (failurePolicy === 'Ignore') assert.equal(res.status, 201);
        else {
          assert.equal(res.status, 500);
          assert.match(
            String((JSON.parse(res.body) as Obj).message),
            /^Internal error occurred: failed calling webhook "cel\.example\.com": failed to evaluate match condition: expression 'bad' resulted in error: /,
          );
        }
      } finally {
        uninstall();
      }
    }
  });

  void test('reinvocationPolicy IfNeeded: an earlier webhook runs once more after a later one changed the pod', async () => {
    answer = (request, path) => {
      const labels = ((request.object as Obj).metadata as Obj).labels as Obj | undefined;
      if (path === '/first')
        return labels?.first
          ? { allowed: true }
          : {
              allowed: true,
              patch: [{ op: 'add', path: '/metadata/labels', value: { ...labels, first: 'y' } }],
            };
      return { allowed: true, patch: [{ op: 'add', path: '/metadata/labels/second', value: 'y' }] };
    };
    const hook = (name: string, path: string, reinvocationPolicy: string): Obj => ({
      name,
      reinvocationPolicy,
      clientConfig: { url: `${stub.url}${path}`, caBundle: stub.caBundle },
    });
    const uninstall = [
      // Not called in the first round (its objectSelector matches only later): not reinvoked either.
      install(
        webhookConfig('a-0-late', [
          {
            ...hook('late.example.com', '/late', 'IfNeeded'),
            objectSelector: { matchLabels: { second: 'y' } },
          },
        ]),
      ),
      install(webhookConfig('a-first', [hook('first.example.com', '/first', 'IfNeeded')])),
      install(webhookConfig('b-second', [hook('second.example.com', '/second', 'Never')])),
    ];
    try {
      stub.calls.length = 0;
      const res = await create('plain', pod('r1'));
      assert.deepEqual(((JSON.parse(res.body) as Obj).metadata as Obj).labels, { first: 'y', second: 'y' });
      assert.deepEqual(
        stub.calls.map((c) => c.path.split('?')[0]),
        ['/first', '/second', '/first'],
      );
      assert.deepEqual(
        api.admissions.filter((r) => r.name === 'r1').map((r) => [r.webhook, r.round, r.result]),
        [
          ['first.example.com', 1, 'patched'],
          ['second.example.com', 1, 'patched'],
          ['first.example.com', 2, 'unchanged'],
        ],
      );
    } finally {
      for (const u of uninstall) u();
      answer = () => ({ allowed: true });
    }
  });

  void test('a webhook patch that makes the pod invalid is rejected by validation', async () => {
    answer = () => ({
      allowed: true,
      patch: [{ op: 'add', path: '/spec/containers/-', value: { name: 'app', image: 'x' } }],
    });
    const uninstall = install(webhookConfig('dup', [{ name: 'dup.example.com' }]));
    try {
      const res = await create('plain', pod('v1'));
      assert.equal(res.status, 422);
      assert.match(String((JSON.parse(res.body) as Obj).message), /duplicate container name/);
    } finally {
      uninstall();
      answer = () => ({ allowed: true });
    }
  });
});
