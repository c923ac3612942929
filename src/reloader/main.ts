import { createHash } from 'node:crypto';
import { UsageError } from '../shared/cli.ts';
import type { Logger } from '../shared/log.ts';
import type { BackoffPolicy } from './backoff.ts';
import { isValidNamespace, type ReloaderConfig } from './config.ts';
import { ApiHealth } from './health.ts';
import { loadClusterAccess } from './kube/cluster-access.ts';
import { KubeClient } from './kube/client.ts';
import { httpDelivery, signalDelivery, type Delivery, type SignalSender } from './delivery.ts';
import { createConfirmMetrics, createReloaderMetrics } from './metrics.ts';
import { gunzipCap } from './projection.ts';
import { ReloadTrigger } from './reload.ts';
import type { RestartManager } from './restart.ts';
import { startStatusServer } from './server.ts';
import { DEFAULT_WATCH_IDLE_MS, sourceId, SourceWatcher } from './source.ts';
import { AtomicWriter } from './writer.ts';

export interface RunOptions {
  log: Logger;
  /** Resolves when the reloader should stop (SIGTERM/SIGINT in the command). */
  stopped: Promise<unknown>;
  /** Writes the one-line reason of a --once failure (stderr in the command). */
  reportError: (message: string) => void;
  backoff?: BackoffPolicy;
  /** Sends signals to containers (reload by signal, restarts): processes.ts's signalContainer unless a test stands in. */
  signalSender?: SignalSender;
}

/** A stable hash of every source's directory, in --source order: what a reload applies. */
function combinedDigest(writers: AtomicWriter[]): string {
  const h = createHash('sha256');
  for (const w of writers) h.update(`${w.digest() ?? '-'}\n`);
  return h.digest('hex');
}

/** Runs the reloader until `stopped` resolves (or, with --once, until every source synced); returns the exit code. */
export async function runReloader(config: ReloaderConfig, opts: RunOptions): Promise<number> {
  const { log } = opts;
  const backoff = opts.backoff ?? config.backoff;
  const access = await loadClusterAccess(config.cluster);
  const namespace = config.namespace ?? access.namespace;
  if (!namespace)
    throw new UsageError(
      'no namespace: pass --namespace, set POD_NAMESPACE, or use a kubeconfig context with a namespace',
    );
  if (!isValidNamespace(namespace))
    throw new UsageError(`namespace "${namespace}" is not a valid namespace name`);

  const client = new KubeClient(access);
  const metrics = createReloaderMetrics();
  const health = new ApiHealth(config.healthTimeoutMs);
  // The gunzip cap follows the memory limit (cgroup), which the files of a memory-backed emptyDir count against.
  const memoryLimit = process.constrainedMemory();
  const gunzipSources = config.sources.filter((s) => s.gunzip).length;
  const cap = gunzipCap(memoryLimit, gunzipSources);
  const writers = config.sources.map(
    (spec) => new AtomicWriter(spec.dir, { fsGroup: config.fsGroup, gunzipCap: cap }),
  );
  const events =
    config.events && !config.once
      ? // Loaded only when asked for, as are confirmation and restarts below: a reloader without them does not carry
        // their code (its idle footprint is measured in docs/benchmarks.md).
        new (await import('./events.ts')).EventRecorder(
          config.events,
          client,
          log.child({ component: 'events' }),
        )
      : undefined;
  const delivery: Delivery | undefined = config.reload
    ? httpDelivery(config.reload)
    : config.signal
      ? signalDelivery(config.signal, opts.signalSender)
      : undefined;
  const confirm = config.confirm && {
    config: config.confirm,
    metrics: createConfirmMetrics(metrics.registry),
  };
  const applied = confirm
    ? new (await import('./applied.ts')).AppliedTracker(
        config.sources.map((spec, i) => ({
          id: sourceId(spec, namespace),
          digest: () => (writers[i] as AtomicWriter).digest(),
        })),
        confirm.metrics,
      )
    : undefined;
  const trigger =
    delivery && !config.once
      ? new ReloadTrigger({
          delivery,
          log,
          metrics,
          contentHash: () => combinedDigest(writers),
          backoff,
          events,
          confirm: confirm && {
            reader: new (await import('./confirm.ts')).AppMetricsReader(confirm.config),
            metrics: confirm.metrics,
            applied,
          },
        })
      : undefined;
  // Reopen a watch silent for longer than a liveness window; one that gets bookmarks is never cut.
  const watchIdleMs = Math.max(2 * config.healthTimeoutMs, DEFAULT_WATCH_IDLE_MS);
  const restarts =
    config.restarts.length > 0 && !config.once
      ? new (await import('./restart.ts')).RestartManager({
          restarts: config.restarts,
          namespace,
          client,
          health,
          metrics,
          log,
          backoff,
          events,
          watchIdleMs,
          send: opts.signalSender,
        })
      : undefined;
  const sources = config.sources.map(
    (spec, i) =>
      new SourceWatcher({
        spec,
        namespace,
        client,
        writer: writers[i] as AtomicWriter,
        health,
        metrics,
        log: log.child({ source: sourceId(spec, namespace) }),
        onChange: (initial, receivedAt) => {
          if (initial) return;
          applied?.changed(i);
          trigger?.request(receivedAt);
        },
        onSynced: () => applied?.synced(i),
        resyncMs: config.resyncMs,
        watchIdleMs,
        backoff,
      }),
  );
  log.info(
    {
      apiServer: access.server.origin,
      via: access.origin,
      namespace,
      sources: sources.map((s) => `${s.id}=${s.spec.dir}`),
      once: config.once,
      ...(delivery ? { delivery: delivery.kind, reloadTarget: delivery.target } : {}),
      ...(config.confirm
        ? { confirm: `${config.confirm.metricsUrl.origin}${config.confirm.metricsUrl.pathname}` }
        : {}),
      ...(restarts
        ? {
            restartOnChange: config.restarts.map(
              (r) => `${r.container}=${r.objects.map((o) => `${o.kind}/${o.name}`).join(',')}`,
            ),
          }
        : {}),
      ...(events ? { events: true } : {}),
      ...(gunzipSources > 0 ? { gunzipCapBytes: cap } : {}),
    },
    'starting',
  );

  try {
    if (config.once) return await syncOnce(sources, config.onceTimeoutMs, opts);
    return await watchUntilStopped(sources, config, { health, metrics, trigger, restarts, opts });
  } finally {
    trigger?.close();
    if (!trigger) delivery?.close();
    events?.close();
    client.destroy();
  }
}

