/**
 * Missed injections on the real control plane (kube-apiserver v1.37.2, test/support/control-plane), with
 * deploy/overlays/self-managed installed (its MutatingWebhookConfiguration calls https://127.0.0.1 only) and the
 * webhook down, so that failurePolicy Ignore admits opted-in pods without the sidecar:
 *
 * - at admission, the base's ValidatingAdmissionPolicy: kubectl prints its warning, which names the fix, for an
 *   opted-in pod (by annotation or by namespace label) and for no other; with the webhook up there is none;
 * - its CEL against the webhook's own decision (missedInjection) on every real-world pod of test/fixtures, as the
 *   real API server evaluates it (dry runs, opted in by annotation and by namespace label);
 * - afterwards, the slow scan: two webhook processes with --watch-missed-injections and the overlay's RBAC (a
 *   TokenRequest token of its ServiceAccount): one holds the Lease and scans, both report the count, and each miss
 *   gets one ConfigReloaderNotInjected Event.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, stringify } from 'yaml';
import { DEFAULT_INJECTOR_CONFIG } from '../../src/injection/config.ts';
import { LEASE_NAME, missedInjection } from '../../src/webhook/missed-injections.ts';
import { startCli, type CliChild } from '../support/cli.ts';
import { kubeconfigYaml } from '../support/control-plane/index.ts';
import { httpsRequest } from '../support/https.ts';
import type { Kube } from './kube.ts';
import { appPod, connect, createNamespace, waitFor } from './kube.ts';
import type { TestCluster } from './test-cluster.ts';
import { startTestCluster } from './test-cluster.ts';

const NS = 'config-reloader-injector';
const LABELLED = { 'config-reloader.io/injection': 'enabled' };
const POLICY = 'config-reloader-injector-missed-injection';
/** What kubectl prints for a warning of the policy; the message is the policy's messageExpression. */
const WARNING = new RegExp(
  `^Warning: Validation failed for ValidatingAdmissionPolicy '${POLICY}' with binding '${POLICY}': (.*)$`,
  'gm',
);

type Obj = Record<string, unknown>;

