/**
 * Section 1, admission: our webhook against a bare Fastify HTTPS server answering a fixed AdmissionReview, both
 * pinned to the same single CPU, the load generator pinned to the other one. Throughput rounds interleave the
 * targets so that noise from other work on the machine falls on both; then latency at a fixed 1,000 req/s.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_INJECTOR_CONFIG } from '../src/injection/config.ts';
import { review } from '../src/webhook/admission.ts';
import { httpsRequest } from '../test/support/https.ts';
import type { LoadResult, LoadSpec } from './load.ts';
import type { BenchContext, SectionResult } from './lib/context.ts';
import { reviewOfSize, SIZES, type SizeName } from './lib/pods.ts';
import { pinning, procCpuMs, procRunQueueWaitMs } from './lib/proc.ts';
import { figure, type Figure } from './lib/report.ts';
import {
  runLoad,
  startBare,
  startWebhook,
  writeServingCerts,
  type CertFiles,
  type Target,
} from './lib/servers.ts';
import { median } from './lib/stats.ts';

const SIZE_NAMES: SizeName[] = ['small', 'typical', 'large'];
const CONNECTIONS = 16;
const RATE = 1000;

/**
 * A load's result plus, from /proc: the share of the time the server waited for its CPU (other processes on
 * the machine), and the server's CPU time per request: on a shared machine the steadier measure of its cost.
 */
type Measured = LoadResult & { serverRunQueueWait: number; serverCpuUsPerRequest: number };
const pct = (x: number): string => `${Math.round(x * 100)}%`;

export interface AdmissionFixtures {
  certs: CertFiles;
  bodyFiles: Record<SizeName, string>;
  /** Our webhook's serialized answer per size: what the bare server sends back. */
  responsesFile: string;
  responses: Record<SizeName, string>;
}

export async function admissionFixtures(ctx: BenchContext): Promise<AdmissionFixtures> {
  const certs = await writeServingCerts(ctx.tmp);
  const bodyFiles = {} as Record<SizeName, string>;
  const responses = {} as Record<SizeName, string>;
  for (const size of SIZE_NAMES) {
    const body = reviewOfSize(size);
    bodyFiles[size] = join(ctx.tmp, `review-${size}.json`);
    writeFileSync(bodyFiles[size], JSON.stringify(body));
    const answer = review(body, 'annotation', DEFAULT_INJECTOR_CONFIG);
    assert.ok(
      answer.statusCode === 200 && answer.summary.decision === 'injected',
      `the ${size} pod must be injected`,
    );
    responses[size] = JSON.stringify(answer.body);
  }
  const responsesFile = join(ctx.tmp, 'bare-responses.json');
  writeFileSync(responsesFile, JSON.stringify(responses));
  return { certs, bodyFiles, responsesFile, responses };
}

/** One request per size to each target: both answer 200 with byte-identical AdmissionReviews (a JSON patch). */
async function verify(targets: Record<'ours' | 'bare', Target>, fx: AdmissionFixtures): Promise<void> {
  for (const size of SIZE_NAMES) {
    for (const [name, t] of Object.entries(targets)) {
      const res = await httpsRequest(`${t.url}/mutate`, {
        ca: fx.certs.ca,
        method: 'POST',
        body: readFileSync(fx.bodyFiles[size]),
      });
      assert.equal(res.status, 200, `${name} ${size}: ${res.body}`);
      assert.equal(
        res.body,
        fx.responses[size],
        `${name} ${size}: the answer differs from the expected AdmissionReview`,
      );
    }
  }
}

/** A closed-loop load of `seconds` against `/mutate` with the pod of `size`. */
export function closedLoad(
  url: string,
  fx: AdmissionFixtures,
  size: SizeName,
  seconds: number,
  warmupS = 0,
): LoadSpec {
  return {
    mode: 'closed',
    url: `${url}/mutate`,
    bodyFile: fx.bodyFiles[size],
    caFile: fx.certs.caFile,
    durationS: seconds,
    connections: CONNECTIONS,
    warmupS,
  };
}

