import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import jsonPatch, { type Operation } from 'fast-json-patch';
import { DEFAULT_INJECTOR_CONFIG } from '../../src/injection/config.ts';
import { injectPod } from '../../src/injection/inject.ts';
import { createPatch } from '../../src/injection/patch.ts';
import { loadPod, podFixtureNames } from '../support/fixtures.ts';
import { deepFreeze } from './pod-builder.ts';

/**
 * The patch as the API server's audit log shows it: the sidecar goes in with one `add` at the front of the init
 * containers, and the user's containers get only what changed in them, at their new index, even when an init
 * container of theirs gets a mount too. Applied with fast-json-patch, it gives the mutated pod exactly.
 */

type Obj = Record<string, unknown>;

function apply(before: unknown, ops: Operation[]): unknown {
  return jsonPatch.applyPatch(structuredClone(before), structuredClone(ops), true, false).newDocument;
}

function injected(pod: Obj, sidecarMode: 'native' | 'legacy' = 'native'): { patch: Operation[]; pod: Obj } {
  const outcome = injectPod(
    deepFreeze(pod),
    { namespace: 'shop', optIn: 'annotation' },
    { ...DEFAULT_INJECTOR_CONFIG, sidecarMode },
  );
  assert.equal(outcome.action, 'patch', JSON.stringify(outcome));
  if (outcome.action !== 'patch') throw new Error('not patched');
  assert.deepEqual(apply(pod, outcome.patch), outcome.pod, 'the patch gives the mutated pod');
  return { patch: outcome.patch, pod: outcome.pod };
}

/** A pod whose init container `setup` reads the synced objects (explicit mode, named in config-reloader.io/containers). */
function explicitWithInitContainer(): Obj {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: 'shop',
      annotations: {
        'config-reloader.io/inject': 'true',
        'config-reloader.io/secrets': 'app-config',
        'config-reloader.io/containers': 'setup,app',
      },
    },
    spec: {
      initContainers: [
        {
          name: 'setup',
          image: 'busybox:1.37',
          command: ['sh', '-c', 'cp /etc/config-reloader/app-config/* /work'],
        },
        {
          name: 'migrate',
          image: 'example.com/migrate:2',
          volumeMounts: [{ name: 'work', mountPath: '/work' }],
        },
      ],
      containers: [
        {
          name: 'app',
          image: 'example.com/shop:1.4.2',
          volumeMounts: [{ name: 'work', mountPath: '/work' }],
        },
      ],
      volumes: [{ name: 'work', emptyDir: {} }],
    },
  };
}

const SHARED_MOUNT = { name: 'config-reloader', mountPath: '/etc/config-reloader', readOnly: true };

