import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { applyPatch } from 'rfc6902';
import { DEFAULT_INJECTOR_CONFIG } from '../../src/injection/config.ts';
import type { InjectorConfig } from '../../src/injection/config.ts';
import { injectPod, INTERNAL_ERROR } from '../../src/injection/inject.ts';
import {
  containers,
  deepFreeze,
  initContainers,
  inject,
  injected,
  makePod,
  sidecar,
  type Obj,
} from './pod-builder.ts';

describe('injectPod: who gets the sidecar', () => {
  const cases: {
    name: string;
    annotations: Record<string, string>;
    optIn: 'annotation' | 'namespace';
    action: string;
  }[] = [
    { name: 'opted in by annotation', annotations: {}, optIn: 'annotation', action: 'patch' },
    {
      name: 'opt-in value in other case',
      annotations: { 'config-reloader.io/inject': 'True' },
      optIn: 'annotation',
      action: 'patch',
    },
    {
      name: 'no annotation on /mutate',
      annotations: { 'config-reloader.io/inject': '' },
      optIn: 'annotation',
      action: 'skip',
    },
    {
      name: 'opted out on /mutate',
      annotations: { 'config-reloader.io/inject': 'false' },
      optIn: 'annotation',
      action: 'skip',
    },
    {
      name: 'no annotation on /mutate/namespace',
      annotations: { 'config-reloader.io/inject': '' },
      optIn: 'namespace',
      action: 'patch',
    },
    {
      name: 'opted out on /mutate/namespace',
      annotations: { 'config-reloader.io/inject': 'false' },
      optIn: 'namespace',
      action: 'skip',
    },
    {
      name: 'already injected',
      annotations: { 'config-reloader.io/status': 'injected' },
      optIn: 'annotation',
      action: 'skip',
    },
    {
      name: 'already injected, namespace',
      annotations: { 'config-reloader.io/status': 'injected' },
      optIn: 'namespace',
      action: 'skip',
    },
  ];
  for (const c of cases) {
    it(`${c.name} → ${c.action}`, () => {
      const pod = makePod({ annotations: c.annotations });
      const outcome = inject(pod, {}, c.optIn);
      assert.equal(outcome.action, c.action, JSON.stringify(outcome));
    });
  }

  it('a pod without any metadata is injected on /mutate/namespace and gets annotations added whole', () => {
    const pod = makePod();
    delete pod.metadata;
    const outcome = inject(pod, {}, 'namespace');
    assert.equal(outcome.action, 'patch');
    if (outcome.action !== 'patch') return;
    assert.deepEqual(
      outcome.patch.find((op) => op.path === '/metadata'),
      { op: 'add', path: '/metadata', value: { annotations: { 'config-reloader.io/status': 'injected' } } },
    );
  });

  it('denies an inject value that is neither true nor false, naming the annotation', () => {
    const outcome = inject(makePod({ annotations: { 'config-reloader.io/inject': 'yes' } }));
    assert.equal(outcome.action, 'deny');
    assert.match(
      outcome.action === 'deny' ? outcome.message : '',
      /config-reloader\.io\/inject: "yes" is neither "true" nor "false"/,
    );
  });

  it('skips a pod with nothing to sync, with a warning that says what to add', () => {
    const pod = makePod({ volumes: [{ name: 'data', emptyDir: {} }], mounts: [] });
    const outcome = inject(pod);
    assert.equal(outcome.action, 'skip');
    assert.match(outcome.warnings.join('\n'), /nothing to sync.*config-reloader\.io\/secrets/);
  });

  it('says nothing about a pod with nothing to sync that namespace-wide injection reached', () => {
    const pod = makePod({
      annotations: { 'config-reloader.io/inject': '' },
      volumes: [{ name: 'data', emptyDir: {} }],
      mounts: [],
    });
    const outcome = inject(pod, {}, 'namespace');
    assert.equal(outcome.action, 'skip');
    assert.deepEqual(outcome.warnings, []);
  });

  it('marks the pod and a second pass patches nothing', () => {
    const { pod } = injected(makePod());
    assert.equal(((pod.metadata as Obj).annotations as Obj)['config-reloader.io/status'], 'injected');
    const again = inject(pod);
    assert.equal(again.action, 'skip');
    assert.match(again.action === 'skip' ? again.reason : '', /already injected/);
  });

  it('injects pods that have only generateName, and does not need the namespace in the pod', () => {
    const pod = makePod();
    assert.equal((pod.metadata as Obj).name, undefined);
    const result = injected(pod);
    assert.equal(sidecar(result.pod).name, 'config-reloader');
  });

  it('puts the native sidecar first and keeps existing init containers, sidecars and app containers in order', () => {
    const pod = makePod({
      spec: {
        initContainers: [
          {
            name: 'migrate',
            image: 'example/migrate:1',
            volumeMounts: [{ name: 'config', mountPath: '/cfg' }],
          },
          { name: 'proxy', image: 'example/proxy:1', restartPolicy: 'Always' },
        ],
        containers: [
          { name: 'app', image: 'example/app:1', volumeMounts: [{ name: 'config', mountPath: '/etc/app' }] },
          {
            name: 'worker',
            image: 'example/worker:1',
            volumeMounts: [{ name: 'config', mountPath: '/etc/worker', readOnly: true }],
          },
        ],
      },
    });
    const outcome = inject(pod);
    const result = injected(pod).pod;
    assert.deepEqual(
      initContainers(result).map((c) => c.name),
      ['config-reloader', 'migrate', 'proxy'],
    );
    assert.deepEqual(containers(result), (pod.spec as Obj).containers, 'app containers untouched');
    assert.ok(outcome.action === 'patch');
    const initOps = outcome.patch.filter((op) => op.path.startsWith('/spec/initContainers'));
    assert.deepEqual(
      initOps.map((op) => `${op.op} ${op.path}`),
      ['add /spec/initContainers/0'],
    );
  });

  it('leaves fields it does not model untouched, in the pod and in its containers', () => {
    const pod = makePod({ spec: { futureField: { deep: [1, 2] }, resourceClaims: [{ name: 'gpu' }] } });
    (containers(pod)[0] as Obj).futureContainerField = 'kept';
    (pod as Obj).status = { phase: 'Pending' };
    const outcome = inject(pod);
    assert.ok(outcome.action === 'patch');
    for (const op of outcome.patch) assert.doesNotMatch(op.path, /future|resourceClaims|^\/status/);
    const out = outcome.pod;
    assert.deepEqual((out.spec as Obj).futureField, { deep: [1, 2] });
    assert.equal((containers(out)[0] as Obj).futureContainerField, 'kept');
  });

  it('does not modify its input', () => {
    const pod = makePod();
    const copy = structuredClone(pod);
    inject(pod);
    assert.deepEqual(pod, copy);
  });
});

