/**
 * Section missed-injections: the webhook with --watch-missed-injections (as both overlays run it) against the
 * test API server holding 0, 10,000 and 50,000 pods, each time a new webhook process:
 *
 * - memory once it has counted the misses (the pods seeded without the sidecar): V8's heap after two forced
 *   collections (bench/lib/gc-on-signal.ts) and RSS, as differences against the 0-pod run of the same bench (flat
 *   is the goal), and the peak RSS (VmHWM) of the whole run;
 * - the time and CPU it took to count them (the first scan, or for the old design the first list);
 * - the API requests it made to get there, and at rest: the scan runs every 60 s here (quick: 20 s; deployed:
 *   every 5 minutes) and one whole cycle is measured, from the start of a scan to the start of the next;
 *   requests per minute at rest are that cycle's divided by 5. The old design (no interval flag, run with --cli)
 *   is measured over a fixed window (130 s; quick: 70 s).
 *
 * Pods are those of a typical Deployment as the API server stores them (about 6 KiB of JSON: labels, an owner,
 * managedFields of two managers, two containers with env, probes and resources, a projected token volume, a
 * running status); a fifth opted in and injected, 10 opted in without the sidecar (the misses, in a labelled
 * namespace and by annotation), spread over 50 namespaces. The webhook runs with the Deployment's NODE_OPTIONS
 * (--max-semi-space-size=16) and the RBAC of deploy/components/missed-injections (plus get/watch for the old
 * design, to measure it with `--cli`).
 *
 * BENCH_MISSED_SIZES=0,2000,10000 changes the sizes (e.g. for the old design, which a 256 MiB limit kills earlier).
 */
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { TestApiServer, type KubeObject, type RequestRecord } from '../test/support/kube-apiserver/index.ts';
import { httpsRequest } from '../test/support/https.ts';
import { waitFor } from '../test/support/wait.ts';
import type { BenchContext, SectionResult } from './lib/context.ts';
import {
  pinning,
  procCpuMs,
  procMemory,
  spawnNode,
  waitForLine,
  type BenchChild,
  type ProcMemory,
} from './lib/proc.ts';
import { writeJsonKubeconfig } from './lib/reloader.ts';
import { figure, type Figure } from './lib/report.ts';
import { webhookArgs, writeServingCerts } from './lib/servers.ts';

const section = 'missed-injections';
const WEBHOOK_NS = 'config-reloader-injector';
const SA = 'config-reloader-injector';
const USER = `system:serviceaccount:${WEBHOOK_NS}:${SA}`;
const MISSES = 10;
const NAMESPACES = 50;
const METRIC = /^config_reloader_webhook_missed_injections (\d+)$/m;
const MiB = (kib: number): number => kib / 1024;
/** The scan's interval in the bench (deployed: 5 minutes), so that a cycle at rest is measured in minutes. */
const restIntervalS = (ctx: BenchContext): number => (ctx.quick ? 20 : 60);

/** Whether the CLI has the scan (the old watcher had no interval flag). */
function hasScan(ctx: BenchContext): boolean {
  const help = spawnSync(process.execPath, [ctx.cli.cli, 'webhook', '--help'], { encoding: 'utf8' });
  return help.stdout.includes('--missed-injections-interval');
}

function sizes(ctx: BenchContext): number[] {
  const env = process.env.BENCH_MISSED_SIZES;
  if (env) return env.split(',').map((s) => Number(s.trim()));
  return ctx.quick ? [0, 10_000] : [0, 10_000, 50_000];
}

