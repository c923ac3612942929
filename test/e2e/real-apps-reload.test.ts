import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { RealApp } from '../support/apps.ts';
import { ruleNames, scrapeJobs, startApp } from '../support/apps.ts';
import type { V1Pod } from '@kubernetes/client-node';
import { TARGET_MARKER_VOLUME } from '../../src/shared/process-marker.ts';
import { freePort } from '../support/control-plane/index.ts';
import type { Kube } from './kube.ts';
import { connect, createNamespace, createPod, waitFor } from './kube.ts';
import type { PodSandbox, RunningContainer } from './kubelet.ts';
import { preparePod } from './kubelet.ts';
import type { AppPodSpec, RunningAppPod } from './real-apps-pod.ts';
import {
  podRbac,
  REAL_APPS_NAMESPACE_LABELS,
  reloaderMetric,
  reloaderReady,
  RESTRICTED_CONTAINER,
  RESTRICTED_POD,
  runAppPod,
  setConfig,
  SIDECAR,
} from './real-apps-pod.ts';
import type { TestCluster } from './test-cluster.ts';
import { startTestCluster } from './test-cluster.ts';

/**
 * Issue 14, "Proven against the real apps": pods annotated with a preset, injected by the webhook through the real
 * kube-apiserver, run from the stored pod with the real vmagent, vmalert and Prometheus (test/apps) as their app.
 * A Secret update reaches vmagent's scrape config and a ConfigMap update vmalert's rules (the two cases the
 * VictoriaMetrics operator documents), a ConfigMap update Prometheus' rules; each by HTTP and by SIGHUP. The
 * reloader confirms from the app's own metrics that it applied the change, reports a broken config rejected
 * while the app keeps running the old one, and does not retry it until the next change.
 */

const NS = 'real-apps';
/** Signal targets are found among all of this machine's processes by their marker: a container name no other test uses. */
const unique = process.pid.toString(36);

interface Scenario {
  /** The config with one marker (a scrape job or a rule) the app's API then shows. */
  config(marker: string): string;
  /** A config the app refuses. */
  broken: string;
  /** The markers the app runs, from its API. */
  running(app: RealApp): Promise<string[]>;
  /** Markers are the app's names for them: a job name, an alert name or a recorded series. */
  marker(n: string): string;
}

const vmagent: Scenario = {
  config: (job) =>
    `global:\n  scrape_interval: 1h\nscrape_configs:\n  - job_name: ${job}\n    static_configs:\n      - targets: ["127.0.0.1:9"]\n`,
  broken: 'scrape_configs:\n  - job_name: broken\n    no_such_field: 1\n',
  running: scrapeJobs,
  marker: (n) => `job-${n}`,
};
const vmalert: Scenario = {
  config: (alert) =>
    `groups:\n  - name: e2e\n    interval: 1m\n    rules:\n      - alert: ${alert}\n        expr: up == 0\n`,
  broken: 'groups:\n  - name: e2e\n    rules:\n      - alert: Broken\n        expr: up ==\n',
  running: ruleNames,
  marker: (n) => `Alert${n}`,
};
const prometheus: Scenario = {
  config: (series) =>
    `groups:\n  - name: e2e\n    rules:\n      - record: ${series}\n        expr: sum(up)\n`,
  broken: 'groups:\n  - name: e2e\n    rules:\n      - record: e2e:broken\n        expr: sum(up\n',
  running: ruleNames,
  marker: (n) => `e2e:${n}`,
};

let cluster: TestCluster;
let kube: Kube;
/** vmalert's datasource. */
let datasource: RealApp;
const dir = mkdtempSync(join(tmpdir(), 'real-apps-reload-'));