describe('the patch inserts the sidecar and leaves the user containers as they were', () => {
  it('explicit mode with an init container that gets the mount: one add for the sidecar, one for the mount', () => {
    const pod = explicitWithInitContainer();
    const { patch, pod: mutated } = injected(pod);
    const spec = mutated.spec as { initContainers: Obj[]; volumes: Obj[] };
    assert.deepEqual(patch, [
      { op: 'add', path: '/metadata/annotations/config-reloader.io~1status', value: 'injected' },
      { op: 'add', path: '/spec/initContainers/0', value: spec.initContainers[0] },
      { op: 'add', path: '/spec/initContainers/1/volumeMounts', value: [SHARED_MOUNT] },
      { op: 'add', path: '/spec/containers/0/volumeMounts/1', value: SHARED_MOUNT },
      { op: 'add', path: '/spec/volumes/1', value: spec.volumes[1] },
      { op: 'add', path: '/spec/volumes/2', value: spec.volumes[2] },
    ]);
    assert.equal(spec.initContainers[0]!.name, 'config-reloader');
    assert.deepEqual(
      spec.volumes.slice(1).map((v) => v.name),
      ['config-reloader', 'config-reloader-api-access'],
    );
    // The user's init containers, shifted by one, are theirs plus the mount.
    const before = (pod.spec as { initContainers: Obj[] }).initContainers;
    assert.deepEqual(spec.initContainers.slice(1), [
      { ...before[0], volumeMounts: [SHARED_MOUNT] },
      before[1],
    ]);
  });

  it('explicit mode naming the second init container: the mount goes to index 2', () => {
    const pod = explicitWithInitContainer();
    ((pod.metadata as Obj).annotations as Obj)['config-reloader.io/containers'] = 'migrate';
    const { patch } = injected(pod);
    const paths = patch.map((op) => `${op.op} ${op.path}`);
    assert.deepEqual(paths, [
      'add /metadata/annotations/config-reloader.io~1status',
      'add /spec/initContainers/0',
      'add /spec/initContainers/2/volumeMounts/1',
      'add /spec/volumes/1',
      'add /spec/volumes/2',
    ]);
  });

  it('transparent mode with an init container mounting a converted volume: the init container is not touched', () => {
    const pod: Obj = {
      metadata: { name: 'shop', annotations: { 'config-reloader.io/inject': 'true' } },
      spec: {
        initContainers: [
          { name: 'setup', image: 'busybox:1.37', volumeMounts: [{ name: 'config', mountPath: '/cfg' }] },
        ],
        containers: [
          {
            name: 'app',
            image: 'example.com/shop:1.4.2',
            volumeMounts: [{ name: 'config', mountPath: '/cfg' }],
          },
        ],
        volumes: [{ name: 'config', secret: { secretName: 'app-config' } }],
      },
    };
    const { patch, pod: mutated } = injected(pod);
    const spec = mutated.spec as { initContainers: Obj[]; volumes: Obj[] };
    assert.deepEqual(patch, [
      { op: 'add', path: '/metadata/annotations/config-reloader.io~1status', value: 'injected' },
      { op: 'add', path: '/spec/initContainers/0', value: spec.initContainers[0] },
      { op: 'remove', path: '/spec/volumes/0/secret' },
      { op: 'add', path: '/spec/volumes/0/emptyDir', value: { medium: 'Memory' } },
      { op: 'add', path: '/spec/volumes/1', value: spec.volumes[1] },
    ]);
  });

  it('legacy mode: the init container inserted at the front, the sidecar appended, the mounts added', () => {
    const { patch, pod: mutated } = injected(explicitWithInitContainer(), 'legacy');
    const spec = mutated.spec as { initContainers: Obj[]; containers: Obj[] };
    assert.deepEqual(
      patch.map((op) => `${op.op} ${op.path}`),
      [
        'add /metadata/annotations/config-reloader.io~1status',
        'add /spec/initContainers/0',
        'add /spec/initContainers/1/volumeMounts',
        'add /spec/containers/0/volumeMounts/1',
        'add /spec/containers/1',
        'add /spec/volumes/1',
        'add /spec/volumes/2',
      ],
    );
    assert.equal(spec.initContainers[0]!.name, 'config-reloader-init');
    assert.equal(spec.containers[1]!.name, 'config-reloader');
  });
});

describe('every real-world pod fixture, in explicit mode with every container named', () => {
  const names = podFixtureNames();
  const counts = { patched: 0, withInitContainers: 0 };
  it('finds the fixtures', () => assert.ok(names.length >= 70, `only ${names.length} pod fixtures`));

  for (const name of names) {
    it(name, () => {
      const pod = loadPod(name);
      const spec = pod.spec as { initContainers?: Obj[]; containers?: Obj[] };
      const containers = [...(spec.initContainers ?? []), ...(spec.containers ?? [])].map((c) =>
        String(c.name),
      );
      const metadata = (pod.metadata ??= {}) as Obj;
      metadata.annotations = {
        ...(metadata.annotations as Obj | undefined),
        'config-reloader.io/inject': 'true',
        'config-reloader.io/configmaps': 'synced-config',
        'config-reloader.io/containers': containers.join(','),
      };
      const outcome = injectPod(
        deepFreeze(pod),
        { namespace: 'fixtures', optIn: 'annotation' },
        DEFAULT_INJECTOR_CONFIG,
      );
      if (outcome.action !== 'patch') return; // denied for its own reasons (another test covers which)
      counts.patched++;
      if (spec.initContainers?.length) counts.withInitContainers++;
      assert.deepEqual(apply(pod, outcome.patch), outcome.pod, 'the patch gives the mutated pod');
      const before = spec.initContainers ?? [];
      const initOps = outcome.patch.filter((op) => op.path.startsWith('/spec/initContainers'));
      // The sidecar: one add, whole.
      assert.deepEqual(
        initOps[0],
        before.length === 0
          ? { op: 'add', path: '/spec/initContainers', value: (outcome.pod.spec as Obj).initContainers }
          : {
              op: 'add',
              path: '/spec/initContainers/0',
              value: (outcome.pod.spec as { initContainers: Obj[] }).initContainers[0],
            },
      );
      // Each user init container gets at most its mount, under its own new index; nothing is replaced or removed.
      for (const op of initOps.slice(1)) {
        assert.equal(op.op, 'add', `${op.op} ${op.path}`);
        assert.match(op.path, /^\/spec\/initContainers\/\d+\/volumeMounts(\/\d+)?$/);
        const index = Number(op.path.split('/')[3]);
        assert.ok(index >= 1 && index <= before.length, op.path);
      }
      assert.ok(initOps.length <= before.length + 1, `${initOps.length} operations on the init containers`);
      assert.ok(
        !outcome.patch.some(
          (op) => op.op === 'replace' || (op.op === 'remove' && !/\/(secret|configMap)$/.test(op.path)),
        ),
        'no replace, and no remove other than a converted volume source',
      );
    });
  }

  it('patched most of them, init containers included', () => {
    assert.ok(counts.patched >= 70, `${counts.patched} patched`);
    assert.ok(counts.withInitContainers >= 10, `${counts.withInitContainers} with init containers`);
  });
});

