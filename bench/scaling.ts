/**
 * Section 2, injection cost as the pod grows: the time of one injectPod call (decide, build, JSON patch) for a
 * pod of n containers and n volumes, n from 1 to 200, in this process. Each size is timed in batches; a
 * batch's time per call is one sample and the median of the samples is the figure, so a batch that another
 * process interrupted does not move it.
 */
import assert from 'node:assert/strict';
import { DEFAULT_INJECTOR_CONFIG } from '../src/injection/config.ts';
import { injectPod } from '../src/injection/inject.ts';
import type { BenchContext, SectionResult } from './lib/context.ts';
import { makePod } from './lib/pods.ts';
import { figure } from './lib/report.ts';
import { leastSquares, median } from './lib/stats.ts';

const SIZES = [1, 2, 5, 10, 20, 50, 100, 150, 200];
const CTX = { namespace: 'shop', optIn: 'annotation' } as const;

/** Microseconds per call: the median over `batches` batches of about `batchMs` each. */
function timeInjection(
  pod: Record<string, unknown>,
  batches: number,
  batchMs: number,
): { us: number; samples: number[] } {
  let calls = 1;
  // Calls per batch so that a batch lasts about batchMs.
  for (;;) {
    const t0 = performance.now();
    for (let i = 0; i < calls; i++) injectPod(pod, CTX, DEFAULT_INJECTOR_CONFIG);
    const took = performance.now() - t0;
    if (took >= batchMs / 4) {
      calls = Math.max(1, Math.round((calls * batchMs) / took));
      break;
    }
    calls *= 4;
  }
  const samples: number[] = [];
  for (let b = 0; b < batches; b++) {
    const t0 = performance.now();
    for (let i = 0; i < calls; i++) injectPod(pod, CTX, DEFAULT_INJECTOR_CONFIG);
    samples.push(((performance.now() - t0) * 1000) / calls);
  }
  return { us: median(samples), samples };
}

export async function runScaling(ctx: BenchContext): Promise<SectionResult> {
  const batches = ctx.quick ? 5 : 15;
  const batchMs = ctx.quick ? 40 : 100;
  const pods = new Map(SIZES.map((n) => [n, makePod(n, n)]));
  for (const [n, pod] of pods) {
    const out = injectPod(pod, CTX, DEFAULT_INJECTOR_CONFIG);
    assert.equal(out.action, 'patch', `a pod of ${n} containers and volumes must be injected`);
  }
  // Every shape through the JIT before any timing, so the first size timed is not the one that pays for it.
  for (let round = 0; round < 3; round++) for (const pod of pods.values()) timeInjection(pod, 1, 10);

  const points: Array<{ n: number; us: number; samples: number[] }> = [];
  for (const [n, pod] of pods) {
    const t = timeInjection(pod, batches, batchMs);
    points.push({ n, ...t });
    ctx.log(`scaling: ${n} containers + ${n} volumes: ${t.us.toFixed(1)} µs per injection`);
  }
  const fit = leastSquares(points.map((p) => ({ x: p.n, y: p.us })));
  const at = (n: number): number => (points.find((p) => p.n === n) as { us: number }).us;
  const perUnit200vs20 = at(200) / 200 / (at(20) / 20);
  const exponent = Math.log(at(200) / at(20)) / Math.log(10);
  const section = 'scaling';
  return {
    figures: [
      figure({
        section,
        id: 'scaling.slope',
        label: 'injection: least-squares slope',
        value: fit.slope,
        unit: 'µs per container+volume',
        note: `intercept ${fit.intercept.toFixed(1)} µs, r² ${fit.r2.toFixed(3)}; n=1: ${at(1).toFixed(1)} µs, n=20: ${at(20).toFixed(1)} µs, n=200: ${at(200).toFixed(0)} µs`,
      }),
      figure({
        section,
        id: 'scaling.per-unit-200-vs-20',
        label: 'injection: cost per unit at n=200 / at n=20',
        value: perUnit200vs20,
        unit: '',
        goal: { op: '<=', value: 1.5 },
        note: `growth exponent between n=20 and n=200: ${exponent.toFixed(2)} (1 = linear, 2 = quadratic)`,
      }),
    ],
    details: { batches, batchMs, points, fit, exponent },
  };
}