before(async () => {
  cluster = await startTestCluster();
  kube = connect(cluster.kubeconfig);
  await cluster.install('deploy/overlays/self-managed');
  await createNamespace(kube, NS, REAL_APPS_NAMESPACE_LABELS);
  const rules = join(dir, 'datasource-rules.yml');
  writeFileSync(rules, 'groups: []\n');
  datasource = await startApp('prometheus', { file: rules });
});
after(async () => {
  await datasource?.stop();
  await cluster?.close();
  rmSync(dir, { recursive: true, force: true });
});

void test('the namespace enforces PodSecurity restricted, so every injected pod below passed it on the API server', async () => {
  // A pod that breaks "restricted" (no runAsNonRoot, no seccomp profile) is refused here.
  await assert.rejects(
    kube.core.createNamespacedPod({
      namespace: NS,
      dryRun: 'All',
      body: { metadata: { name: 'not-restricted' }, spec: { containers: [{ name: 'c', image: 'busybox' }] } },
    }),
    (err: { code?: number; body?: unknown }) =>
      err.code === 403 && /violates PodSecurity \W*restricted/.test(String(err.body)),
  );
});

/**
 * The life of one pod: started on config one; config two applied; a broken config rejected and not retried while
 * the app keeps two; config three applied.
 */
function reloadsOf(
  title: string,
  spec: () => AppPodSpec,
  scenario: Scenario,
  opts: { events?: boolean; rejectedStatus?: number; unchanged?: boolean } = {},
) {
  void describe(title, () => {
    let run: RunningAppPod;
    let s: AppPodSpec;
    const source = (): string => `${s.object.kind}/${NS}/${s.object.name}`;
    const confirmations = (result: string): Promise<number> =>
      run.reloaderMetric('config_reloader_confirmations_total', `result="${result}"`);
    const runs = async (n: string): Promise<void> => {
      await until(
        `${s.app} running ${scenario.marker(n)}`,
        async () => (await scenario.running(run.app)).join() === scenario.marker(n),
      );
    };
    const logged = (msg: RegExp) => run.reloader.logs().filter((l) => msg.test(String(l.msg)));
    /** What a failed wait shows: the reloader's last log lines and the app's. */
    const state = (): string =>
      `\nreloader:\n${run.reloader
        .logs()
        .slice(-8)
        .map((l) => JSON.stringify(l))
        .join('\n')}\n${run.reloader.stderr().slice(-1000)}\n${s.app}:\n${run.app.logTail(8)}`;
    const until = async (what: string, check: () => Promise<boolean>): Promise<void> => {
      try {
        await waitFor(what, check, 30_000);
      } catch (err) {
        throw new Error(`${(err as Error).message}${state()}`, { cause: err });
      }
    };

    before(async () => {
      s = spec();
      await setConfig(kube, s, scenario.config(scenario.marker('one')));
      run = await runAppPod(cluster, kube, s);
    });
    after(async () => run?.stop());

    void test('the app starts on the config the reloader synced first; the source counts as applied', async () => {
      const signal = s.annotations['config-reloader.io/reload-signal'];
      const starting = run.reloader.logs().find((l) => l.msg === 'starting');
      assert.equal(starting?.delivery, signal ? 'signal' : 'http', 'the delivery the annotations asked for');
      // vmagent serves /health a few ms before its scrape jobs are in place.
      await runs('one');
      assert.equal(await run.reloaderMetric('config_reloader_source_applied', `source="${source()}"`), 1);
    });

    void test('an update through the API reaches the app, and the reloader confirms it applied', async () => {
      await setConfig(kube, s, scenario.config(scenario.marker('two')));
      await runs('two');
      await until('confirmation applied', async () => (await confirmations('applied')) === 1);
      assert.equal(await confirmations('rejected'), 0);
      assert.equal(await run.reloaderMetric('config_reloader_source_applied', `source="${source()}"`), 1);
      assert.equal(logged(/^the app applied the new config/).length, 1);
    });

    void test('a broken config: reported rejected, the app keeps running the old one, and it is not retried', async () => {
      await setConfig(kube, s, scenario.broken);
      await until('confirmation rejected', async () => (await confirmations('rejected')) === 1);
      assert.deepEqual(await scenario.running(run.app), [scenario.marker('two')]);
      assert.equal(await run.reloaderMetric('config_reloader_source_applied', `source="${source()}"`), 0);
      const line = logged(/^the app rejected the new config/);
      assert.equal(line.length, 1, JSON.stringify(run.reloader.logs().slice(-5)));
      assert.equal(line[0]?.status, opts.rejectedStatus, "the app's HTTP answer, when it gave one");
      const reloads = await run.reloaderMetric('config_reloader_reloads_total');
      // Long enough for several retries of the reloader's backoff (250 ms, doubling), were there any.
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      assert.equal(await run.reloaderMetric('config_reloader_reloads_total'), reloads, 'no reload since');
      assert.equal(await confirmations('rejected'), 1);
      assert.deepEqual(await scenario.running(run.app), [scenario.marker('two')]);
    });

    void test('the next change is delivered and applied', async () => {
      await setConfig(kube, s, scenario.config(scenario.marker('three')));
      await runs('three');
      await waitFor(
        'second confirmation applied',
        async () => (await confirmations('applied')) === 2,
        30_000,
      );
      assert.equal(await run.reloaderMetric('config_reloader_source_applied', `source="${source()}"`), 1);
    });

    if (opts.unchanged)
      void test('an edit the app does not use (a comment): reloaded, the app keeps its timestamp, reported unchanged and counted applied', async () => {
        await setConfig(
          kube,
          s,
          `${scenario.config(scenario.marker('three'))}# a comment the app does not use\n`,
        );
        // At the pod's confirm-timeout (5 s) after the reload, success 1 and the same timestamp mean: nothing to change.
        await until('confirmation unchanged', async () => (await confirmations('unchanged')) === 1);
        assert.equal(logged(/^the app found nothing to change in config/).length, 1);
        assert.equal(await confirmations('unconfirmed'), 0);
        assert.equal(await run.reloaderMetric('config_reloader_source_applied', `source="${source()}"`), 1);
        assert.deepEqual(await scenario.running(run.app), [scenario.marker('three')]);
      });

    if (opts.events)
      void test("the verdicts are Events on the reloader's pod: ConfigApplied and ConfigRejected", async () => {
        const events = await waitFor(
          'the Events',
          async () => {
            const list = await kube.core.listNamespacedEvent({
              namespace: NS,
              fieldSelector: `involvedObject.name=${s.name}`,
            });
            const reasons = list.items.map((e) => e.reason);
            return reasons.includes('ConfigApplied') && reasons.includes('ConfigRejected')
              ? list.items
              : undefined;
          },
          10_000,
        );
        const rejected = events.find((e) => e.reason === 'ConfigRejected');
        assert.equal(rejected?.type, 'Warning');
        assert.equal(rejected?.involvedObject.uid, run.pod.metadata?.uid);
        assert.equal(events.find((e) => e.reason === 'ConfigApplied')?.type, 'Normal');
      });
  });
}