export async function runAdmission(ctx: BenchContext): Promise<SectionResult> {
  const serverCpu = pinning(0, ctx.cpus);
  const loadCpu = pinning(1, ctx.cpus);
  const fx = await admissionFixtures(ctx);
  const ours = await startWebhook(ctx, fx.certs, serverCpu);
  const bare = await startBare(ctx, fx.certs, fx.responsesFile, serverCpu);
  const targets = { ours, bare };
  /** The load, plus how long the server waited for its CPU meanwhile (other processes on the machine). */
  const measured = async (t: Target, spec: LoadSpec): Promise<Measured> => {
    const wait0 = procRunQueueWaitMs(t.child.pid);
    const cpu0 = procCpuMs(t.child.pid);
    const t0 = performance.now();
    const r = await runLoad(ctx, spec, loadCpu);
    return {
      ...r,
      serverRunQueueWait: (procRunQueueWaitMs(t.child.pid) - wait0) / (performance.now() - t0),
      serverCpuUsPerRequest: ((procCpuMs(t.child.pid) - cpu0) * 1000) / r.requests,
    };
  };
  try {
    await verify(targets, fx);
    // Every measured run starts with its own unmeasured warm-up at the same load.
    const warmS = ctx.quick ? 0.5 : 1;
    const roundS = ctx.quick ? 1 : 5;
    const rounds = ctx.quick ? 1 : 2;
    const rateS = ctx.quick ? 1 : 10;

    const closed: Record<string, Measured[]> = {};
    for (let round = 0; round < rounds; round++) {
      for (const size of SIZE_NAMES) {
        // Alternate which target goes first, so neither always follows the other's garbage.
        const order =
          (round + SIZE_NAMES.indexOf(size)) % 2 === 0
            ? (['ours', 'bare'] as const)
            : (['bare', 'ours'] as const);
        for (const name of order) {
          ctx.log(`admission: round ${round + 1}/${rounds}, ${name}, ${size} pod, ${warmS} + ${roundS} s`);
          const r = await measured(targets[name], closedLoad(targets[name].url, fx, size, roundS, warmS));
          (closed[`${name}.${size}`] ??= []).push(r);
        }
      }
    }

    const fixedRate: Record<string, Measured> = {};
    const rateSpec = (t: Target, mode: LoadSpec['mode'], connections: number): LoadSpec => ({
      mode,
      url: `${t.url}/mutate`,
      bodyFile: fx.bodyFiles.typical,
      caFile: fx.certs.caFile,
      durationS: rateS,
      connections,
      rate: RATE,
      warmupS: warmS,
    });
    ctx.log(`admission: ${RATE} req/s paced (open loop), typical pod, ${rateS} s each for ours and bare`);
    fixedRate['ours.paced'] = await measured(ours, rateSpec(ours, 'paced', 64));
    fixedRate['bare.paced'] = await measured(bare, rateSpec(bare, 'paced', 64));
    ctx.log(`admission: ${RATE} req/s with autocannon overallRate, typical pod, ${rateS} s`);
    fixedRate['ours.autocannon'] = await measured(ours, rateSpec(ours, 'autocannon-rate', 10));

    return {
      figures: admissionFigures(closed, fixedRate),
      details: {
        connections: CONNECTIONS,
        warmS,
        roundS,
        rounds,
        rateS,
        serverCpu,
        loadCpu,
        closed,
        fixedRate,
        sizes: SIZES,
      },
    };
  } finally {
    await Promise.all([ours.child.stop(), bare.child.stop()]);
  }
}

function admissionFigures(closed: Record<string, Measured[]>, fixedRate: Record<string, Measured>): Figure[] {
  const figures: Figure[] = [];
  const section = 'admission';
  const agg = (key: string): { rps: number; p50: number; p99: number; wait: number; cpuUs: number } => {
    const runs = closed[key] ?? [];
    return {
      rps: median(runs.map((r) => r.rps)),
      cpuUs: median(runs.map((r) => r.serverCpuUsPerRequest)),
      p50: median(runs.map((r) => r.latencyMs.p50)),
      p99: median(runs.map((r) => r.latencyMs.p99)),
      wait: median(runs.map((r) => r.serverRunQueueWait)),
    };
  };
  for (const size of SIZE_NAMES) {
    const o = agg(`ours.${size}`);
    const b = agg(`bare.${size}`);
    const lat = (x: { p50: number; p99: number; wait: number; cpuUs: number }): string =>
      `p50 ${x.p50.toFixed(2)} ms, p99 ${x.p99.toFixed(2)} ms; ${Math.round(x.cpuUs)} µs CPU per request; waited for its CPU ${pct(x.wait)} of the time`;
    figures.push(
      figure({
        section,
        id: `admission.${size}.ours.rps`,
        label: `${size} pod: webhook throughput`,
        value: o.rps,
        unit: 'req/s',
        note: `${CONNECTIONS} connections; ${lat(o)}`,
      }),
      figure({
        section,
        id: `admission.${size}.bare.rps`,
        label: `${size} pod: bare Fastify throughput`,
        value: b.rps,
        unit: 'req/s',
        note: lat(b),
      }),
      figure({
        section,
        id: `admission.${size}.ratio`,
        label: `${size} pod: ratio webhook/bare`,
        value: o.rps / b.rps,
        unit: '',
        note: `by CPU time per request: ${(b.cpuUs / o.cpuUs).toFixed(3)}`,
        ...(size === 'typical' ? { goal: { op: '>=', value: 0.8 } as const } : {}),
      }),
    );
  }
  const paced = fixedRate['ours.paced'] as Measured;
  const barePaced = fixedRate['bare.paced'] as Measured;
  const ac = fixedRate['ours.autocannon'] as Measured;
  figures.push(
    figure({
      section,
      id: 'admission.rate1000.paced.p99',
      label: `p99 at ${RATE} req/s, open loop, typical, 1 core`,
      value: paced.latencyMs.p99,
      unit: 'ms',
      goal: { op: '<=', value: 5 },
      note: `p50 ${paced.latencyMs.p50.toFixed(2)} ms, max ${paced.latencyMs.max.toFixed(1)} ms, ${Math.round(paced.rps)} req/s; server waited for its CPU ${pct(paced.serverRunQueueWait)}; bare server: p99 ${barePaced.latencyMs.p99.toFixed(2)} ms, waited ${pct(barePaced.serverRunQueueWait)}`,
    }),
    figure({
      section,
      id: 'admission.rate1000.autocannon.p99',
      label: `p99 at ${RATE} req/s, autocannon overallRate`,
      value: ac.latencyMs.p99,
      unit: 'ms',
      goal: { op: '<=', value: 5 },
      note: `p50 ${ac.latencyMs.p50.toFixed(2)} ms, ${Math.round(ac.rps)} req/s; paced per second: a back-to-back burst on 10 connections, then idle`,
    }),
  );
  return figures;
}
