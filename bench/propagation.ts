/**
 * Section 3, propagation: from the test API server (in this process) handing a watch event to the reloader's
 * socket (`sentAt`) to the reload request arriving at the app (bench/receiver.ts, its own process), both
 * stamped with process.hrtime, the system-wide monotonic clock. At arrival the receiver reads the files: they
 * must already hold that update, whole.
 * - single: updates one at a time, each after the previous reload was answered and a short pause;
 * - burst: 100 updates in one tick; each update's latency is until the first reload that shows it (or newer);
 * - recovery: every watch connection dropped mid-stream, an update made right after; time to its reload.
 */
import { rm } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import type { WatchEventRecord } from '../test/support/kube-apiserver/index.ts';
import type { BenchContext, SectionResult } from './lib/context.ts';
import {
  benchConfig,
  benchPadding,
  benchSecret,
  metricTotal,
  ReloadReceiver,
  singleUpdates,
  startApi,
  startReloader,
} from './lib/reloader.ts';
import { figure } from './lib/report.ts';
import { nsToMs, summarize } from './lib/stats.ts';

const NAME = 'app-config';

export async function runPropagation(ctx: BenchContext): Promise<SectionResult> {
  const singles = 200;
  const burst = 100;
  const drops = ctx.quick ? 5 : 20;
  const padding = benchPadding();

  const setup = await startApi(ctx, [NAME], 'propagation');
  const { api } = setup;
  const dir = join('/dev/shm', `cri-bench-${process.pid}-propagation`);
  const receiver = new ReloadReceiver();
  await receiver.start(ctx, [dir], 'propagation');
  // The event is written (and stamped) inside api.update(), before it returns the new resourceVersion.
  const sentAtByRv = new Map<string, bigint>();
  api.events.on('watch-event', (e: WatchEventRecord) => {
    if (e.type === 'MODIFIED' && e.name === NAME && !sentAtByRv.has(e.resourceVersion))
      sentAtByRv.set(e.resourceVersion, e.sentAt);
  });
  const rvOf = new Map<number, string>();
  const sentAt = { get: (v: number): bigint | undefined => sentAtByRv.get(rvOf.get(v) ?? '') };
  let version = 0;
  const update = (): number => {
    version++;
    const obj = api.update(benchSecret(NAME, version, padding) as never);
    rvOf.set(version, String(obj.metadata.resourceVersion));
    return version;
  };
  api.create(benchSecret(NAME, version, padding) as never);

  const reloader = await startReloader(ctx, setup, [{ name: NAME, dir }], {
    reloadUrl: receiver.url,
    label: 'propagation',
  });
  try {
    await sleep(200);
    const shows = (v: number) => (h: { versions: string[] }) => Number(h.versions[0]) >= v;

    const EVENT_TO_WRITE = 'config_reloader_event_to_write_seconds';
    const inside0 = {
      sum: await metricTotal(reloader.address, `${EVENT_TO_WRITE}_sum`),
      count: await metricTotal(reloader.address, `${EVENT_TO_WRITE}_count`),
    };
    ctx.log(`propagation: ${singles} single updates`);
    const singleRun = await singleUpdates(
      receiver,
      singles,
      () => {
        const v = update();
        return { version: v, sentAt: sentAt.get(v) as bigint };
      },
      (v) => benchConfig(v, padding),
    );
    const single = singleRun.fromSent;

    const inside = {
      sum: (await metricTotal(reloader.address, `${EVENT_TO_WRITE}_sum`)) - inside0.sum,
      count: (await metricTotal(reloader.address, `${EVENT_TO_WRITE}_count`)) - inside0.count,
    };
    const insideMeanMs = inside.count > 0 ? (inside.sum * 1000) / inside.count : Number.NaN;
    ctx.log(`propagation: a burst of ${burst} updates`);
    await sleep(100);
    const burstFrom = receiver.hits.length;
    const first = version + 1;
    for (let i = 0; i < burst; i++) update();
    const last = version;
    await receiver.waitFor(shows(last), burstFrom);
    await sleep(500);
    const burstHits = receiver.hits.slice(burstFrom);
    const burstLatency: number[] = [];
    for (let v = first; v <= last; v++) {
      const at = sentAt.get(v) as bigint;
      const hit = burstHits.find((h) => h.arrivedAt > at && shows(v)(h));
      if (hit) burstLatency.push(nsToMs(hit.arrivedAt - at));
    }
    const burstVersions = burstHits.map((h) => Number(h.versions[0]));
    const burstMonotonic = burstVersions.every((v, i) => i === 0 || v >= (burstVersions[i - 1] as number));
    const lastReloadCurrent = burstVersions.at(-1) === last;
    const burstMixed = burstHits.some((h) => !h.consistent);
    const lastToFinal = nsToMs((burstHits.find(shows(last))?.arrivedAt ?? 0n) - (sentAt.get(last) as bigint));

    ctx.log(`propagation: ${drops} dropped watch connections`);
    const recovery: number[] = [];
    for (let i = 0; i < drops; i++) {
      await sleep(100);
      const from = receiver.hits.length;
      const t0 = process.hrtime.bigint();
      api.dropWatches();
      const v = update();
      const hit = await receiver.waitFor(shows(v), from, 10_000);
      recovery.push(nsToMs(hit.arrivedAt - t0));
      const deadline = Date.now() + 10_000;
      while (api.openWatches < 1 && Date.now() < deadline) await sleep(5);
    }

    const s = summarize(single);
    const { stale, mixed, notWhole } = singleRun;
    const b = summarize(burstLatency);
    const r = summarize(recovery);
    const section = 'propagation';
    return {
      figures: [
        figure({
          section,
          id: 'propagation.single.p50',
          label: `single updates (${singles}): p50 event → reload`,
          value: s.p50,
          unit: 'ms',
          note: `the reloader's own event → files written: mean ${insideMeanMs.toFixed(2)} ms (its ${EVENT_TO_WRITE} metric)`,
        }),
        figure({
          section,
          id: 'propagation.single.p99',
          label: `single updates (${singles}): p99 event → reload`,
          value: s.p99,
          unit: 'ms',
          goal: { op: '<=', value: 5 },
          note: `max ${s.max.toFixed(2)} ms; 2 KiB Secret, 2 keys, TLS watch`,
        }),
        figure({
          section,
          id: 'propagation.single.stale',
          label: 'reloads whose files were not yet current or mixed',
          value: singleRun.wrong + (burstMixed ? 1 : 0),
          unit: '',
          goal: { op: '<=', value: 0 },
          note: `stale ${stale}, mixed ${mixed}, config.yaml not whole ${notWhole}${burstMixed ? '; mixed in the burst' : ''}`,
        }),
        figure({
          section,
          id: 'propagation.burst.p50',
          label: `burst of ${burst}: p50 event → first reload showing it`,
          value: b.p50,
          unit: 'ms',
        }),
        figure({
          section,
          id: 'propagation.burst.p99',
          label: `burst of ${burst}: p99 event → first reload showing it`,
          value: b.p99,
          unit: 'ms',
          goal: { op: '<=', value: 5 },
          note: `${burstHits.length} reloads for ${burst} updates; last event → final reload ${lastToFinal.toFixed(2)} ms`,
        }),
        figure({
          section,
          id: 'propagation.burst.final',
          label: 'burst: last reload shows the newest, reloads in order',
          value: lastReloadCurrent && burstMonotonic && burstLatency.length === burst ? 1 : 0,
          unit: '',
          goal: { op: '>=', value: 1 },
          note: `reloads saw versions ${burstVersions.map((v) => v - first + 1).join(', ')} (of ${burst})`,
        }),
        figure({
          section,
          id: 'propagation.recovery.max',
          label: `dropped watch → next update's reload (${drops}×): max`,
          value: r.max,
          unit: 'ms',
          goal: { op: '<=', value: 1000 },
          note: `p50 ${r.p50.toFixed(1)} ms`,
        }),
      ],
      details: {
        single: s,
        insideEventToWriteMeanMs: insideMeanMs,
        burst: b,
        burstReloads: burstHits.length,
        burstVersions,
        lastToFinal,
        recovery: r,
        singleSamples: single,
        recoverySamples: recovery,
      },
    };
  } finally {
    await reloader.child.stop();
    await receiver.close();
    await api.close();
    await rm(dir, { recursive: true, force: true });
  }
}