const vmagentPod = (
  name: string,
  annotations: Record<string, string>,
  container = 'vmagent',
): AppPodSpec => ({
  name,
  namespace: NS,
  app: 'vmagent',
  container,
  podPort: 8429,
  object: { kind: 'secret', name: `${name}-config` },
  mountPath: '/etc/vmagent',
  key: 'scrape.yml',
  args: ['-promscrape.config=/etc/vmagent/scrape.yml'],
  annotations: { 'config-reloader.io/preset': 'vmagent', ...annotations },
});
const vmalertPod = (
  name: string,
  annotations: Record<string, string>,
  container = 'vmalert',
): AppPodSpec => ({
  name,
  namespace: NS,
  app: 'vmalert',
  container,
  podPort: 8880,
  object: { kind: 'configmap', name: `${name}-rules` },
  mountPath: '/etc/vmalert',
  key: 'rules.yml',
  args: ['-rule=/etc/vmalert/rules.yml', '-datasource.url=http://prometheus:9090', '-notifier.blackhole'],
  annotations: { 'config-reloader.io/preset': 'vmalert', ...annotations },
  datasourceUrl: datasource.url,
});
const prometheusPod = (
  name: string,
  annotations: Record<string, string>,
  container = 'prometheus',
): AppPodSpec => ({
  name,
  namespace: NS,
  app: 'prometheus',
  container,
  podPort: 9090,
  object: { kind: 'configmap', name: `${name}-rules` },
  mountPath: '/etc/prometheus/rules',
  key: 'rules.yml',
  // The harness runs Prometheus with its own prometheus.yml naming the synced rule file (test/support/apps.ts).
  args: ['--config.file=/etc/prometheus/prometheus.yml', '--web.enable-lifecycle'],
  annotations: { 'config-reloader.io/preset': 'prometheus', ...annotations },
});
const SIGHUP = { 'config-reloader.io/reload-signal': 'SIGHUP' };
/** The 'unchanged' verdict comes at the confirm timeout: 5 s instead of the default 30 s. */
const SHORT_TIMEOUT = { 'config-reloader.io/confirm-timeout': '5s' };

