import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CopyOnWrite } from '../../src/injection/json.ts';
import { deepFreeze } from './pod-builder.ts';

describe('CopyOnWrite', () => {
  const original = () =>
    deepFreeze(
      JSON.parse(
        '{"spec":{"volumes":[{"name":"a"},{"name":"b"}],"containers":[{"name":"app"}]},"status":{}}',
      ),
    );

  it('copies only the path to a change; the rest stays shared and the original untouched', () => {
    const before = original();
    const draft = new CopyOnWrite();
    const pod = draft.root(before);
    const volumes = draft.array(draft.object(pod, 'spec'), 'volumes');
    draft.object(volumes, 1).emptyDir = {};
    volumes.push({ name: 'c' });

    assert.deepEqual(before.spec.volumes, [{ name: 'a' }, { name: 'b' }]);
    assert.deepEqual((pod.spec as any).volumes, [{ name: 'a' }, { name: 'b', emptyDir: {} }, { name: 'c' }]);
    assert.equal((pod.spec as any).volumes[0], before.spec.volumes[0], 'an unchanged element is shared');
    assert.equal((pod.spec as any).containers, before.spec.containers, 'an unchanged array is shared');
    assert.equal(pod.status, before.status);
  });

  it('hands out the same copy on every later access', () => {
    const draft = new CopyOnWrite();
    const pod = draft.root(original());
    const spec = draft.object(pod, 'spec');
    assert.equal(draft.object(pod, 'spec'), spec);
    const volumes = draft.array(spec, 'volumes');
    volumes.push({ name: 'c' });
    assert.equal(draft.array(spec, 'volumes'), volumes);
    assert.equal(volumes.length, 3);
  });

  it('creates what is missing or of another type, as an empty object or array', () => {
    const draft = new CopyOnWrite();
    const pod = draft.root(deepFreeze({ metadata: 'not an object', spec: { volumes: null } }));
    draft.object(pod, 'metadata').annotations = {};
    draft.array(draft.object(pod, 'spec'), 'volumes').push(1);
    assert.deepEqual(pod, { metadata: { annotations: {} }, spec: { volumes: [1] } });
  });

  it('keeps an own "__proto__" key a key, never the prototype of a copy', () => {
    const draft = new CopyOnWrite();
    const pod = draft.root(
      deepFreeze(JSON.parse('{"__proto__":{"polluted":true},"metadata":{"__proto__":{"x":1}}}')),
    );
    const metadata = draft.object(pod, 'metadata');
    metadata.name = 'n';
    for (const copy of [pod, metadata]) {
      assert.equal(Object.getPrototypeOf(copy), Object.prototype);
      assert.ok(Object.hasOwn(copy, '__proto__'));
    }
    assert.equal((pod as any).polluted, undefined);
    assert.equal(JSON.stringify(metadata), '{"__proto__":{"x":1},"name":"n"}');
  });
});
