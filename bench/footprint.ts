/**
 * Section 4, footprint, read from /proc/PID/status of the real processes:
 * - the reloader idle with 1, 2 and 10 sources after the first sync, watches open over TLS: RssAnon, VmRSS,
 *   start → ready, and the CPU it uses while nothing changes;
 * - the reloader through 1,000 updates of a 512 KiB Secret: RssAnon and V8's heap after forced collections
 *   (bench/lib/gc-on-signal.ts, preloaded for this run only), sampled along the way;
 * - the reloader through the largest configs it is sized for (a gunzip key that expands to 40 MiB, a Secret of
 *   10,000 small keys, a 1 MiB value): peak and settled anonymous memory as differences against an idle
 *   reloader measured in the same run, and the bytes of files it keeps in the (memory-backed) emptyDir;
 * - the webhook at rest and after an admission load.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { admissionFixtures, closedLoad } from './admission.ts';
import type { BenchContext, SectionResult } from './lib/context.ts';
import { GC_ON_SIGNAL_NODE_ARGS } from './lib/gc-on-signal.ts';
import { waitFor } from '../test/support/wait.ts';
import { pinning, procCpuMs, procMemory, spawnNode, type ProcMemory } from './lib/proc.ts';
import {
  benchSecret,
  metricTotal,
  NS,
  ReloadReceiver,
  startApi,
  startReloader,
  type ApiSetup,
} from './lib/reloader.ts';
import { figure, type Figure } from './lib/report.ts';
import { runLoad, startWebhook } from './lib/servers.ts';
import { median } from './lib/stats.ts';

const MiB = (kib: number): number => kib / 1024;
const section = 'footprint';

/** Spawn → exit of `node -e 0`: what any Node process pays before running a line of ours. */
function bareNodeStartMs(): number {
  const runs: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    spawnSync(process.execPath, ['-e', '0']);
    runs.push(performance.now() - t0);
  }
  return median(runs);
}

/** `node -e` idling on a timer, same binary: the floor every Node process starts from. */
async function bareNodeIdle(ctx: BenchContext): Promise<ProcMemory> {
  const child = spawnNode('-e', ['setTimeout(() => {}, 60_000)'], {
    stdoutFile: join(ctx.tmp, 'bare-node.log'),
  });
  try {
    await sleep(1500);
    return procMemory(child.pid);
  } finally {
    await child.stop();
  }
}

interface IdleSample {
  sources: number;
  startToReadyMs: number;
  startToLogMs: number;
  memory: ProcMemory;
  idleCpuMsPerMin: number;
  idleWindowS: number;
}

async function idleReloader(
  ctx: BenchContext,
  setup: ApiSetup,
  names: string[],
  settleMs: number,
  windowMs: number,
): Promise<IdleSample> {
  const dirs = names.map((name) => ({
    name,
    dir: join('/dev/shm', `cri-bench-${process.pid}-idle-${names.length}-${name}`),
  }));
  const run = await startReloader(ctx, setup, dirs, { label: `idle-${names.length}` });
  try {
    await sleep(settleMs);
    const cpu0 = procCpuMs(run.child.pid);
    await sleep(windowMs);
    const cpuMs = procCpuMs(run.child.pid) - cpu0;
    return {
      sources: names.length,
      startToReadyMs: run.startToReadyMs,
      startToLogMs: run.startToLogMs,
      memory: procMemory(run.child.pid),
      idleCpuMsPerMin: (cpuMs * 60_000) / windowMs,
      idleWindowS: windowMs / 1000,
    };
  } finally {
    await run.child.stop();
    await Promise.all(dirs.map((d) => rm(d.dir, { recursive: true, force: true })));
  }
}

export interface GrowthSample {
  updates: number;
  memory: ProcMemory;
  heapUsedKiB: number;
  heapTotalKiB: number;
  externalKiB: number;
}