reloadsOf(
  'real vmagent, preset vmagent, HTTP /-/reload: a Secret update reaches its scrape config (with Events)',
  () => vmagentPod('vmagent-http', { 'config-reloader.io/events': 'true', ...SHORT_TIMEOUT }),
  vmagent,
  { events: true, unchanged: true },
);
reloadsOf(
  'real vmagent, preset vmagent, SIGHUP: a Secret update reaches its scrape config',
  () => vmagentPod('vmagent-sighup', SIGHUP, `vmagent-${unique}`),
  vmagent,
);
reloadsOf(
  'real vmalert, preset vmalert, HTTP /-/reload: a ConfigMap update reaches its rules',
  () => vmalertPod('vmalert-http', SHORT_TIMEOUT),
  vmalert,
  { unchanged: true },
);
reloadsOf(
  'real vmalert, preset vmalert, SIGHUP: a ConfigMap update reaches its rules',
  () => vmalertPod('vmalert-sighup', SIGHUP, `vmalert-${unique}`),
  vmalert,
);
reloadsOf(
  'real Prometheus, preset prometheus, HTTP /-/reload (synchronous, 500 on a bad rule): a ConfigMap update reaches its rules',
  () => prometheusPod('prometheus-http', {}),
  prometheus,
  { rejectedStatus: 500 },
);
reloadsOf(
  'real Prometheus, preset prometheus, SIGHUP: a ConfigMap update reaches its rules',
  () => prometheusPod('prometheus-sighup', SIGHUP, `prometheus-${unique}`),
  prometheus,
);

/**
 * config-reloader.io/restart-on-env-change: vmagent reads a flag from its environment (-envflag.enable), the env
 * var from a Secret. A change of the Secret makes the reloader SIGTERM vmagent's main process (found by the
 * marker mount); the kubelet, played here, starts the container again with its environment resolved anew.
 */