describe('injectPod never throws', () => {
  it('turns an internal error into a skip with a warning, keeping the cause for the log only', () => {
    const broken = {
      ...DEFAULT_INJECTOR_CONFIG,
      get reloaderImage(): string {
        throw new Error('boom');
      },
    } as InjectorConfig;
    const outcome = injectPod(makePod(), { optIn: 'annotation' }, broken);
    assert.equal(outcome.action, 'skip');
    if (outcome.action !== 'skip') return;
    assert.equal(outcome.reason, INTERNAL_ERROR);
    assert.equal((outcome.error as Error).message, 'boom');
    assert.match(outcome.warnings.join('\n'), /admitted without the sidecar/);
    assert.doesNotMatch(outcome.warnings.join('\n'), /boom/);
  });

  const odd: unknown[] = [
    null,
    undefined,
    42,
    'pod',
    [],
    {},
    { metadata: null, spec: null },
    { metadata: { annotations: { 'config-reloader.io/inject': 'true' } } },
    { metadata: { annotations: { 'config-reloader.io/inject': 'true' } }, spec: { containers: 'app' } },
    {
      metadata: { annotations: { 'config-reloader.io/inject': 'true' } },
      spec: { containers: [null, 1, { name: 'a' }], volumes: 'x' },
    },
    {
      metadata: { annotations: { 'config-reloader.io/inject': 'true' } },
      spec: {
        containers: [{ name: 'a' }],
        volumes: [
          null,
          { secret: 1 },
          { name: 'v', configMap: null },
          { name: 'w', secret: { secretName: 7 } },
        ],
      },
    },
    {
      metadata: { annotations: { 'config-reloader.io/inject': 'true', 'config-reloader.io/port': 7 } },
      spec: {
        containers: [{ name: 'a', ports: 'x', volumeMounts: [null] }],
        volumes: [{ name: 'c', configMap: { name: 'c', items: 'all' } }],
      },
    },
    { metadata: { annotations: ['config-reloader.io/inject'] }, spec: { containers: [{}] } },
  ];
  for (const [i, input] of odd.entries()) {
    it(`odd input ${i}: ${JSON.stringify(input)?.slice(0, 80)}`, () => {
      for (const optIn of ['annotation', 'namespace'] as const) {
        const outcome = injectPod(input, { optIn }, DEFAULT_INJECTOR_CONFIG);
        assert.ok(['skip', 'deny', 'patch'].includes(outcome.action));
        assert.ok(Array.isArray(outcome.warnings));
      }
    });
  }

  it('for any JSON value as the pod, spec, volumes or annotations', () => {
    const json = fc.jsonValue({ maxDepth: 4 });
    const podLike = fc.record(
      {
        metadata: fc.oneof(
          json,
          fc.record({
            annotations: fc.oneof(
              json,
              fc.dictionary(
                fc.constantFrom(
                  'config-reloader.io/inject',
                  'config-reloader.io/volumes',
                  'config-reloader.io/port',
                  'config-reloader.io/secrets',
                  'x',
                ),
                fc.oneof(fc.constant('true'), fc.string()),
              ),
            ),
          }),
        ),
        spec: fc.oneof(
          json,
          fc.record(
            {
              containers: fc.oneof(
                json,
                fc.array(
                  fc.record(
                    { name: fc.oneof(fc.string(), json), volumeMounts: json, ports: json },
                    { requiredKeys: [] },
                  ),
                ),
              ),
              volumes: fc.oneof(
                json,
                fc.array(
                  fc.record(
                    { name: fc.oneof(fc.constantFrom('a', 'b'), json), secret: json, configMap: json },
                    { requiredKeys: [] },
                  ),
                ),
              ),
              initContainers: json,
            },
            { requiredKeys: [] },
          ),
        ),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(
        fc.oneof(json, podLike),
        fc.constantFrom('annotation' as const, 'namespace' as const),
        (input, optIn) => {
          // Frozen: a write to the input would throw, and come back as an internal error.
          const outcome = injectPod(deepFreeze(input), { optIn }, DEFAULT_INJECTOR_CONFIG);
          assert.notEqual(outcome.action === 'skip' && outcome.reason, INTERNAL_ERROR);
          if (outcome.action === 'patch') {
            const copy = structuredClone(input);
            applyPatch(copy, structuredClone(outcome.patch) as never);
            // As JSON, which is all the API server sees: fast-check makes some objects with a null prototype,
            // which the pod shares where it is unchanged while structuredClone gives them Object.prototype.
            const asJson = (v: unknown): unknown => JSON.parse(JSON.stringify(v));
            assert.deepEqual(asJson(copy), asJson(outcome.pod));
          }
        },
      ),
      { numRuns: 400 },
    );
  });
});
