import assert from 'node:assert/strict';
import { applyPatch } from 'rfc6902';
import { DEFAULT_INJECTOR_CONFIG, type InjectorConfig } from '../../src/injection/config.ts';
import { injectPod, type InjectionOutcome, type OptIn } from '../../src/injection/inject.ts';
import { parseSourceSpec, type SourceSpec } from '../../src/shared/source-spec.ts';
import { validatePod } from '../support/pod-validation.ts';

export type Obj = Record<string, unknown>;

/** A controller-made pod (generateName, no name) with one app container; parts can be replaced. */
export function makePod(
  parts: { annotations?: Record<string, string>; spec?: Obj; volumes?: Obj[]; mounts?: Obj[] } = {},
): Obj {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      generateName: 'app-',
      labels: { app: 'demo' },
      annotations: { 'config-reloader.io/inject': 'true', ...parts.annotations },
    },
    spec: {
      containers: [
        {
          name: 'app',
          image: 'example/app:1',
          volumeMounts: parts.mounts ?? [{ name: 'config', mountPath: '/etc/app' }],
        },
      ],
      volumes: parts.volumes ?? [{ name: 'config', configMap: { name: 'app-config' } }],
      ...parts.spec,
    },
  };
}

/**
 * Freezes a value and everything in it, in place. Injection must never write to the pod it is given (the
 * patch is the difference between that pod and the result), so the tests hand it frozen pods: a write
 * throws in strict mode, which injectPod reports as an internal error instead of a patch.
 */
export function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

/** Injects a frozen copy of `pod`: the caller's pod stays writable. */
export function inject(
  pod: unknown,
  config: Partial<InjectorConfig> = {},
  optIn: OptIn = 'annotation',
): InjectionOutcome {
  return injectPod(
    deepFreeze(structuredClone(pod)),
    { namespace: 'demo', optIn },
    { ...DEFAULT_INJECTOR_CONFIG, ...config },
  );
}

/** The patched pod, after checking the patch (applied by rfc6902) gives the returned pod and that pod is valid. */
export function patched(pod: Obj, outcome: InjectionOutcome): Obj {
  assert.equal(outcome.action, 'patch', `expected a patch, got ${JSON.stringify(outcome)}`);
  if (outcome.action !== 'patch') throw new Error('unreachable');
  const result = structuredClone(pod);
  const errors = applyPatch(result, structuredClone(outcome.patch) as never).filter((e) => e !== null);
  assert.deepEqual(errors, []);
  assert.deepEqual(result, outcome.pod);
  assert.deepEqual(validatePod(result), []);
  return result;
}

export function injected(
  pod: Obj,
  config: Partial<InjectorConfig> = {},
  optIn: OptIn = 'annotation',
): { pod: Obj; warnings: string[] } {
  const outcome = inject(pod, config, optIn);
  return { pod: patched(pod, outcome), warnings: outcome.warnings };
}

export function denial(pod: unknown, config: Partial<InjectorConfig> = {}): string {
  const outcome = inject(pod, config);
  assert.equal(outcome.action, 'deny', `expected a denial, got ${JSON.stringify(outcome)}`);
  return outcome.action === 'deny' ? outcome.message : '';
}

const list = (pod: Obj, key: string): Obj[] => ((pod.spec as Obj)[key] ?? []) as Obj[];
export const containers = (pod: Obj): Obj[] => list(pod, 'containers');
export const initContainers = (pod: Obj): Obj[] => list(pod, 'initContainers');
export const volumes = (pod: Obj): Obj[] => list(pod, 'volumes');
export const volume = (pod: Obj, name: string): Obj | undefined => volumes(pod).find((v) => v.name === name);

export function sidecar(pod: Obj): Obj {
  const found =
    initContainers(pod).find((c) => c.name === 'config-reloader') ??
    containers(pod).find((c) => c.name === 'config-reloader');
  assert.ok(found, 'no config-reloader container');
  return found;
}

export const args = (container: Obj): string[] => container.args as string[];

export function sources(container: Obj): SourceSpec[] {
  return args(container)
    .filter((arg) => arg.startsWith('--source='))
    .map((arg) => parseSourceSpec(arg.slice('--source='.length)));
}

export function flag(container: Obj, name: string): string | undefined {
  return args(container)
    .find((arg) => arg.startsWith(`--${name}=`))
    ?.slice(name.length + 3);
}