/** The reloader through `warmup` + `updates` updates of a 512 KiB Secret, sampled after forced collections. */
export async function measureGrowth(
  ctx: BenchContext,
  updates: number,
  warmup: number,
  env?: NodeJS.ProcessEnv,
  nodeArgs: string[] = [],
): Promise<{ samples: GrowthSample[]; peakKiB: number; reloads: number }> {
  const name = 'big-config';
  const setup = await startApi(ctx, [name], 'growth');
  const dir = join('/dev/shm', `cri-bench-${process.pid}-growth`);
  const receiver = new ReloadReceiver();
  await receiver.start(ctx, [dir], 'growth');
  // 512 KiB of random bytes (incompressible), base64 in the Secret as the API server stores it.
  const payload = (): string => randomBytes(384 * 1024).toString('base64') + '\n';
  let version = 0;
  setup.api.create(benchSecret(name, version, payload()) as never);
  const run = await startReloader(ctx, setup, [{ name, dir }], {
    reloadUrl: receiver.url,
    label: 'growth',
    nodeArgs: [...nodeArgs, ...GC_ON_SIGNAL_NODE_ARGS],
    ...(env ? { env } : {}),
  });
  const samples: GrowthSample[] = [];
  const sample = async (): Promise<void> => {
    const before = run.child.stderr().length;
    run.child.proc.kill('SIGUSR2');
    const line = await waitFor(
      () => /\{"benchMemory":.*\}\n/.exec(run.child.stderr().slice(before))?.[0],
      'the memory report',
      10_000,
    );
    await sleep(300);
    const usage = (JSON.parse(line) as { benchMemory: NodeJS.MemoryUsage }).benchMemory;
    samples.push({
      updates: version,
      memory: procMemory(run.child.pid),
      heapUsedKiB: usage.heapUsed / 1024,
      heapTotalKiB: usage.heapTotal / 1024,
      externalKiB: usage.external / 1024,
    });
  };
  const oneUpdate = async (): Promise<void> => {
    const from = receiver.hits.length;
    version++;
    setup.api.update(benchSecret(name, version, payload()) as never);
    const v = version;
    await receiver.waitFor((h) => Number(h.versions[0]) >= v, from, 20_000);
  };
  try {
    // Warm-up: the first large updates grow the heap, buffers and malloc arenas to the size they then keep.
    for (let i = 0; i < warmup; i++) await oneUpdate();
    await sleep(500);
    await sample();
    const every = updates / 4;
    const warm = version;
    while (version - warm < updates) {
      await oneUpdate();
      if ((version - warm) % every === 0) {
        ctx.log(`footprint: ${version - warm}/${updates} updates of 512 KiB`);
        await sleep(500);
        await sample();
      }
    }
    return { samples, peakKiB: procMemory(run.child.pid).vmHwmKiB, reloads: receiver.hits.length };
  } finally {
    await run.child.stop();
    await receiver.close();
    await setup.api.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/** RssAnon now, and the peak of anonymous memory since the last reset: VmHWM (peak RSS) less the file-backed
 * and shared pages resident now (those barely move: the node binary and its libraries). */
function anonPeakKiB(pid: number): { nowKiB: number; peakKiB: number } {
  const m = procMemory(pid);
  return { nowKiB: m.rssAnonKiB, peakKiB: m.vmHwmKiB - m.rssFileKiB - m.rssShmemKiB };
}

/** Starts a new peak: writing 5 to clear_refs sets VmHWM to the current RSS. */
function resetPeak(pid: number): void {
  writeFileSync(`/proc/${pid}/clear_refs`, '5');
}

/**
 * Bytes of the regular files under `dir`, and what tmpfs allocates for them (whole pages: a 64-byte key takes
 * 4 KiB): in a memory-backed emptyDir that is what the sidecar's memory cgroup is charged.
 */
function treeBytes(dir: string): { data: number; allocated: number } {
  const total = { data: 0, allocated: 0 };
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, e.name);
    if (e.isDirectory()) {
      const sub = treeBytes(path);
      total.data += sub.data;
      total.allocated += sub.allocated;
    } else if (e.isFile()) {
      const st = statSync(path);
      total.data += st.size;
      total.allocated += st.blocks * 512;
    }
  }
  return total;
}

/** The largest configs the sidecar is sized for; each `secret(version)` differs in content from version to version. */
interface LargeConfigCase {
  id: string;
  label: string;
  /** `?gunzip=true` on the source. */
  gunzip: boolean;
  data: (version: number) => Record<string, string>;
}

/** 40 MiB of rules text that gzips to under 1 MiB (a Secret's limit): the gunzip case near the cap. */
function rulesText(version: number, bytes: number): string {
  const parts = [`# version ${version}\n`];
  let size = parts[0]?.length ?? 0;
  for (let i = 0; size < bytes; i++) {
    const line = `  - record: instance:node_cpu:rate5m_${i}\n    expr: sum without (cpu) (rate(node_cpu_seconds_total{mode!="idle"}[5m]))\n`;
    parts.push(line);
    size += line.length;
  }
  return parts.join('').slice(0, bytes);
}

const b64 = (b: Buffer | string): string => Buffer.from(b).toString('base64');

