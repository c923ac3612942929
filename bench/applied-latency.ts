/**
 * Section 3d, applied latency: how long after the API server accepted an update the app runs it, as users see
 * it. A real control plane (test/support/control-plane) and the real apps (test/support/apps.ts, built by
 * `npm run apps:build`): the reloader, with the preset's reload URL and confirmation (src/injection/presets.ts),
 * keeps real vmagent's scrape config and real Prometheus' rule file current from a Secret each.
 *
 * For each update (a PUT of the Secret as the admin on a kept-alive TLS connection, one at a time, each an
 * effective change: a new scrape job or recording rule):
 * - applied: from the PUT's 200 answer arriving here to the reloader's confirmation, i.e. the `time` of its
 *   log line "the app applied the new config", written once it read the app's own metrics saying success 1 with
 *   a reload timestamp past the one before the reload. Both are this machine's wall clock in ms.
 * - floor: from the PUT's answer to the files written (the rename of `..data`, seen by an inotify watch here on
 *   the monotonic clock); negative when the write came first (kube-apiserver answers and sends the watch event
 *   on paths of their own).
 * - the reloader's own split (from that log line): the watch event → applied, and the delivery → verdict.
 *
 * VictoriaMetrics reports its reload time in whole seconds from a clock up to about 1 s behind (lib/fasttime), so
 * the reloader holds a reload until 2 s after the app's last reported second, making each reload's timestamp
 * newer than the one before. Updates to vmagent are therefore spaced: each is sent only once that hold is over
 * (2.1 s after the second the app reported for the previous reload), so the figure is the latency, not the hold.
 */
import { watch, type FSWatcher } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { PRESETS } from '../src/injection/presets.ts';
import { startApp, type AppKind, type RealApp } from '../test/support/apps.ts';
import { freePort, startControlPlane, type ControlPlane } from '../test/support/control-plane/index.ts';
import type { BenchContext, SectionResult } from './lib/context.ts';
import { NS, startReloader, writeJsonKubeconfig, type ReloaderRun } from './lib/reloader.ts';
import { figure, type Figure } from './lib/report.ts';
import { nsToMs, summarize, type Summary } from './lib/stats.ts';
import { admin, secretWriter, serviceAccountToken } from './propagation-real.ts';

interface Target {
  app: AppKind & keyof typeof PRESETS;
  secret: string;
  key: string;
  /** The config of update `n`, a change the app does not call "nothing changed". */
  config(n: number): string;
  /** Whole-second reload timestamps: space updates past the reloader's hold (see the file comment). */
  wholeSeconds: boolean;
  /** The app's own log line once it runs the new config (its time, in ms, is the app's clock: this machine's). */
  reloadedLine: RegExp;
}

const TARGETS: Target[] = [
  {
    app: 'vmagent',
    secret: 'vmagent-config',
    key: 'scrape.yml',
    config: (n) =>
      `global:\n  scrape_interval: 1h\nscrape_configs:\n  - job_name: job-${n}\n    static_configs:\n      - targets: ["127.0.0.1:9"]\n`,
    wholeSeconds: true,
    // Logged after the new scrape config is in place and its metrics set (lib/promscrape/scraper.go).
    reloadedLine: /static_configs: added targets/,
  },
  {
    app: 'prometheus',
    secret: 'prometheus-rules',
    key: 'rules.yml',
    config: (n) =>
      `groups:\n  - name: bench\n    rules:\n      - record: bench:v${n}\n        expr: sum(up)\n`,
    wholeSeconds: false,
    reloadedLine: /msg="Completed loading of configuration file"/,
  },
];

const secretOf = (t: Target, n: number): Record<string, unknown> => ({
  apiVersion: 'v1',
  kind: 'Secret',
  metadata: { name: t.secret, namespace: NS },
  data: { [t.key]: Buffer.from(t.config(n)).toString('base64') },
});

interface Run {
  applied: number[];
  /** From the PUT's answer to the app's own log line saying it runs the new config. */
  appReloaded: number[];
  floor: number[];
  eventToApplied: number[];
  deliveryToVerdict: number[];
  /** Verdicts other than applied (rejected, unconfirmed): none expected. */
  otherVerdicts: string[];
}