describe('createPatch on arrays of named elements', () => {
  it('inserts at the front and changes the element after it, without rewriting it', () => {
    const before = { list: [{ name: 'a', x: 1 }, { name: 'b' }] };
    const after = { list: [{ name: 'new', y: [1, 2] }, { name: 'a', x: 2, z: true }, { name: 'b' }] };
    const ops = createPatch(before, after);
    assert.deepEqual(ops, [
      { op: 'add', path: '/list/0', value: { name: 'new', y: [1, 2] } },
      { op: 'replace', path: '/list/1/x', value: 2 },
      { op: 'add', path: '/list/1/z', value: true },
    ]);
    assert.deepEqual(apply(before, ops), after);
  });

  it('falls back to indexes when names repeat or are missing, and stays correct', () => {
    for (const [before, after] of [
      [
        { l: [{ name: 'a' }, { name: 'a', v: 1 }] },
        { l: [{ name: 'n' }, { name: 'a', v: 2 }, { name: 'a', v: 1 }] },
      ],
      [{ l: [{ x: 1 }, { name: 'a' }] }, { l: [{ name: 'n' }, { x: 2 }, { name: 'a' }] }],
      [{ l: [{ name: 'a' }, { name: 'b' }] }, { l: [{ name: 'b' }, { name: 'a' }, { name: 'c' }] }],
    ] as const) {
      assert.deepEqual(apply(before, createPatch(before, after)), after);
    }
  });

  it('for named elements kept in order, changed, with new ones inserted anywhere: adds and in-place changes only', () => {
    const element = fc.record({
      name: fc.string({ minLength: 1, maxLength: 4 }),
      v: fc.jsonValue({ maxDepth: 2 }),
    });
    const edit = fc
      .record({
        base: fc.uniqueArray(element, { selector: (e) => e.name, maxLength: 6 }),
        inserts: fc.array(fc.tuple(fc.nat(), element), { maxLength: 4 }),
        changes: fc.array(fc.tuple(fc.nat(), fc.jsonValue({ maxDepth: 2 })), { maxLength: 3 }),
      })
      .filter(({ base, inserts }) => {
        const names = [...base.map((e) => e.name), ...inserts.map(([, e]) => e.name)];
        return (
          new Set(names).size === names.length && !JSON.stringify([base, inserts]).includes('"__proto__"')
        );
      });
    fc.assert(
      fc.property(edit, ({ base, inserts, changes }) => {
        const before = JSON.parse(JSON.stringify({ items: base })) as { items: Obj[] };
        const items = structuredClone(before.items);
        for (const [at, value] of changes) if (items.length > 0) items[at % items.length]!.v = value;
        for (const [at, e] of inserts) items.splice(at % (items.length + 1), 0, e);
        const after = JSON.parse(JSON.stringify({ items })) as { items: Obj[] };
        const ops = createPatch(before, after);
        assert.deepEqual(apply(before, ops), after);
        if (inserts.length > 0) {
          // Every new element is one add; a kept element is never replaced whole.
          const whole = ops.filter((op) => /^\/items\/\d+$/.test(op.path));
          assert.equal(whole.length, inserts.length);
          assert.ok(whole.every((op) => op.op === 'add'));
        }
      }),
      { numRuns: 500 },
    );
  });
});
