import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { applyPatch } from 'rfc6902';
import { DEFAULT_INJECTOR_CONFIG } from '../../src/injection/config.ts';
import { injectPod, type OptIn } from '../../src/injection/inject.ts';
import { loadPod, podFixtureNames } from '../support/fixtures.ts';
import { deepFreeze } from './pod-builder.ts';
import { validatePod } from '../support/pod-validation.ts';

type Obj = Record<string, unknown>;

function optedIn(name: string): Obj {
  const pod = loadPod(name);
  const metadata = (pod.metadata ??= {}) as Obj;
  metadata.annotations = {
    ...(metadata.annotations as Obj | undefined),
    'config-reloader.io/inject': 'true',
  };
  return pod;
}

/** What the issue asks of the fixtures: pods with plain secret/configMap volumes are injected, the others not. */
function hasSyncableVolume(pod: Obj): boolean {
  const volumes = ((pod.spec as Obj).volumes ?? []) as Obj[];
  return volumes.some((v) => v.secret !== undefined || v.configMap !== undefined);
}

/** A Job's or CronJob's pod: it has to finish. */
function runsToCompletion(pod: Obj): boolean {
  const restartPolicy = (pod.spec as Obj).restartPolicy;
  return restartPolicy === 'Never' || restartPolicy === 'OnFailure';
}

const names = podFixtureNames();

describe('every shared pod fixture, opted in', () => {
  it('finds the fixtures', () => assert.ok(names.length >= 70, `only ${names.length} pod fixtures`));

  for (const optIn of ['annotation', 'namespace'] as OptIn[]) {
    for (const sidecarMode of ['native', 'legacy'] as const) {
      describe(`optIn ${optIn}, ${sidecarMode} sidecar`, () => {
        for (const name of names) {
          it(name, () => {
            // Frozen: injection must leave the pod it is given untouched (a write would be an internal error).
            const pod = deepFreeze(optIn === 'annotation' ? optedIn(name) : loadPod(name));
            const config = { ...DEFAULT_INJECTOR_CONFIG, sidecarMode };
            const outcome = injectPod(pod, { namespace: 'fixtures', optIn }, config);
            if (!hasSyncableVolume(pod)) {
              assert.equal(outcome.action, 'skip', JSON.stringify(outcome));
              return;
            }
            if (sidecarMode === 'legacy' && runsToCompletion(pod)) {
              // Legacy mode's regular container would never exit, so the pod would never complete.
              assert.equal(outcome.action, 'deny', JSON.stringify(outcome));
              if (outcome.action === 'deny')
                assert.match(outcome.message, /--sidecar-mode=legacy cannot be used for this pod/);
              return;
            }
            assert.equal(outcome.action, 'patch', JSON.stringify(outcome));
            if (outcome.action !== 'patch') return;
            assert.ok(outcome.sources > 0);

            const patched = structuredClone(pod);
            const errors = applyPatch(patched, structuredClone(outcome.patch) as never).filter(
              (e) => e !== null,
            );
            assert.deepEqual(errors, []);
            assert.deepEqual(patched, outcome.pod, 'rfc6902 applies the patch to the same pod');
            assert.deepEqual(validatePod(patched), []);

            const again = injectPod(patched, { namespace: 'fixtures', optIn }, config);
            assert.equal(again.action, 'skip');
          });
        }
      });
    }
  }
});