void describe('real vmagent, restart-on-env-change: a Secret it reads through env is a restart with the new value', () => {
  const container = `vmagent-env-${unique}`;
  const secret = 'vmagent-env';
  const FLAG = 'remoteWrite.flushInterval';
  let pod: V1Pod;
  let sandbox: PodSandbox;
  let reloader: RunningContainer;
  let reloaderUrl: string;
  let port: number;
  let marker: string;
  let app: RealApp | undefined;

  /** What vmagent says it runs with: its flags are on /metrics as flag{name=..., value=...}. */
  const flagValue = async (): Promise<string | undefined> => {
    const page = await (app as RealApp).metricsPage();
    return new RegExp(
      `^flag\\{name="${FLAG.replace('.', '\\.')}", value="([^"]*)", is_set="true"\\}`,
      'm',
    ).exec(page)?.[1];
  };
  /** The kubelet's part: the container starts again, its env read from the API as it is now. */
  const startContainer = async (): Promise<void> => {
    app = await startApp('vmagent', {
      port,
      env: await sandbox.envFromApi(container),
      mountPoint: marker,
      args: ['-envflag.enable'],
    });
  };
  const setFlag = (value: string) =>
    kube.core.replaceNamespacedSecret({
      namespace: NS,
      name: secret,
      body: { metadata: { name: secret }, stringData: { flushInterval: value } },
    });

  before(async () => {
    await kube.core.createNamespacedSecret({
      namespace: NS,
      body: { metadata: { name: secret }, stringData: { flushInterval: '2s' } },
    });
    await kube.core.createNamespacedServiceAccount({
      namespace: NS,
      body: { metadata: { name: 'vmagent-env' } },
    });
    pod = await createPod(kube, NS, {
      metadata: {
        name: 'vmagent-env',
        annotations: {
          'config-reloader.io/inject': 'true',
          'config-reloader.io/restart-on-env-change': container,
          'config-reloader.io/events': 'true',
        },
      },
      spec: {
        serviceAccountName: 'vmagent-env',
        securityContext: RESTRICTED_POD,
        containers: [
          {
            name: container,
            image: 'example.com/vmagent:e2e',
            args: ['-envflag.enable'],
            securityContext: RESTRICTED_CONTAINER,
            env: [
              {
                name: 'remoteWrite_flushInterval',
                valueFrom: { secretKeyRef: { name: secret, key: 'flushInterval' } },
              },
            ],
          },
        ],
      },
    });
    assert.equal(pod.metadata?.annotations?.['config-reloader.io/status'], 'injected');
    const token = await cluster.serviceAccountToken(
      NS,
      'vmagent-env',
      podRbac(NS, 'vmagent-env', [{ kind: 'secret', name: secret }]),
      { name: pod.metadata?.name as string, uid: pod.metadata?.uid as string },
    );
    sandbox = await preparePod(kube, pod, token);
    reloader = sandbox.start(SIDECAR);
    reloaderUrl = await reloaderReady(pod, reloader);
    port = await freePort();
    marker = pod.spec?.containers?.[0]?.volumeMounts?.find((m) => m.name === TARGET_MARKER_VOLUME)
      ?.mountPath as string;
    assert.ok(marker, 'the webhook mounted the marker volume into the target');
    await startContainer();
  });
  after(async () => {
    await app?.stop();
    await reloader?.stop();
    await sandbox?.close();
  });

  void test('the app runs with the value from the Secret', async () => {
    assert.equal(await flagValue(), '2s');
  });

  for (const [n, value] of [
    [1, '3s'],
    [2, '4s'],
  ] as const)
    void test(`change ${n}: SIGTERM to the container's current main process, and it comes back with ${value}`, async () => {
      const running = app as RealApp;
      await setFlag(value);
      const ended = await running.exited();
      assert.deepEqual(ended, { code: 0, signal: null }, 'vmagent shut down on SIGTERM');
      const line = await reloader.waitForLog(
        (l) => String(l.msg).startsWith('SIGTERM sent to the main process') && l.pid === running.pid,
      );
      assert.ok(line);
      await running.stop();
      await startContainer();
      assert.equal(await flagValue(), value);
      assert.equal(await reloaderMetric(reloaderUrl, 'config_reloader_container_restarts_total'), n);
    });

  void test("a ContainerRestarted Event on the reloader's pod", async () => {
    const list = await waitFor('the Event', async () => {
      const l = await kube.core.listNamespacedEvent({
        namespace: NS,
        fieldSelector: `involvedObject.name=${pod.metadata?.name}`,
      });
      return l.items.some((e) => e.reason === 'ContainerRestarted') ? l.items : undefined;
    });
    assert.equal(list.find((e) => e.reason === 'ContainerRestarted')?.type, 'Normal');
  });
});
