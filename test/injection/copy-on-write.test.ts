import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_INJECTOR_CONFIG } from '../../src/injection/config.ts';
import { INTERNAL_ERROR, injectPod } from '../../src/injection/inject.ts';
import { loadPod, podFixtureNames } from '../support/fixtures.ts';
import { deepFreeze } from './pod-builder.ts';

type Json = Record<string, unknown>;

function optedIn(name: string): Json {
  const pod = loadPod(name);
  const metadata = (pod.metadata ?? {}) as Json;
  metadata.annotations = {
    ...(metadata.annotations as Json | undefined),
    'config-reloader.io/inject': 'true',
  };
  pod.metadata = metadata;
  return pod;
}

/**
 * The benchmark-driven trick of build.ts, held by a test: the injected pod is built copy-on-write, so the pod as
 * received is never written to, and every subtree the patch does not touch is the received object itself (the
 * diff skips it by identity; a deep clone would make the diff's cost follow the pod's size again).
 */
void describe('injection builds the pod copy-on-write', () => {
  for (const name of podFixtureNames())
    void it(`${name}: the received pod is never written to, untouched containers are shared`, () => {
      const received = deepFreeze(optedIn(name));
      const outcome = injectPod(received, { optIn: 'annotation' }, DEFAULT_INJECTOR_CONFIG);
      // A write into the frozen pod would throw inside the core and come back as an internal error.
      assert.notEqual(outcome.action === 'skip' ? outcome.reason : '', INTERNAL_ERROR);
      if (outcome.action !== 'patch') return;
      const before = (received.spec as Json).containers as unknown[];
      const after = (outcome.pod.spec as Json).containers as unknown[];
      before.forEach((container, i) => {
        const touched = outcome.patch.some(
          (op) => op.path === '/spec/containers' || op.path.startsWith(`/spec/containers/${i}`),
        );
        if (!touched) assert.equal(after[i], container, `container ${i} is the received object`);
      });
      assert.equal((outcome.pod.metadata as Json).labels, (received.metadata as Json).labels);
    });
});