const MANAGED_FIELDS = [
  {
    manager: 'kube-controller-manager',
    operation: 'Update',
    apiVersion: 'v1',
    time: '2025-06-01T10:00:00Z',
    fieldsType: 'FieldsV1',
    fieldsV1: {
      'f:metadata': {
        'f:generateName': {},
        'f:labels': { '.': {}, 'f:app.kubernetes.io/name': {}, 'f:pod-template-hash': {} },
        'f:ownerReferences': { '.': {}, 'k:{"uid":"0d1c2b3a-4f5e-6d7c-8b9a-0f1e2d3c4b5a"}': {} },
      },
      'f:spec': {
        'f:containers': {
          'k:{"name":"app"}': {
            '.': {},
            'f:env': { '.': {}, 'k:{"name":"LOG_LEVEL"}': { '.': {}, 'f:name': {}, 'f:value': {} } },
            'f:image': {},
            'f:imagePullPolicy': {},
            'f:livenessProbe': { '.': {}, 'f:httpGet': { '.': {}, 'f:path': {}, 'f:port': {} } },
            'f:name': {},
            'f:ports': { '.': {}, 'k:{"containerPort":8080,"protocol":"TCP"}': { '.': {} } },
            'f:resources': { '.': {}, 'f:limits': {}, 'f:requests': {} },
            'f:volumeMounts': { '.': {}, 'k:{"mountPath":"/etc/app"}': { '.': {} } },
          },
          'k:{"name":"proxy"}': { '.': {}, 'f:image': {}, 'f:name': {} },
        },
        'f:volumes': { '.': {}, 'k:{"name":"config"}': { '.': {}, 'f:configMap': {}, 'f:name': {} } },
      },
    },
  },
  {
    manager: 'kubelet',
    operation: 'Update',
    apiVersion: 'v1',
    time: '2025-06-01T10:00:07Z',
    fieldsType: 'FieldsV1',
    subresource: 'status',
    fieldsV1: {
      'f:status': {
        'f:conditions': {
          'k:{"type":"ContainersReady"}': {
            '.': {},
            'f:lastTransitionTime': {},
            'f:status': {},
            'f:type': {},
          },
          'k:{"type":"Initialized"}': { '.': {}, 'f:lastTransitionTime': {}, 'f:status': {}, 'f:type': {} },
          'k:{"type":"PodReadyToStartContainers"}': { '.': {}, 'f:lastTransitionTime': {}, 'f:status': {} },
          'k:{"type":"Ready"}': { '.': {}, 'f:lastTransitionTime': {}, 'f:status': {}, 'f:type': {} },
        },
        'f:containerStatuses': {},
        'f:hostIP': {},
        'f:phase': {},
        'f:podIP': {},
        'f:startTime': {},
      },
    },
  },
];

type PodKind = 'plain' | 'injected' | 'missed-annotation' | 'missed-namespace';