void describe('e2e (real kube-apiserver): missed injections, at admission (ValidatingAdmissionPolicy) and by the scan', () => {
  let cluster: TestCluster;
  let kube: Kube;
  let dir: string;
  const processes: CliChild[] = [];

  /** `kubectl create` of these objects (one YAML stream) in `namespace`; kubectl prints warnings on stderr. */
  const create = async (
    namespace: string,
    objects: object[],
    extra: string[] = [],
  ): Promise<{ code: number; stdout: string; stderr: string; warnings: string[] }> => {
    const file = join(dir, `pods-${Date.now()}-${Math.random().toString(36).slice(2)}.yaml`);
    await writeFile(file, objects.map((o) => stringify(o)).join('---\n'));
    const result = await cluster.kubectl(['create', '-n', namespace, '-f', file, ...extra]);
    return { ...result, warnings: [...result.stderr.matchAll(WARNING)].map((m) => m[1] as string) };
  };

  before(async () => {
    cluster = await startTestCluster();
    kube = connect(cluster.kubeconfig);
    dir = await mkdtemp(join(tmpdir(), 'e2e-missed-'));
    await cluster.install('deploy/overlays/self-managed');
    await createNamespace(kube, 'shop');
    await createNamespace(kube, 'labelled', LABELLED);
    // The webhook down: the API server's calls are refused, failurePolicy Ignore admits the pods unchanged.
    await cluster.webhook.stop();
    // The API server loads policies asynchronously: wait until a dry run warns.
    await waitFor(
      'the ValidatingAdmissionPolicy in force',
      async () =>
        (
          await create(
            'shop',
            [appPod('probe', { 'config-reloader.io/inject': 'true' })],
            ['--dry-run=server'],
          )
        ).warnings.length > 0,
      60_000,
    );
  });

  after(async () => {
    for (const p of processes) {
      if (p.child.exitCode === null && p.child.signalCode === null) {
        p.child.kill('SIGTERM');
        const timer = setTimeout(() => p.child.kill('SIGKILL'), 10_000);
        await p.exited;
        clearTimeout(timer);
      }
    }
    await cluster?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  void test('kubectl warns, naming the fix, when an opted-in pod is admitted without the sidecar; no other pod warns', async () => {
    const byAnnotation = await create('shop', [
      appPod('while-down', { 'config-reloader.io/inject': 'true' }),
    ]);
    assert.equal(byAnnotation.code, 0, byAnnotation.stderr);
    assert.equal(byAnnotation.stdout.trim(), 'pod/while-down created');
    assert.deepEqual(byAnnotation.warnings, [
      'pod shop/while-down opted in to config-reloader injection (annotation config-reloader.io/inject: "true") ' +
        'but was admitted without the sidecar (no config-reloader.io/status: injected): the webhook did not ' +
        'answer, so its Secrets/ConfigMaps will not be kept current. Fix: get the webhook running ' +
        '(kubectl -n config-reloader-injector get pods), then recreate the pod: kubectl rollout restart its ' +
        'Deployment/StatefulSet/DaemonSet, or delete it and create it again',
    ]);
    const byLabel = await create('labelled', [appPod('labelled-while-down')]);
    assert.equal(byLabel.code, 0, byLabel.stderr);
    assert.equal(byLabel.warnings.length, 1);
    assert.match(
      byLabel.warnings[0] as string,
      /^pod labelled\/labelled-while-down opted in to config-reloader injection \(namespace label config-reloader\.io\/injection=enabled\)/,
    );
    // Not opted in, opted out, nothing to sync, and the namespaces the webhook never sees: no warning.
    const quiet = [
      await create('shop', [appPod('plain')]),
      await create('labelled', [appPod('opted-out', { 'config-reloader.io/inject': 'false' })]),
      await create('shop', [
        {
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name: 'nothing-to-sync', annotations: { 'config-reloader.io/inject': 'true' } },
          spec: { containers: [{ name: 'app', image: 'example.com/shop:1.4.2' }] },
        },
      ]),
      await create(
        'kube-public',
        [appPod('system', { 'config-reloader.io/inject': 'true' })],
        ['--dry-run=server'],
      ),
    ];
    for (const r of quiet) {
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(r.warnings, [], r.stdout);
    }
    // The webhook back: the pod is injected, and the policy has nothing to say.
    await cluster.webhook.start();
    try {
      const injected = await waitFor('the webhook to inject again', async () => {
        const r = await create(
          'shop',
          [appPod('injected', { 'config-reloader.io/inject': 'true' })],
          ['--dry-run=server', '-o', 'json'],
        );
        const pod = JSON.parse(r.stdout || '{}') as { metadata?: { annotations?: Record<string, string> } };
        return pod.metadata?.annotations?.['config-reloader.io/status'] === 'injected' ? r : undefined;
      });
      assert.deepEqual(injected.warnings, []);
    } finally {
      await cluster.webhook.stop();
    }
  });

  void test("the real API server's verdict agrees with the webhook's own (missedInjection) on every real-world pod of test/fixtures", async () => {
    const fixtures = fileURLToPath(new URL('../fixtures/real-world/pods/', import.meta.url));
    const files = readdirSync(fixtures).filter((f) => f.endsWith('.json'));
    const pods = files.map((f, i) => {
      const pod = JSON.parse(readFileSync(join(fixtures, f), 'utf8')) as {
        metadata: Obj;
        spec: Obj & { serviceAccountName?: string };
      };
      // One name per fixture; the default ServiceAccount (the fixtures' own do not exist here).
      pod.metadata = { ...pod.metadata, name: `f${String(i).padStart(3, '0')}` };
      delete pod.metadata.generateName;
      delete pod.metadata.namespace;
      delete pod.spec.serviceAccountName;
      delete (pod.spec as Obj).serviceAccount;
      return { file: f, pod };
    });
    let compared = 0;
    for (const [namespace, labels, annotate] of [
      ['shop', {}, true],
      ['labelled', LABELLED, false],
    ] as const) {
      const objects = pods.map(({ pod }) => {
        const p = structuredClone(pod);
        if (annotate)
          p.metadata.annotations = {
            ...(p.metadata.annotations as Obj),
            'config-reloader.io/inject': 'true',
          };
        return { apiVersion: 'v1', kind: 'Pod', ...p };
      });
      const r = await create(namespace, objects, ['--dry-run=server', '-o', 'yaml']);
      // The pods as admitted, one YAML document each; those the API server refuses for reasons of its own
      // (a feature gate, a missing object) are left out.
      const admitted = parseAllDocuments(r.stdout)
        .map((d) => d.toJS() as { metadata: { name: string } } | null)
        .filter((p): p is { metadata: { name: string } } => p !== null);
      assert.ok(admitted.length > files.length / 2, `most fixtures are admitted: ${r.stderr.slice(0, 2000)}`);
      const warned = new Set(
        r.warnings.map((w) => (new RegExp(`^pod ${namespace}/(\\S+) opted in`).exec(w) ?? [])[1]),
      );
      for (const pod of admitted) {
        const name = pod.metadata.name;
        const missed = missedInjection(pod, labels, DEFAULT_INJECTOR_CONFIG);
        assert.equal(
          warned.has(name),
          missed !== undefined,
          `${pods[Number(name.slice(1))]?.file} in ${namespace}: the webhook ${missed ? `would ${missed.outcome.action} it` : 'would skip it'}`,
        );
        compared++;
      }
      assert.ok(warned.size > 0);
    }
    assert.ok(compared > files.length, `${compared} pods compared`);
  });

  void test('the scan (two webhook processes, the overlay’s RBAC): one holds the Lease and scans, both report the count, one Event per miss', async () => {
    const installed = await cluster.install('deploy/overlays/self-managed');
    const token = await cluster.serviceAccountToken(NS, 'config-reloader-injector', installed);
    const kubeconfig = join(dir, 'webhook-kubeconfig');
    await writeFile(
      kubeconfig,
      kubeconfigYaml(cluster.controlPlane.server, cluster.controlPlane.caCert, { token }),
      {
        mode: 0o600,
      },
    );
    const replica = (name: string): CliChild => {
      const child = startCli(
        [
          'webhook',
          '--host',
          '127.0.0.1',
          '--port',
          '0',
          '--ca-out',
          join(dir, `${name}-ca.crt`),
          '--watch-missed-injections',
          '--missed-injections-interval',
          '2s',
          '--kubeconfig',
          kubeconfig,
        ],
        { env: { POD_NAMESPACE: NS, POD_NAME: name, KUBECONFIG: '' } },
      );
      processes.push(child);
      return child;
    };
    const replicas = [replica('config-reloader-injector-0'), replica('config-reloader-injector-1')];
    const metric = async (child: CliChild, name: string): Promise<number | undefined> => {
      const url = String((await child.waitForLog((l) => l.msg === 'webhook listening', 60_000)).url);
      const ca = readFileSync(join(dir, `${name}-ca.crt`), 'utf8');
      const res = await httpsRequest(`${url}/metrics`, { ca });
      const m = /^config_reloader_webhook_missed_injections (\d+)$/m.exec(res.body);
      return m ? Number(m[1]) : undefined;
    };
    // The pods of the first test: while-down (annotation) and labelled-while-down (namespace label).
    for (const [i, child] of replicas.entries())
      await waitFor(
        `replica ${i} to report 2 misses`,
        async () => (await metric(child, `config-reloader-injector-${i}`)) === 2,
        60_000,
      );
    const scanners = replicas.filter((c) => c.stdout().includes('missed-injection scan: this replica scans'));
    assert.equal(scanners.length, 1, 'one replica scans');
    const lease = await cluster.controlPlane.request(
      'GET',
      `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases/${LEASE_NAME}`,
    );
    assert.equal(lease.status, 200);
    assert.match(
      String((lease.body as { spec: { holderIdentity: string } }).spec.holderIdentity),
      /^config-reloader-injector-[01]_/,
    );
    for (const [namespace, name] of [
      ['shop', 'while-down'],
      ['labelled', 'labelled-while-down'],
    ] as const) {
      const events = await waitFor(`the Event on ${name}`, async () => {
        const list = await kube.core.listNamespacedEvent({
          namespace,
          fieldSelector: `involvedObject.name=${name},reason=ConfigReloaderNotInjected`,
        });
        return list.items.length > 0 ? list.items : undefined;
      });
      assert.equal(events.length, 1, 'one Event, whoever scanned and however often');
      assert.equal(events[0]?.type, 'Warning');
      assert.match(String(events[0]?.message), /created without the sidecar/);
      assert.match(String(events[0]?.message), new RegExp(`kubectl get pod ${name} -n ${namespace} -o yaml`));
    }
    // Nothing the RBAC refused.
    for (const child of replicas)
      for (const line of child
        .stdout()
        .split('\n')
        .filter((l) => l.startsWith('{'))) {
        const l = JSON.parse(line) as Obj;
        assert.ok(l.code !== 401 && l.code !== 403, `refused: ${line}`);
      }
  });
});
