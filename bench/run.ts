/**
 * `npm run bench`: every section of issue 5, one table, results as JSON and Markdown.
 *
 *   node bench/run.ts [--quick] [--only admission,scaling,propagation,propagation-real,applied-latency,footprint,missed-injections] [--runtime compiled|source] [--note TEXT]
 *
 * A full run of every section writes bench/results/latest.json and latest.md; a quick or partial run writes
 * the same files under $TMPDIR/config-reloader-injector-bench/ so that it never replaces the committed results.
 * All load stays on 127.0.0.1; every process started here is stopped before it exits.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { runAdmission } from './admission.ts';
import { runAppliedLatency } from './applied-latency.ts';
import { runFootprint } from './footprint.ts';
import { prepareCli, type Runtime } from './lib/build.ts';
import { runMissedInjections } from './missed-injections.ts';
import type { BenchContext, SectionResult } from './lib/context.ts';
import { BENCH_DIR } from './lib/paths.ts';
import { machine, markdown, textTable, type Figure, type Results } from './lib/report.ts';
import { runPropagationReal } from './propagation-real.ts';
import { runPropagation } from './propagation.ts';
import { runScaling } from './scaling.ts';

const SECTIONS: Record<string, (ctx: BenchContext) => Promise<SectionResult>> = {
  admission: runAdmission,
  scaling: runScaling,
  propagation: runPropagation,
  'propagation-real': runPropagationReal,
  'applied-latency': runAppliedLatency,
  footprint: runFootprint,
  'missed-injections': runMissedInjections,
};

const HELP = `Usage: npm run bench -- [--quick] [--only SECTION[,SECTION]] [--runtime compiled|source] [--note TEXT]

Sections: ${Object.keys(SECTIONS).join(', ')} (default: all, in that order).
  propagation-real starts a real control plane (etcd, kube-apiserver, kube-controller-manager, built by
  \`npm run cluster:build\`, which needs Go, on first use) on 127.0.0.1 for the length of the section.
  applied-latency does too, with the real vmagent and Prometheus (\`npm run apps:build\`); about 7 minutes,
  as its 100 updates to vmagent are spaced by VictoriaMetrics' whole-second reload timestamps.
  --quick     shorter runs (about a minute in all); results go to the temp directory
  --only      run only these sections; results go to the temp directory
  --runtime   compiled (default): the tsc build, as in the image; source: src/*.ts through Node's type
              stripping (its TypeScript parser inflates the footprint figures)
  --note      a remark stored with the results (e.g. "machine shared with other test runs")
  --cli FILE  benchmark this cli.js/cli.ts instead (another build, e.g. to compare a change); results go
              to the temp directory
`;

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    runtime: { type: 'string' },
    note: { type: 'string' },
    cli: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (values.help) {
  process.stdout.write(HELP);
  process.exit(0);
}
const sections = values.only ? values.only.split(',').map((s) => s.trim()) : Object.keys(SECTIONS);
for (const s of sections) {
  if (!SECTIONS[s]) {
    process.stderr.write(`error: unknown section "${s}"\n\n${HELP}`);
    process.exit(2);
  }
}
const quick = values.quick ?? false;
const runtime = (values.runtime ?? 'compiled') as Runtime;
if (runtime !== 'compiled' && runtime !== 'source') {
  process.stderr.write(`error: --runtime must be compiled or source\n`);
  process.exit(2);
}

const started = performance.now();
const log = (message: string): void => {
  process.stderr.write(`[${((performance.now() - started) / 1000).toFixed(1).padStart(6)} s] ${message}\n`);
};
const info = machine();
log(`${info.cpuModel}, ${info.cores} cores, Node ${info.node}, load average ${info.loadAverageStart}`);
const tmp = mkdtempSync(join(tmpdir(), 'cri-bench-'));
log(
  values.cli
    ? `running ${values.cli}`
    : runtime === 'compiled'
      ? 'building the CLI with tsc'
      : 'running the CLI from the TypeScript source',
);
const cli = values.cli
  ? { runtime, cli: resolve(values.cli), buildMs: 0, dispose: () => {} }
  : prepareCli(runtime);
const ctx: BenchContext = { quick, cli, tmp, cpus: availableParallelism(), log };

const figures: Figure[] = [];
const details: Record<string, unknown> = { buildMs: Math.round(cli.buildMs) };
const failures: string[] = [];
try {
  for (const name of sections) {
    log(`section ${name}`);
    try {
      const result = await (SECTIONS[name] as (c: BenchContext) => Promise<SectionResult>)(ctx);
      figures.push(...result.figures);
      details[name] = result.details;
    } catch (err) {
      failures.push(`${name}: ${(err as Error).stack ?? String(err)}`);
      log(`section ${name} failed: ${(err as Error).message}`);
    }
  }
} finally {
  cli.dispose();
  rmSync(tmp, { recursive: true, force: true });
}

info.loadAverageEnd = Math.round((loadavg()[0] ?? 0) * 100) / 100;
const results: Results = {
  date: new Date().toISOString(),
  machine: info,
  mode: quick ? 'quick' : 'full',
  runtime: values.cli ? `${runtime} (${values.cli})` : runtime,
  sections,
  ...(values.note ? { note: values.note } : {}),
  durationS: (performance.now() - started) / 1000,
  figures,
  details: { ...details, ...(failures.length ? { failures } : {}) },
};
const official = !quick && !values.only && !values.cli;
const outDir = official ? join(BENCH_DIR, 'results') : join(tmpdir(), 'config-reloader-injector-bench');
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, 'latest.json'), `${JSON.stringify(results, null, 2)}\n`);
writeFileSync(join(outDir, 'latest.md'), markdown(results));

process.stdout.write(`\n${textTable(figures)}\n\n`);
process.stdout.write(
  `${info.cpuModel}, ${info.cores} cores, Node ${info.node}; load average ${info.loadAverageStart} -> ${info.loadAverageEnd}\n`,
);
process.stdout.write(`results: ${join(outDir, 'latest.json')} and latest.md\n`);
for (const f of failures) process.stderr.write(`\nFAILED ${f}\n`);
const missed = figures.filter((f) => f.pass === false).length;
if (missed) process.stdout.write(`${missed} figure(s) missed their goal\n`);
process.exitCode = failures.length ? 1 : 0;