/** --once: every source synced, or exit 1 naming each required one that could not be (optional ones only warn). */
async function syncOnce(sources: SourceWatcher[], timeoutMs: number, opts: RunOptions): Promise<number> {
  const interrupted = new AbortController();
  void opts.stopped.then(() => interrupted.abort());
  const signal = AbortSignal.any([AbortSignal.timeout(timeoutMs), interrupted.signal]);
  const results = await Promise.allSettled(sources.map((s) => s.syncOnce(signal)));
  let code = 0;
  results.forEach((r, i) => {
    if (r.status === 'fulfilled') return;
    const s = sources[i] as SourceWatcher;
    const reason = (r.reason as Error).message;
    const when = interrupted.signal.aborted
      ? 'before the reloader was stopped'
      : `within ${timeoutMs / 1000}s`;
    const message = `${s.id} could not be synced ${when}: ${reason}`;
    if (s.spec.optional) {
      opts.log.warn({ source: s.id, error: reason }, `optional ${message}`);
      return;
    }
    opts.log.error({ source: s.id, error: reason }, message);
    opts.reportError(message);
    code = 1;
  });
  if (code === 0) opts.log.info('every source synced once: exiting');
  return code;
}

async function watchUntilStopped(
  sources: SourceWatcher[],
  config: ReloaderConfig,
  deps: {
    health: ApiHealth;
    metrics: ReturnType<typeof createReloaderMetrics>;
    trigger: ReloadTrigger | undefined;
    restarts: RestartManager | undefined;
    opts: RunOptions;
  },
): Promise<number> {
  const { log } = deps.opts;
  const server = await startStatusServer(
    config.listen,
    {
      readiness: () => {
        const pending = sources.filter((s) => !s.isSynced).map((s) => s.id);
        const failing: Record<string, string> = {};
        for (const s of sources) if (s.failure !== undefined) failing[s.id] = s.failure;
        return { ready: pending.length === 0 && Object.keys(failing).length === 0, pending, failing };
      },
      health: () => deps.health.check(),
    },
    deps.metrics.registry,
  );
  log.info({ address: server.address }, 'listening for /readyz, /healthz and /metrics');
  for (const s of sources) s.start();
  deps.restarts?.start();
  await deps.opts.stopped;
  log.info('stopping: closing the watches');
  // At once: a reload in flight or waiting to be retried must not hold the process (nor go out after this).
  deps.trigger?.close();
  await Promise.all([...sources.map((s) => s.stop()), deps.restarts?.stop()]);
  await server.close();
  log.info('stopped');
  return 0;
}
