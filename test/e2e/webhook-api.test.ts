/**
 * The webhook process's own API features against the real control plane, with nothing but the RBAC that
 * deploy/overlays/self-managed renders: the process authenticates with a TokenRequest token of the
 * ServiceAccount config-reloader-injector/config-reloader-injector, as a replica's mounted token would.
 *
 * - Self-managed certificates: the process creates the Secret config-reloader-injector-certs and writes the
 *   MutatingWebhookConfiguration's caBundle; the API server then calls it over that bundle. The configuration
 *   calls `url: https://127.0.0.1:<port>` (never the Service), so the process runs with --cert-host 127.0.0.1
 *   and a port picked before the overlay is installed.
 * - Missed injections: a pod created while the process is stopped is admitted without the sidecar
 *   (failurePolicy Ignore), with the warning of the base's ValidatingAdmissionPolicy; the process started with
 *   --watch-missed-injections takes the Lease, scans, counts the pod and records a Warning Event on it.
 *   (test/e2e/missed-injections.test.ts covers the policy and two replicas.)
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { V1Pod, V1Secret } from '@kubernetes/client-node';
import { serviceHosts } from '../../src/certs/generate.ts';
import { certFingerprint, SERVED_PREFIX, splitPemCerts } from '../../src/certs/self-managed/state.ts';
import { startCli, type CliChild } from '../support/cli.ts';
import { freePort, kubeconfigYaml } from '../support/control-plane/index.ts';
import { httpsRequest } from '../support/https.ts';
import type { Kube } from './kube.ts';
import { appPod, connect, createNamespace, createPod, waitFor } from './kube.ts';
import type { TestCluster } from './test-cluster.ts';
import { startTestCluster } from './test-cluster.ts';

const NS = 'config-reloader-injector';
const SERVICE_ACCOUNT = 'config-reloader-injector';
const SECRET = 'config-reloader-injector-certs';
const WEBHOOK_CONFIG = 'config-reloader-injector';
const REPLICA = 'config-reloader-injector-e2e-0';
const APPS = 'shop';

const unb64 = (s: string | undefined): string => Buffer.from(s ?? '', 'base64').toString('utf8');
const fingerprints = (pem: string): string[] => splitPemCerts(pem).map(certFingerprint);

interface MutatingWebhookConfiguration {
  webhooks: Array<{ name: string; clientConfig: { url?: string; service?: unknown; caBundle?: string } }>;
}

/** Tests run in order: the first leaves the Secret and the caBundle in place; the second stops the process first. */
void describe('e2e (real kube-apiserver): the webhook process with the RBAC of deploy/overlays/self-managed', () => {
  let cluster: TestCluster;
  let kube: Kube;
  let port: number;
  let kubeconfig: string;
  const processes: CliChild[] = [];
  let webhook: CliChild | undefined;

  /** `webhook` as the overlay's Deployment runs it, on 127.0.0.1:port, with the ServiceAccount's token. */
  const startWebhook = (extra: string[] = []): CliChild => {
    const child = startCli(
      [
        'webhook',
        '--self-managed-certs',
        '--namespace',
        NS,
        '--host',
        '127.0.0.1',
        '--port',
        String(port),
        '--kubeconfig',
        kubeconfig,
        '--cert-host',
        '127.0.0.1',
        '--shutdown-delay',
        '0s',
        ...extra,
      ],
      // The Deployment's downward API; KUBECONFIG of the test's environment must not take part.
      { env: { POD_NAMESPACE: NS, POD_NAME: REPLICA, KUBECONFIG: '' } },
    );
    processes.push(child);
    return child;
  };

  /** SIGTERM to its PID and wait for the exit; SIGKILL after 10 s. */
  const stopProcess = async (child: CliChild): Promise<{ code: number | null }> => {
    if (child.child.exitCode !== null || child.child.signalCode !== null) return child.exited;
    child.child.kill('SIGTERM');
    const timer = setTimeout(() => child.child.kill('SIGKILL'), 10_000);
    const exited = await child.exited;
    clearTimeout(timer);
    return exited;
  };

  const readSecret = (): Promise<V1Secret> => kube.core.readNamespacedSecret({ namespace: NS, name: SECRET });

  /** The lines the process logged about an API call refused with 401 or 403. */
  const refusedCalls = (child: CliChild): Array<Record<string, unknown>> =>
    child
      .stdout()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l.code === 401 || l.code === 403);

  before(async () => {
    cluster = await startTestCluster();
    kube = connect(cluster.kubeconfig);
    // The port first: the configuration's url must name it before the process writes its caBundle.
    port = await freePort();
    const installed = await cluster.install('deploy/overlays/self-managed', {
      url: `https://127.0.0.1:${port}`,
    });
    const token = await cluster.serviceAccountToken(NS, SERVICE_ACCOUNT, installed);
    kubeconfig = join(cluster.dir, 'webhook-kubeconfig');
    await writeFile(
      kubeconfig,
      kubeconfigYaml(cluster.controlPlane.server, cluster.controlPlane.caCert, { token }),
      { mode: 0o600 },
    );
    await createNamespace(kube, APPS);
  });

  after(async () => {
    for (const child of processes) await stopProcess(child);
    await cluster?.close();
  });

  void test('--self-managed-certs --cert-host 127.0.0.1: the process makes the Secret and the caBundle, and the API server calls it over them', async () => {
    webhook = startWebhook();
    const listening = await webhook.waitForLog((l) => l.msg === 'webhook listening', 60_000);
    assert.equal(listening.url, `https://127.0.0.1:${port}`);

    // The Secret, as the process created it.
    const secret = await readSecret();
    assert.equal(secret.type, 'kubernetes.io/tls');
    assert.deepEqual(Object.keys(secret.data ?? {}).sort(), [
      'ca-bundle.crt',
      'ca.crt',
      'ca.key',
      'tls.crt',
      'tls.key',
    ]);
    assert.equal(secret.metadata?.labels?.['app.kubernetes.io/component'], 'webhook-certificates');
    assert.ok(
      secret.metadata?.annotations?.[`${SERVED_PREFIX}${REPLICA}`],
      'the replica said what it serves',
    );
    const ca = unb64(secret.data?.['ca.crt']);
    const leaf = new X509Certificate(unb64(secret.data?.['tls.crt']));
    assert.ok(leaf.checkIssued(new X509Certificate(ca)) && leaf.verify(new X509Certificate(ca).publicKey));
    assert.ok(leaf.checkIP('127.0.0.1'), 'the --cert-host address is a SAN');
    for (const host of serviceHosts('config-reloader-injector', NS))
      assert.ok(leaf.checkHost(host, { subject: 'never' }), `the Service name ${host} is a SAN`);

    // Every webhook of the configuration trusts exactly the Secret's CA, and still calls the url.
    const res = await cluster.controlPlane.request(
      'GET',
      `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${WEBHOOK_CONFIG}`,
    );
    assert.equal(res.status, 200);
    const config = res.body as MutatingWebhookConfiguration;
    assert.deepEqual(
      config.webhooks.map((w) => w.name),
      ['namespace.config-reloader.io', 'pod.config-reloader.io'],
    );
    for (const w of config.webhooks) {
      assert.equal(w.clientConfig.caBundle, secret.data?.['ca-bundle.crt'], `${w.name}: the Secret's bundle`);
      assert.deepEqual(
        fingerprints(unb64(w.clientConfig.caBundle)),
        [certFingerprint(ca)],
        `${w.name}: one CA`,
      );
      assert.match(String(w.clientConfig.url), new RegExp(`^https://127\\.0\\.0\\.1:${port}/mutate`));
      assert.equal(w.clientConfig.service, undefined);
    }

    // The API server's webhook client loads the patched configuration asynchronously: wait until a
    // server-side dry run comes back injected, then create the pod for real.
    await waitFor(
      'the API server to call the webhook over the new caBundle',
      async () => {
        const dry = await cluster.controlPlane.request(
          'POST',
          `/api/v1/namespaces/${APPS}/pods?dryRun=All`,
          appPod('probe', { 'config-reloader.io/inject': 'true' }),
        );
        assert.equal(dry.status, 201, dry.text);
        const annotations = (dry.body as V1Pod).metadata?.annotations;
        return annotations?.['config-reloader.io/status'] === 'injected';
      },
      30_000,
    );
    const pod = await createPod(kube, APPS, appPod('opted-in', { 'config-reloader.io/inject': 'true' }));
    assert.equal(pod.metadata?.annotations?.['config-reloader.io/status'], 'injected');
    assert.equal(pod.spec?.initContainers?.[0]?.name, 'config-reloader');
    assert.deepEqual(
      { ...pod.spec?.volumes?.find((v) => v.name === 'config')?.emptyDir },
      { medium: 'Memory' },
    );

    // The process's own record of that review (the pod field is its name, never its spec).
    const review = await webhook.waitForLog((l) => l.msg === 'admission review' && l.pod === 'opted-in');
    assert.equal(review.namespace, APPS);
    assert.equal(review.decision, 'injected');
    assert.deepEqual(refusedCalls(webhook), [], 'the shipped RBAC allowed every call');
    const keyBody = unb64((await readSecret()).data?.['tls.key']).replace(/-----[^-]+-----|\s/g, '');
    assert.ok(keyBody.length > 40);
    assert.equal(webhook.stdout().includes(keyBody.slice(0, 40)), false, 'the key never reaches the log');
  });

  void test('--watch-missed-injections: a pod admitted while the process was down is counted by the scan and gets a Warning Event', async () => {
    if (webhook) assert.equal((await stopProcess(webhook)).code, 0);

    // Nothing listens on the port: the call is refused and failurePolicy Ignore admits the pod unchanged.
    const pod = await createPod(kube, APPS, appPod('while-down', { 'config-reloader.io/inject': 'true' }));
    assert.equal(pod.metadata?.annotations?.['config-reloader.io/status'], undefined);
    assert.equal(pod.spec?.initContainers, undefined);
    assert.equal(pod.spec?.volumes?.find((v) => v.name === 'config')?.secret?.secretName, 'app-config');

    webhook = startWebhook(['--watch-missed-injections']);
    const listening = await webhook.waitForLog((l) => l.msg === 'webhook listening', 60_000);
    const secret = await readSecret();
    const ca = unb64(secret.data?.['ca.crt']);
    // A restart over the existing Secret changes nothing: the configuration still holds its bundle, byte for byte.
    assert.equal(
      webhook.stdout().includes('caBundle written'),
      false,
      'no write of the webhook configuration',
    );
    const config = (
      await cluster.controlPlane.request(
        'GET',
        `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${WEBHOOK_CONFIG}`,
      )
    ).body as MutatingWebhookConfiguration;
    for (const w of config.webhooks) assert.equal(w.clientConfig.caBundle, secret.data?.['ca-bundle.crt']);

    // GET /metrics over HTTPS to 127.0.0.1, verified with the Secret's CA.
    const missed = await waitFor('config_reloader_webhook_missed_injections to count the pod', async () => {
      const metrics = await httpsRequest(`${String(listening.url)}/metrics`, { ca });
      assert.equal(metrics.status, 200);
      const m = /^config_reloader_webhook_missed_injections (\d+)$/m.exec(metrics.body);
      return m && Number(m[1]) > 0 ? Number(m[1]) : undefined;
    });
    assert.equal(missed, 1, 'only while-down: opted-in, which was injected, is not counted');

    const event = await waitFor('the Warning Event on the pod', async () => {
      const events = await kube.core.listNamespacedEvent({
        namespace: APPS,
        fieldSelector: `involvedObject.uid=${pod.metadata?.uid ?? ''}`,
      });
      return events.items.find((e) => e.reason === 'ConfigReloaderNotInjected');
    });
    assert.equal(event.type, 'Warning');
    assert.equal(event.involvedObject.kind, 'Pod');
    assert.equal(event.involvedObject.name, 'while-down');
    assert.equal(event.involvedObject.namespace, APPS);
    assert.equal(event.source?.component, 'config-reloader-injector');
    assert.match(String(event.message), /created without the sidecar/);
    assert.match(String(event.message), /kubectl get pod while-down -n shop -o yaml/);

    const logged = await webhook.waitForLog(
      (l) => l.pod === 'while-down' && String(l.msg).includes('Event recorded'),
    );
    assert.equal(logged.namespace, APPS);
    // The only replica holds the scan's Lease in its own namespace (the Role of components/missed-injections).
    const lease = await cluster.controlPlane.request(
      'GET',
      `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases/config-reloader-injector-missed-injections`,
    );
    assert.equal(lease.status, 200);
    assert.match(
      String((lease.body as { spec: { holderIdentity: string } }).spec.holderIdentity),
      new RegExp(`^${REPLICA}_`),
    );
    assert.deepEqual(refusedCalls(webhook), [], 'the ClusterRole of components/missed-injections was enough');
  });
});