export function largeConfigCases(): LargeConfigCase[] {
  const gz = new Map<number, string>();
  const gzipped = (version: number): string => {
    let v = gz.get(version);
    if (v === undefined) {
      v = b64(gzipSync(rulesText(version, 40 * 1024 * 1024), { level: 9 }));
      gz.set(version, v);
    }
    return v;
  };
  return [
    {
      id: 'gunzip40',
      label: 'a gunzip key expanding to 40 MiB (0.9 MiB compressed)',
      gunzip: true,
      data: (version) => ({ version: b64(String(version)), 'rules.yaml.gz': gzipped(version) }),
    },
    {
      id: 'keys10k',
      label: 'a Secret of 10,000 keys of 64 bytes',
      gunzip: false,
      data: (version) => {
        const data: Record<string, string> = { version: b64(String(version)) };
        for (let i = 0; i < 10_000; i++) data[`key-${String(i).padStart(5, '0')}`] = b64(randomBytes(64));
        return data;
      },
    },
    {
      id: 'value1m',
      label: 'one 1 MiB value (the API maximum)',
      gunzip: false,
      data: (version) => ({ version: b64(String(version)), 'blob.bin': b64(randomBytes(1024 * 1024 - 64)) }),
    },
  ];
}

export interface LargeConfigSample {
  id: string;
  label: string;
  /** Differences in MiB against the idle reloader of the same run (anonymous memory). */
  startPeakMiB: number;
  startAfterMiB: number;
  updatePeakMiB: number[];
  updateAfterMiB: number[];
  /** The files of one version on disk (MiB of data); during a swap the old and new versions both exist. */
  filesMiB: number;
  /** What tmpfs allocates for them (MiB, whole pages). */
  filesAllocatedMiB: number;
}

/**
 * The reloader started on the large object (list → write), then through `updates` updates of it, with the
 * sidecar's env. Anonymous memory as a difference against `idleKiB`: the peak (VmHWM since a reset, less the
 * file-backed pages) and 2 s after the write, when the reloader should have given back what it took.
 */