/** The reloader's log lines with this message so far (it writes them to a file; read whole each time). */
function linesOf(reloader: ReloaderRun, msg: RegExp): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (const l of reloader.child.stdout().split('\n')) {
    if (!l.startsWith('{')) continue;
    try {
      const parsed = JSON.parse(l) as Record<string, unknown>;
      if (msg.test(String(parsed.msg))) out.push(parsed);
    } catch {
      // a line still being written
    }
  }
  return out;
}

/** The times (ms) of the app's log lines matching `line`: VictoriaMetrics starts a line with it, Prometheus says time=. */
function appLogTimes(app: RealApp, line: RegExp): number[] {
  return app
    .logTail(1_000_000)
    .split('\n')
    .filter((l) => line.test(l))
    .map((l) => Date.parse(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z/.exec(l)?.[0] ?? ''));
}

const VERDICT = /^(the app applied the new config|the app rejected the new config|could not confirm)/;

async function measure(ctx: BenchContext, cp: ControlPlane, kubeconfig: string, t: Target, count: number) {
  const preset = PRESETS[t.app];
  const dir = join(ctx.tmp, `applied-${t.app}`);
  await mkdir(dir, { recursive: true });
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  let reloader: ReloaderRun | undefined;
  let app: RealApp | undefined;
  let watcher: FSWatcher | undefined;
  const writer = secretWriter(cp, t.secret);
  try {
    reloader = await startReloader(ctx, { kubeconfig }, [{ name: t.secret, dir }], {
      label: `applied-${t.app}`,
      reloadUrl: `${origin}${preset.reloadPath}`,
      extraArgs: [
        `--reload-method=${preset.reloadMethod}`,
        `--confirm-metrics-url=${origin}${preset.metricsPath}`,
        `--confirm-success-metric=${preset.successMetric}`,
        `--confirm-timestamp-metric=${preset.timestampMetric}`,
        ...(preset.unchangedKeepsTimestamp ? ['--confirm-unchanged-keeps-timestamp'] : []),
      ],
    });
    // As in a pod: the reloader's first sync is done before the app starts and reads the file.
    app = await startApp(t.app, { file: join(dir, t.key), port });
    const swaps: bigint[] = [];
    watcher = watch(dir, (_event, name) => {
      if (name === '..data') swaps.push(process.hrtime.bigint());
    });
    await writer.warmUp();
    const run: Run = {
      applied: [],
      appReloaded: [],
      floor: [],
      eventToApplied: [],
      deliveryToVerdict: [],
      otherVerdicts: [],
    };
    let appTimestamp = Number(await app.metricNow(preset.timestampMetric));
    for (let n = 1; n <= count; n++) {
      if (t.wholeSeconds) {
        const holdEnds = (appTimestamp + 2.1) * 1000;
        if (Date.now() < holdEnds) await sleep(holdEnds - Date.now());
      }
      const verdictsBefore = linesOf(reloader, VERDICT).length;
      const reloadsBefore = appLogTimes(app, t.reloadedLine).length;
      const swapsBefore = swaps.length;
      const { answeredAt } = await writer.put(secretOf(t, n));
      const answeredWall = Date.now() - nsToMs(process.hrtime.bigint() - answeredAt);
      let verdict: Record<string, unknown> | undefined;
      const deadline = Date.now() + 60_000;
      while (!(verdict = linesOf(reloader, VERDICT)[verdictsBefore])) {
        if (Date.now() > deadline) throw new Error(`${t.app}: no verdict on update ${n} within 60 s`);
        await sleep(5);
      }
      if (verdict.msg !== 'the app applied the new config') {
        run.otherVerdicts.push(String(verdict.msg));
        continue;
      }
      run.applied.push(Date.parse(String(verdict.time)) - answeredWall);
      const reloaded = appLogTimes(app, t.reloadedLine)[reloadsBefore];
      if (reloaded !== undefined) run.appReloaded.push(reloaded - answeredWall);
      const swap = swaps[swapsBefore];
      if (swap !== undefined) run.floor.push(nsToMs(swap - answeredAt));
      run.eventToApplied.push(Number(verdict.changeToAppliedMs));
      run.deliveryToVerdict.push(Number(verdict.confirmMs));
      if (verdict.appTimestamp !== undefined) appTimestamp = Number(verdict.appTimestamp);
    }
    return { run, reloaderLog: reloader.child.stdout().length };
  } finally {
    watcher?.close();
    writer.close();
    await app?.stop();
    await reloader?.child.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

const fmt = (s: Summary): string =>
  `p50 ${s.p50.toFixed(1)} ms, p99 ${s.p99.toFixed(1)} ms, max ${s.max.toFixed(1)} ms`;

export async function runAppliedLatency(ctx: BenchContext): Promise<SectionResult> {
  const count = ctx.quick ? 10 : 100;
  const section = 'applied-latency';
  ctx.log(`${section}: starting etcd, kube-apiserver and kube-controller-manager`);
  const cp = await startControlPlane();
  try {
    ctx.log(`${section}: kube-apiserver ${cp.version}, up in ${cp.startMs} ms`);
    await admin(cp, 'POST', '/api/v1/namespaces', {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: NS },
    });
    for (const t of TARGETS) await admin(cp, 'POST', `/api/v1/namespaces/${NS}/secrets`, secretOf(t, 0));
    const kubeconfig = join(ctx.tmp, `kubeconfig-${section}.json`);
    writeJsonKubeconfig(kubeconfig, {
      server: cp.server,
      caCert: cp.caCert,
      token: await serviceAccountToken(
        cp,
        TARGETS.map((t) => t.secret),
      ),
      namespace: NS,
    });
    const figures: Figure[] = [];
    const details: Record<string, unknown> = { kubernetes: cp.version, updates: count };
    for (const t of TARGETS) {
      ctx.log(`${section}: ${count} updates to real ${t.app}`);
      const { run } = await measure(ctx, cp, kubeconfig, t, count);
      const applied = summarize(run.applied);
      const appReloaded = summarize(run.appReloaded);
      const floor = summarize(run.floor);
      const eventToApplied = summarize(run.eventToApplied);
      const deliveryToVerdict = summarize(run.deliveryToVerdict);
      const how = `${PRESETS[t.app].answer === 'sync' ? 'synchronous' : 'asynchronous'} HTTP reload`;
      figures.push(
        figure({
          section,
          id: `applied-latency.${t.app}.p50`,
          label: `real ${t.app} (${count} updates): p50 PUT's 200 answer → the app confirmed running it`,
          value: applied.p50,
          unit: 'ms',
          note: `${how}; floor (answer → files written) ${fmt(floor)}; answer → the app's own log line of the reload (ms) ${fmt(appReloaded)}`,
        }),
        figure({
          section,
          id: `applied-latency.${t.app}.p99`,
          label: `real ${t.app} (${count} updates): p99 PUT's 200 answer → the app confirmed running it`,
          value: applied.p99,
          unit: 'ms',
          note: `max ${applied.max.toFixed(1)} ms; the reloader's split: watch event → applied ${fmt(eventToApplied)}; reload → verdict ${fmt(deliveryToVerdict)}`,
        }),
        figure({
          section,
          id: `applied-latency.${t.app}.not-applied`,
          label: `real ${t.app}: updates not confirmed applied`,
          value: run.otherVerdicts.length,
          unit: '',
          goal: { op: '<=', value: 0 },
          note: run.otherVerdicts.length ? run.otherVerdicts.slice(0, 3).join('; ') : 'every update applied',
        }),
      );
      details[t.app] = {
        applied,
        floor,
        eventToApplied,
        deliveryToVerdict,
        otherVerdicts: run.otherVerdicts,
        appReloaded,
        appliedSamples: run.applied,
        appReloadedSamples: run.appReloaded,
        floorSamples: run.floor,
      };
    }
    return { figures, details };
  } finally {
    await cp.stop();
  }
}
