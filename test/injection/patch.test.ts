import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { applyPatch } from 'rfc6902';
import { createPatch } from '../../src/injection/patch.ts';

// JSON.parse makes "__proto__" an own key, which rfc6902 (rightly) refuses to write; Kubernetes keys cannot be it.
const noProto = (v: unknown): boolean => !JSON.stringify(v).includes('"__proto__"');

/** Applies with rfc6902, a JSON Patch implementation other than the one whose helpers made the patch. */
function apply(before: unknown, ops: ReturnType<typeof createPatch>): unknown {
  const doc = structuredClone(before);
  const errors = applyPatch(doc, structuredClone(ops) as never).filter((e) => e !== null);
  assert.deepEqual(errors, []);
  return doc;
}

describe('createPatch', () => {
  it('escapes ~ and / in keys', () => {
    const before = { metadata: { annotations: { 'a~b/c': '1' } } };
    const after = { metadata: { annotations: { 'a~b/c': '2', 'config-reloader.io/status': 'injected' } } };
    const ops = createPatch(before, after);
    assert.deepEqual(ops, [
      { op: 'replace', path: '/metadata/annotations/a~0b~1c', value: '2' },
      { op: 'add', path: '/metadata/annotations/config-reloader.io~1status', value: 'injected' },
    ]);
    assert.deepEqual(apply(before, ops), after);
  });

  it('adds a missing array or object whole', () => {
    const before = { spec: { containers: [{ name: 'app' }] } };
    const after = {
      spec: { containers: [{ name: 'app' }], initContainers: [{ name: 'x' }] },
      metadata: { annotations: { a: 'b' } },
    };
    assert.deepEqual(createPatch(before, after), [
      { op: 'add', path: '/spec/initContainers', value: [{ name: 'x' }] },
      { op: 'add', path: '/metadata', value: { annotations: { a: 'b' } } },
    ]);
  });

  it('inserts at the start of an array without rewriting the elements after it', () => {
    const before = { list: [{ name: 'a' }, { name: 'b' }] };
    const after = { list: [{ name: 'x' }, { name: 'y' }, { name: 'a' }, { name: 'b' }] };
    const ops = createPatch(before, after);
    assert.deepEqual(ops, [
      { op: 'add', path: '/list/0', value: { name: 'x' } },
      { op: 'add', path: '/list/1', value: { name: 'y' } },
    ]);
    assert.deepEqual(apply(before, ops), after);
  });

  it('changes elements in place and appends at the end', () => {
    const before = {
      volumes: [
        { name: 'a', secret: { secretName: 's' } },
        { name: 'b', emptyDir: {} },
      ],
    };
    const after = {
      volumes: [
        { name: 'a', emptyDir: { medium: 'Memory' } },
        { name: 'b', emptyDir: {} },
        { name: 'c', emptyDir: {} },
      ],
    };
    const ops = createPatch(before, after);
    assert.deepEqual(ops, [
      { op: 'remove', path: '/volumes/0/secret' },
      { op: 'add', path: '/volumes/0/emptyDir', value: { medium: 'Memory' } },
      { op: 'add', path: '/volumes/2', value: { name: 'c', emptyDir: {} } },
    ]);
    assert.deepEqual(apply(before, ops), after);
  });

  it('touches nothing that did not change', () => {
    const before = {
      spec: { unknownField: { x: [1, { y: null }] }, containers: [{ name: 'a', 'x-vendor/field': true }] },
    };
    const after = structuredClone(before) as typeof before & { spec: { extra?: number } };
    after.spec.extra = 1;
    assert.deepEqual(createPatch(before, after), [{ op: 'add', path: '/spec/extra', value: 1 }]);
    assert.deepEqual(createPatch(before, structuredClone(before)), []);
  });

  it('replaces a value whose type changed, and a shorter array whole', () => {
    const before = { a: [1, 2, 3], b: { c: 1 }, d: 'x' };
    const after = { a: [3], b: [1], d: { e: 1 } };
    const ops = createPatch(before, after);
    assert.deepEqual(apply(before, ops), after);
  });

  it('for any two JSON objects, the patch turns the first into the second', () => {
    const obj = fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 3 })).filter(noProto);
    fc.assert(
      fc.property(obj, obj, (a, b) => {
        // -0 does not survive JSON, so the comparison is on JSON texts.
        const norm = (v: unknown): unknown => JSON.parse(JSON.stringify(v));
        const [before, after] = [norm(a), norm(b)];
        assert.deepEqual(apply(before, createPatch(before, after)), after);
      }),
      { numRuns: 300 },
    );
  });

  it('for an object and an edit of it (insertions, appends, changes), the patch turns one into the other', () => {
    const edit = fc
      .record({
        base: fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 5 }),
        front: fc.array(fc.integer(), { maxLength: 3 }),
        back: fc.array(fc.string(), { maxLength: 3 }),
      })
      .filter(noProto);
    fc.assert(
      fc.property(edit, ({ base, front, back }) => {
        const before = JSON.parse(JSON.stringify({ items: base }));
        const after = JSON.parse(JSON.stringify({ items: [...front, ...base, ...back] }));
        assert.deepEqual(apply(before, createPatch(before, after)), after);
      }),
      { numRuns: 300 },
    );
  });
});