async function largeConfig(
  ctx: BenchContext,
  c: LargeConfigCase,
  idleKiB: number,
  updates: number,
): Promise<LargeConfigSample> {
  const name = `large-${c.id}`;
  const setup = await startApi(ctx, [name], c.id);
  const dir = join('/dev/shm', `cri-bench-${process.pid}-${c.id}`);
  const secret = (version: number): Record<string, unknown> => ({
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name, namespace: NS },
    data: c.data(version),
  });
  setup.api.create(secret(0) as never);
  const delta = (kib: number): number => MiB(kib - idleKiB);
  const settleMs = 2000;
  try {
    // `?gunzip=true` rides on the directory: startReloader writes `secret/NAME=DIR`.
    const run = await startReloader(ctx, setup, [{ name, dir: c.gunzip ? `${dir}?gunzip=true` : dir }], {
      label: c.id,
    });
    const pid = run.child.pid;
    try {
      await sleep(settleMs);
      const start = anonPeakKiB(pid);
      const files = treeBytes(dir);
      const sample: LargeConfigSample = {
        id: c.id,
        label: c.label,
        startPeakMiB: delta(start.peakKiB),
        startAfterMiB: delta(start.nowKiB),
        updatePeakMiB: [],
        updateAfterMiB: [],
        filesMiB: MiB(files.data / 1024),
        filesAllocatedMiB: MiB(files.allocated / 1024),
      };
      for (let v = 1; v <= updates; v++) {
        const writes = await metricTotal(run.address, 'config_reloader_writes_total');
        resetPeak(pid);
        setup.api.update(secret(v) as never);
        await waitFor(
          async () => (await metricTotal(run.address, 'config_reloader_writes_total')) > writes,
          `update ${v} of ${c.id} to be written`,
          60_000,
          20,
        );
        await sleep(settleMs);
        const u = anonPeakKiB(pid);
        sample.updatePeakMiB.push(delta(u.peakKiB));
        sample.updateAfterMiB.push(delta(u.nowKiB));
      }
      const version = readFileSync(join(dir, 'version'), 'utf8');
      if (version !== String(updates)) throw new Error(`${c.id}: the files hold version ${version}`);
      return sample;
    } finally {
      await run.child.stop();
    }
  } finally {
    await setup.api.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/** An idle reloader with one small Secret, then each large config in a reloader of its own. */
export async function measureLargeConfigs(
  ctx: BenchContext,
  updates: number,
  cases = largeConfigCases(),
): Promise<{ idleKiB: number; samples: LargeConfigSample[] }> {
  const setup = await startApi(ctx, ['small'], 'large-idle');
  setup.api.create(benchSecret('small', 1, `${randomBytes(1536).toString('base64')}\n`) as never);
  const dir = join('/dev/shm', `cri-bench-${process.pid}-large-idle`);
  let idleKiB: number;
  try {
    const run = await startReloader(ctx, setup, [{ name: 'small', dir }], { label: 'large-idle' });
    try {
      await sleep(2000);
      idleKiB = procMemory(run.child.pid).rssAnonKiB;
    } finally {
      await run.child.stop();
    }
  } finally {
    await setup.api.close();
    await rm(dir, { recursive: true, force: true });
  }
  const samples: LargeConfigSample[] = [];
  for (const c of cases) {
    ctx.log(`footprint: ${c.label}`);
    samples.push(await largeConfig(ctx, c, idleKiB, updates));
  }
  return { idleKiB, samples };
}

async function webhookMemory(
  ctx: BenchContext,
): Promise<{ rest: ProcMemory; afterLoad: ProcMemory; requests: number }> {
  const fx = await admissionFixtures(ctx);
  const webhook = await startWebhook(ctx, fx.certs, pinning(0, ctx.cpus));
  try {
    const settleMs = ctx.quick ? 500 : 2000;
    await sleep(settleMs);
    const rest = procMemory(webhook.child.pid);
    let requests = 0;
    const seconds = ctx.quick ? 1 : 5;
    for (const size of ['small', 'typical', 'large'] as const) {
      ctx.log(`footprint: webhook under load, ${size} pod, ${seconds} s`);
      requests += (await runLoad(ctx, closedLoad(webhook.url, fx, size, seconds), pinning(1, ctx.cpus)))
        .requests;
    }
    await sleep(settleMs);
    return { rest, afterLoad: procMemory(webhook.child.pid), requests };
  } finally {
    await webhook.child.stop();
  }
}

export async function runFootprint(ctx: BenchContext): Promise<SectionResult> {
  const figures: Figure[] = [];
  const names = Array.from({ length: 10 }, (_, i) => `app-config-${i}`);
  const setup = await startApi(ctx, names, 'idle');
  const config = `${randomBytes(1536).toString('base64')}\n`;
  for (const name of names) setup.api.create(benchSecret(name, 1, config) as never);
  const idle: IdleSample[] = [];
  try {
    for (const n of [1, 2, 10]) {
      ctx.log(`footprint: reloader idle with ${n} source(s)`);
      idle.push(
        await idleReloader(ctx, setup, names.slice(0, n), ctx.quick ? 500 : 3000, ctx.quick ? 2000 : 10_000),
      );
    }
  } finally {
    await setup.api.close();
  }
  const nodeStart = bareNodeStartMs();
  const bare = await bareNodeIdle(ctx);
  const bareNote = `bare \`node -e\` idle: ${MiB(bare.rssAnonKiB).toFixed(1)} MiB anonymous, ${MiB(bare.vmRssKiB).toFixed(1)} MiB RSS`;
  for (const s of idle) {
    const two = s.sources === 2;
    figures.push(
      figure({
        section,
        id: `footprint.reloader.${s.sources}.rssAnon`,
        label: `reloader idle, ${s.sources} source(s): RssAnon`,
        value: MiB(s.memory.rssAnonKiB),
        unit: 'MiB',
        ...(two ? { goal: { op: '<=', value: 20 } as const } : {}),
        ...(two ? { note: bareNote } : {}),
      }),
      figure({
        section,
        id: `footprint.reloader.${s.sources}.rss`,
        label: `reloader idle, ${s.sources} source(s): RSS`,
        value: MiB(s.memory.vmRssKiB),
        unit: 'MiB',
        ...(two ? { goal: { op: '<=', value: 64 } as const } : {}),
        note: `file-backed ${MiB(s.memory.rssFileKiB).toFixed(1)} MiB`,
      }),
    );
  }
  const two = idle.find((s) => s.sources === 2) as IdleSample;
  figures.push(
    figure({
      section,
      id: 'footprint.reloader.2.startToReady',
      label: 'reloader, 2 sources: start → ready',
      value: two.startToReadyMs,
      unit: 'ms',
      goal: { op: '<=', value: 300 },
      note: `${two.startToLogMs.toFixed(0)} ms of it to the first log line (Node + modules); 1 source ${idle[0]?.startToReadyMs.toFixed(0)} ms, 10 sources ${idle[2]?.startToReadyMs.toFixed(0)} ms; bare \`node -e 0\` runs in ${nodeStart.toFixed(0)} ms`,
    }),
    figure({
      section,
      id: 'footprint.reloader.idleCpu',
      label: 'reloader idle, 2 sources: CPU used',
      value: two.idleCpuMsPerMin,
      unit: 'ms/min',
      goal: { op: '<=', value: 60 },
      note: `over ${two.idleWindowS} s (clock tick 10 ms); 10 sources: ${idle[2]?.idleCpuMsPerMin.toFixed(0)} ms/min`,
    }),
  );

  const updates = ctx.quick ? 100 : 1000;
  const warmup = ctx.quick ? 30 : 100;
  ctx.log(`footprint: ${warmup} + ${updates} updates of a 512 KiB Secret`);
  const g = await measureGrowth(ctx, updates, warmup);
  const first = g.samples[0] as GrowthSample;
  const lastSample = g.samples.at(-1) as GrowthSample;
  figures.push(
    figure({
      section,
      id: 'footprint.reloader.growth.rssAnon',
      label: `reloader: RssAnon growth over ${updates} updates of 512 KiB`,
      value: MiB(lastSample.memory.rssAnonKiB - first.memory.rssAnonKiB),
      unit: 'MiB',
      goal: { op: '<=', value: 2 },
      note: `after ${warmup} warm-up updates, then every ${updates / 4}, after forced GC: ${g.samples.map((s) => MiB(s.memory.rssAnonKiB).toFixed(1)).join(' → ')} MiB; peak RSS ${MiB(g.peakKiB).toFixed(0)} MiB`,
    }),
    figure({
      section,
      id: 'footprint.reloader.growth.heap',
      label: `reloader: V8 heap used growth over ${updates} updates`,
      value: MiB(lastSample.heapUsedKiB - first.heapUsedKiB),
      unit: 'MiB',
      goal: { op: '<=', value: 1 },
      note: `heap used ${g.samples.map((s) => MiB(s.heapUsedKiB).toFixed(1)).join(' → ')} MiB; heap total ${g.samples.map((s) => MiB(s.heapTotalKiB).toFixed(1)).join(' → ')} MiB; external ${g.samples.map((s) => MiB(s.externalKiB).toFixed(1)).join(' → ')} MiB`,
    }),
  );

  const largeUpdates = ctx.quick ? 1 : 3;
  const large = await measureLargeConfigs(ctx, largeUpdates);
  for (const c of large.samples) {
    const peak = Math.max(c.startPeakMiB, ...c.updatePeakMiB);
    const settled = c.updateAfterMiB.at(-1) ?? c.startAfterMiB;
    const fmt = (xs: number[]): string => xs.map((x) => `+${x.toFixed(1)}`).join(', ');
    figures.push(
      figure({
        section,
        id: `footprint.reloader.large.${c.id}.peak`,
        label: `reloader, ${c.label}: peak anonymous memory over idle`,
        value: peak,
        unit: 'MiB',
        goal: { op: '<=', value: 24 },
        note: `start ${fmt([c.startPeakMiB])}, ${largeUpdates} update(s) ${fmt(c.updatePeakMiB)} MiB over an idle reloader's ${MiB(large.idleKiB).toFixed(1)} MiB; files ${c.filesMiB.toFixed(1)} MiB (${c.filesAllocatedMiB.toFixed(1)} MiB of tmpfs pages), twice that during a swap`,
      }),
      figure({
        section,
        id: `footprint.reloader.large.${c.id}.settled`,
        label: `reloader, ${c.label}: anonymous memory over idle 2 s after the last update`,
        value: settled,
        unit: 'MiB',
        goal: { op: '<=', value: 10 },
        note: `after start ${fmt([c.startAfterMiB])}, after each update ${fmt(c.updateAfterMiB)} MiB`,
      }),
    );
  }

  const w = await webhookMemory(ctx);
  figures.push(
    figure({
      section,
      id: 'footprint.webhook.rest.rss',
      label: 'webhook at rest: RSS',
      value: MiB(w.rest.vmRssKiB),
      unit: 'MiB',
      note: `RssAnon ${MiB(w.rest.rssAnonKiB).toFixed(1)} MiB`,
    }),
    figure({
      section,
      id: 'footprint.webhook.afterLoad.rss',
      label: 'webhook after admission load: RSS',
      value: MiB(w.afterLoad.vmRssKiB),
      unit: 'MiB',
      note: `RssAnon ${MiB(w.afterLoad.rssAnonKiB).toFixed(1)} MiB, peak RSS ${MiB(w.afterLoad.vmHwmKiB).toFixed(0)} MiB, after ${w.requests} reviews`,
    }),
  );
  return {
    figures,
    details: { idle, bareNode: bare, nodeStartMs: nodeStart, growth: g, large, webhook: w },
  };
}