/** A running Deployment pod as the API server stores it. */
function benchPod(i: number, namespace: string, kind: PodKind): KubeObject {
  const hash = (i % 997).toString(16).padStart(8, '7');
  const annotations: Record<string, string> = {
    'prometheus.io/scrape': 'true',
    'prometheus.io/port': '8080',
  };
  if (kind === 'injected' || kind === 'missed-annotation') annotations['config-reloader.io/inject'] = 'true';
  if (kind === 'injected') annotations['config-reloader.io/status'] = 'injected';
  const container = (name: string, image: string): Record<string, unknown> => ({
    name,
    image,
    imagePullPolicy: 'IfNotPresent',
    ports: [{ containerPort: 8080, protocol: 'TCP' }],
    env: [
      { name: 'LOG_LEVEL', value: 'info' },
      { name: 'POD_NAME', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.name' } } },
      {
        name: 'POD_NAMESPACE',
        valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } },
      },
    ],
    resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '256Mi' } },
    livenessProbe: {
      httpGet: { path: '/healthz', port: 8080, scheme: 'HTTP' },
      periodSeconds: 10,
      timeoutSeconds: 1,
      successThreshold: 1,
      failureThreshold: 3,
    },
    volumeMounts: [
      { name: 'config', mountPath: '/etc/app', readOnly: true },
      {
        name: 'kube-api-access-x7k2p',
        mountPath: '/var/run/secrets/kubernetes.io/serviceaccount',
        readOnly: true,
      },
    ],
    terminationMessagePath: '/dev/termination-log',
    terminationMessagePolicy: 'File',
  });
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: `web-${hash}-${i.toString(36).padStart(5, '0')}`,
      generateName: `web-${hash}-`,
      namespace,
      labels: { 'app.kubernetes.io/name': 'web', 'pod-template-hash': hash },
      annotations,
      ownerReferences: [
        {
          apiVersion: 'apps/v1',
          kind: 'ReplicaSet',
          name: `web-${hash}`,
          uid: '0d1c2b3a-4f5e-6d7c-8b9a-0f1e2d3c4b5a',
          controller: true,
          blockOwnerDeletion: true,
        },
      ],
      managedFields: MANAGED_FIELDS,
    },
    spec: {
      ...(kind === 'injected'
        ? {
            initContainers: [
              { ...container('config-reloader', 'config-reloader-injector:0.1.0'), restartPolicy: 'Always' },
            ],
          }
        : {}),
      containers: [
        container('app', 'registry.example.com/shop/web:1.4.2'),
        container('proxy', 'envoyproxy/envoy:v1.31.0'),
      ],
      volumes: [
        kind === 'injected'
          ? { name: 'config', emptyDir: {} }
          : { name: 'config', configMap: { name: 'web-config', defaultMode: 420 } },
        {
          name: 'kube-api-access-x7k2p',
          projected: {
            defaultMode: 420,
            sources: [
              { serviceAccountToken: { expirationSeconds: 3607, path: 'token' } },
              { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
              {
                downwardAPI: {
                  items: [
                    { path: 'namespace', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } },
                  ],
                },
              },
            ],
          },
        },
      ],
      restartPolicy: 'Always',
      terminationGracePeriodSeconds: 30,
      dnsPolicy: 'ClusterFirst',
      serviceAccountName: 'default',
      serviceAccount: 'default',
      nodeName: `node-${i % 500}`,
      securityContext: {},
      schedulerName: 'default-scheduler',
      tolerations: [
        {
          key: 'node.kubernetes.io/not-ready',
          operator: 'Exists',
          effect: 'NoExecute',
          tolerationSeconds: 300,
        },
        {
          key: 'node.kubernetes.io/unreachable',
          operator: 'Exists',
          effect: 'NoExecute',
          tolerationSeconds: 300,
        },
      ],
      priority: 0,
      enableServiceLinks: true,
      preemptionPolicy: 'PreemptLowerPriority',
    },
    status: {
      phase: 'Running',
      conditions: [
        'PodReadyToStartContainers',
        'Initialized',
        'Ready',
        'ContainersReady',
        'PodScheduled',
      ].map((type) => ({
        type,
        status: 'True',
        lastProbeTime: null,
        lastTransitionTime: '2025-06-01T10:00:07Z',
      })),
      hostIP: '10.0.3.17',
      podIP: '10.244.3.45',
      podIPs: [{ ip: '10.244.3.45' }],
      startTime: '2025-06-01T10:00:00Z',
      containerStatuses: ['app', 'proxy'].map((name) => ({
        name,
        state: { running: { startedAt: '2025-06-01T10:00:06Z' } },
        lastState: {},
        ready: true,
        restartCount: 0,
        image: 'registry.example.com/shop/web:1.4.2',
        imageID: `registry.example.com/shop/web@sha256:${'ab'.repeat(32)}`,
        containerID: `containerd://${randomUUID().replace(/-/g, '')}${randomUUID().replace(/-/g, '')}`,
        started: true,
      })),
      qosClass: 'Burstable',
    },
  };
}

/** Adds pods until the server holds `total` (misses first, so every size has the same ones). */
function seed(api: TestApiServer, from: number, total: number): void {
  for (let i = from; i < total; i++) {
    const ns =
      i < MISSES / 2 ? 'labelled' : i < MISSES ? 'shop' : `app-${String(i % NAMESPACES).padStart(2, '0')}`;
    const kind: PodKind =
      i < MISSES / 2
        ? 'missed-namespace'
        : i < MISSES
          ? 'missed-annotation'
          : i % 5 === 0
            ? 'injected'
            : 'plain';
    api.create(benchPod(i, ns, kind));
  }
}

interface SizeSample {
  pods: number;
  /** From spawn to the gauge showing the misses. */
  toCountMs: number;
  /** CPU the webhook used from spawn to the count (its start, the first scan or list). */
  toCountCpuMs: number;
  requestsToCount: number;
  heapUsedKiB: number;
  memory: ProcMemory;
  v8: { heapTotalKiB: number; externalKiB: number; arrayBuffersKiB: number; spaces: MemoryReport['spaces'] };
  rest: {
    windowS: number;
    requests: number;
    requestsPerMin: number;
    cpuMsPerMin: number;
    /** Scans in the window (the new design, run with a short --missed-injections-interval). */
    scans: number;
    requestsPerScan?: number;
    cpuMsPerScan?: number;
    requestsPerMinAtDefaultInterval?: number;
    paths: Record<string, number>;
    /** The scans' own log lines in the window (at info level only when the count changed). */
    scanLines: Array<Record<string, unknown>>;
    afterWindow: { heapUsedKiB: number; memory: ProcMemory };
  };
  scan?: Record<string, unknown>;
}

