import type { Operation } from 'fast-json-patch';
import { buildPod } from './build.ts';
import type { InjectorConfig } from './config.ts';
import { decide } from './decide.ts';
import { createPatch } from './patch.ts';

/** `annotation` (/mutate): the pod must say config-reloader.io/inject: "true". `namespace` (/mutate/namespace): every pod unless it says "false". */
export type OptIn = 'annotation' | 'namespace';

export type InjectionOutcome =
  /** `error` is set only with reason INTERNAL_ERROR: the cause, for the webhook's log and metrics. */
  | { action: 'skip'; reason: string; warnings: string[]; error?: unknown }
  /** `message` lists every problem in `problems` (each `annotation: problem; fix`), or is the one problem. */
  | { action: 'deny'; message: string; problems: string[]; warnings: string[] }
  | {
      action: 'patch';
      patch: Operation[];
      pod: Record<string, unknown>;
      warnings: string[];
      sources: number;
    };

export interface InjectionContext {
  /** The request's namespace (a controller-made pod has none of its own). The sidecar reads it from POD_NAMESPACE, so nothing built here depends on it. */
  namespace?: string;
  optIn: OptIn;
}

/** The skip reason when injection itself failed; the webhook counts it as an error, not as a skip. */
export const INTERNAL_ERROR = 'internal error';

/**
 * Whether the pod gets the config-reloader sidecar, and the patch that adds it: decide (decide.ts), build the
 * injected pod (build.ts), diff it against the pod as received (patch.ts). Pure: reads nothing but its arguments,
 * and never throws, whatever JSON it is given (an internal error becomes a skip with a warning).
 */
export function injectPod(pod: unknown, ctx: InjectionContext, config: InjectorConfig): InjectionOutcome {
  try {
    const decision = decide(pod, ctx, config);
    if (decision.action !== 'build') return decision;
    const { plan } = decision;
    const mutated = buildPod(decision.pod, plan);
    return {
      action: 'patch',
      patch: createPatch(decision.pod, mutated),
      pod: mutated,
      warnings: plan.warnings,
      sources: plan.sourceCount,
    };
  } catch (error) {
    // The cause stays out of the warning, which goes back to whoever created the pod.
    return {
      action: 'skip',
      reason: INTERNAL_ERROR,
      warnings: [
        'config-reloader injection failed with an internal error; the pod was admitted without the sidecar',
      ],
      error,
    };
  }
}