async function metricsValue(url: string, ca: string): Promise<number | undefined> {
  try {
    const res = await httpsRequest(`${url}/metrics`, { ca, timeoutMs: 5_000 });
    const m = METRIC.exec(res.body);
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A preload for the measured webhook (plain JavaScript in a data: URL, like bench/lib/gc-on-signal.ts): on SIGUSR2,
 * two full collections, then one stderr line with process.memoryUsage() and V8's heap spaces (committed and used
 * KiB each), so that what RSS holds beyond the live heap shows (the young generation, external buffers).
 */
const REPORT_SOURCE = `
const v8 = await import('node:v8');
process.on('SIGUSR2', () => {
  globalThis.gc();
  globalThis.gc();
  const spaces = Object.fromEntries(v8.getHeapSpaceStatistics().map((s) => [s.space_name, { committedKiB: Math.round(s.physical_space_size / 1024), usedKiB: Math.round(s.space_used_size / 1024) }]));
  process.stderr.write(JSON.stringify({ benchMemory: process.memoryUsage(), spaces }) + '\\n');
});
`;
const REPORT_NODE_ARGS = [
  '--expose-gc',
  '--import',
  `data:text/javascript,${encodeURIComponent(REPORT_SOURCE)}`,
];

interface MemoryReport {
  benchMemory: NodeJS.MemoryUsage;
  spaces: Record<string, { committedKiB: number; usedKiB: number }>;
}

async function memoryAfterGc(child: BenchChild): Promise<MemoryReport> {
  const before = child.stderr().length;
  child.proc.kill('SIGUSR2');
  const line = await waitFor(
    () => /\{"benchMemory":.*\}\n/.exec(child.stderr().slice(before))?.[0],
    'the memory report',
    10_000,
  );
  return JSON.parse(line) as MemoryReport;
}

const pathKey = (method: string, path: string): string =>
  `${method} ${path.replace(/\/namespaces\/[^/]+\//, '/namespaces/NS/').replace(/\/leases\/.+$/, '/leases/NAME')}`;

async function measure(
  ctx: BenchContext,
  api: TestApiServer,
  kubeconfig: string,
  certs: { certFile: string; keyFile: string; ca: string },
  pods: number,
  scanInterval: boolean,
): Promise<SizeSample> {
  const firstRequest = api.requests.length;
  const child = spawnNode(
    ctx.cli.cli,
    webhookArgs(certs, [
      '--watch-missed-injections',
      ...(scanInterval ? ['--missed-injections-interval', `${restIntervalS(ctx)}s`] : []),
      '--kubeconfig',
      kubeconfig,
    ]),
    {
      stdoutFile: join(ctx.tmp, `webhook-missed-${pods}.log`),
      cpu: pinning(0, ctx.cpus),
      nodeArgs: ['--max-semi-space-size=16', ...REPORT_NODE_ARGS],
      env: { POD_NAMESPACE: WEBHOOK_NS, POD_NAME: `bench-${pods}`, KUBECONFIG: '' },
    },
  );
  const t0 = performance.now();
  try {
    const url = String((await waitForLine(child, (l) => l.msg === 'webhook listening', 60_000)).url);
    await waitFor(
      async () => (await metricsValue(url, certs.ca)) === MISSES,
      `the webhook to count ${MISSES} misses`,
      600_000,
      200,
    );
    const toCountMs = performance.now() - t0;
    const toCountCpuMs = procCpuMs(child.pid);
    const requestsToCount = api.requests.slice(firstRequest).filter((r) => r.user === USER).length;
    const scanLine = child
      .stdout()
      .split('\n')
      .filter((l) => l.includes('missed-injection scan done'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)[0];
    await sleep(ctx.quick ? 500 : 2_000);
    const report = await memoryAfterGc(child);
    const heapUsedKiB = report.benchMemory.heapUsed / 1024;
    await sleep(300);
    const memory = procMemory(child.pid);
    // At rest: what it asks of the API server, and its CPU, with nothing changing. The new design runs its scan
    // every 60 s here (quick: 20 s) and is measured over one whole cycle, from the start of a scan (its first page
    // of pods, without a continue token) to the start of the next: per minute at the deployed interval (5
    // minutes) is that cycle's requests divided by 5. The old design is measured over a fixed window.
    const fromRequest = api.requests.length;
    const fromLine = child.stdout().length;
    const isScanStart = (r: RequestRecord): boolean =>
      r.user === USER && r.path === '/api/v1/pods' && !new URLSearchParams(r.query).has('continue');
    let windowMs: number;
    let calls: RequestRecord[];
    let cpuMs: number;
    let scans = 0;
    if (scanInterval) {
      const starts: Array<{ index: number; cpuMs: number; at: number }> = [];
      const onRequest = (r: RequestRecord): void => {
        if (isScanStart(r) && starts.length < 2)
          starts.push({ index: api.requests.length - 1, cpuMs: procCpuMs(child.pid), at: performance.now() });
      };
      api.events.on('request', onRequest);
      try {
        await waitFor(
          () => starts.length === 2,
          'two scans at rest',
          6 * restIntervalS(ctx) * 1000 + 300_000,
          100,
        );
      } finally {
        api.events.off('request', onRequest);
      }
      const [first, second] = starts as [(typeof starts)[0], (typeof starts)[0]];
      calls = api.requests.slice(first.index, second.index).filter((r) => r.user === USER);
      cpuMs = second.cpuMs - first.cpuMs;
      windowMs = second.at - first.at;
      scans = 1;
    } else {
      windowMs = ctx.quick ? 70_000 : 130_000;
      const cpu0 = procCpuMs(child.pid);
      await sleep(windowMs);
      calls = api.requests.slice(fromRequest).filter((r) => r.user === USER);
      cpuMs = procCpuMs(child.pid) - cpu0;
    }
    const scanLines = child
      .stdout()
      .slice(fromLine)
      .split('\n')
      .filter((l) => l.includes('missed-injection scan done'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const paths: Record<string, number> = {};
    for (const r of calls) paths[pathKey(r.method, r.path)] = (paths[pathKey(r.method, r.path)] ?? 0) + 1;
    const after = await memoryAfterGc(child);
    await sleep(300);
    return {
      pods,
      toCountMs,
      toCountCpuMs,
      requestsToCount,
      heapUsedKiB,
      memory,
      v8: {
        heapTotalKiB: Math.round(report.benchMemory.heapTotal / 1024),
        externalKiB: Math.round(report.benchMemory.external / 1024),
        arrayBuffersKiB: Math.round(report.benchMemory.arrayBuffers / 1024),
        spaces: report.spaces,
      },
      rest: {
        windowS: Math.round(windowMs / 100) / 10,
        requests: calls.length,
        requestsPerMin: (calls.length * 60_000) / windowMs,
        cpuMsPerMin: (cpuMs * 60_000) / windowMs,
        scans,
        ...(scans > 0
          ? {
              requestsPerScan: calls.length / scans,
              cpuMsPerScan: cpuMs / scans,
              requestsPerMinAtDefaultInterval: calls.length / scans / 5,
            }
          : {}),
        paths,
        scanLines,
        afterWindow: { heapUsedKiB: after.benchMemory.heapUsed / 1024, memory: procMemory(child.pid) },
      },
      ...(scanLine ? { scan: scanLine } : {}),
    };
  } finally {
    await child.stop();
  }
}

export async function runMissedInjections(ctx: BenchContext): Promise<SectionResult> {
  const api = await TestApiServer.start({ bookmarkIntervalMs: 60_000 });
  try {
    // deploy/components/missed-injections' RBAC, and what the old watcher needed on top (get, watch).
    const token = api.addServiceAccount(WEBHOOK_NS, SA, [
      { verbs: ['list', 'get', 'watch'], resource: 'pods' },
      { verbs: ['list', 'get', 'watch'], resource: 'namespaces' },
      { verbs: ['create'], resource: 'events' },
      {
        verbs: ['get', 'update'],
        resource: 'leases',
        group: 'coordination.k8s.io',
        namespace: WEBHOOK_NS,
        names: ['config-reloader-injector-missed-injections'],
      },
      { verbs: ['create'], resource: 'leases', group: 'coordination.k8s.io', namespace: WEBHOOK_NS },
    ]);
    const kubeconfig = join(ctx.tmp, 'kubeconfig-missed.json');
    writeJsonKubeconfig(kubeconfig, { server: api.url, caCert: api.caCert, token, namespace: WEBHOOK_NS });
    const certs = await writeServingCerts(ctx.tmp);
    api.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: WEBHOOK_NS } });
    api.create({
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: 'labelled', labels: { 'config-reloader.io/injection': 'enabled' } },
    });

    const samples: SizeSample[] = [];
    const scanInterval = hasScan(ctx);
    let seeded = 0;
    for (const pods of sizes(ctx)) {
      const total = Math.max(pods, MISSES);
      ctx.log(`missed-injections: seeding ${total - seeded} pods`);
      seed(api, seeded, total);
      seeded = Math.max(seeded, total);
      // The 0-pod run has the misses only: 10 pods.
      ctx.log(`missed-injections: the webhook with ${seeded} pods`);
      samples.push(await measure(ctx, api, kubeconfig, certs, seeded, scanInterval));
      // Every run starts without the previous one's Events, and the Lease free.
      for (const e of api.list('events')) api.delete('events', e.metadata.namespace, e.metadata.name);
      for (const l of safeList(api, 'leases')) api.delete('leases', l.metadata.namespace, l.metadata.name);
    }

    const base = samples[0] as SizeSample;
    const figures: Figure[] = [];
    for (const s of samples.slice(1)) {
      const k = s.pods >= 1000 ? `${Math.round(s.pods / 1000)}k` : String(s.pods);
      figures.push(
        figure({
          section,
          id: `${section}.heap.${k}`,
          label: `webhook heap after GC, ${s.pods.toLocaleString('en')} pods vs ${base.pods}`,
          value: MiB(s.heapUsedKiB - base.heapUsedKiB),
          unit: 'MiB',
          goal: { op: '<=', value: 2 },
          note: `${MiB(s.heapUsedKiB).toFixed(1)} vs ${MiB(base.heapUsedKiB).toFixed(1)} MiB`,
        }),
        figure({
          section,
          id: `${section}.rss.${k}`,
          label: `webhook RSS, ${s.pods.toLocaleString('en')} pods vs ${base.pods}`,
          value: MiB(s.memory.vmRssKiB - base.memory.vmRssKiB),
          unit: 'MiB',
          goal: { op: '<=', value: 16 },
          note: `${MiB(s.memory.vmRssKiB).toFixed(1)} vs ${MiB(base.memory.vmRssKiB).toFixed(1)} MiB; peak ${MiB(s.memory.vmHwmKiB).toFixed(1)} MiB; counted in ${(s.toCountMs / 1000).toFixed(1)} s, ${Math.round(s.toCountCpuMs)} ms CPU, ${s.requestsToCount} requests`,
        }),
      );
    }
    const last = samples[samples.length - 1] as SizeSample;
    if (last.scan && typeof last.scan.maxEventLoopDelayMs === 'number')
      figures.push(
        figure({
          section,
          id: `${section}.scan.eventLoop`,
          label: `scan of ${last.pods.toLocaleString('en')} pods: longest event-loop delay`,
          value: last.scan.maxEventLoopDelayMs,
          unit: 'ms',
          note: `${String(last.scan.pages)} pages in ${(Number(last.scan.durationMs) / 1000).toFixed(1)} s (paced); the loop also answers admission`,
        }),
      );
    const perMin = last.rest.requestsPerMinAtDefaultInterval ?? last.rest.requestsPerMin;
    figures.push(
      figure({
        section,
        id: `${section}.rest.requests`,
        label: `API requests per minute at rest, ${last.pods.toLocaleString('en')} pods`,
        value: perMin,
        unit: '/min',
        note:
          last.rest.requestsPerScan !== undefined
            ? `${last.rest.requestsPerScan.toFixed(0)} per scan (a cycle of ${last.rest.windowS} s at a ${restIntervalS(ctx)} s interval), one scan per 5 min as deployed; ${Math.round(last.rest.cpuMsPerScan ?? 0)} ms CPU per scan; RSS ${MiB(last.rest.afterWindow.memory.vmRssKiB).toFixed(1)} MiB after it`
            : `${last.rest.requests} in ${last.rest.windowS} s; ${Math.round(last.rest.cpuMsPerMin)} ms CPU/min`,
      }),
    );
    return { figures, details: { misses: MISSES, samples } };
  } finally {
    await api.close();
  }
}

function safeList(api: TestApiServer, resource: string): KubeObject[] {
  try {
    return api.list(resource);
  } catch {
    return [];
  }
}
