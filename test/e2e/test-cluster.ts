/**
 * The only part of the e2e tests that cannot exist in a real cluster: starting the test API server, running
 * the webhook in-process behind its "Service", and issuing service-account tokens with the permissions that
 * RBAC objects would give. Everything else talks to the cluster through the kubeconfig this writes.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { generateCertBundle, serviceHosts } from '../../src/certs/generate.ts';
import { DEFAULT_INJECTOR_CONFIG } from '../../src/injection/config.ts';
import { createLogger } from '../../src/shared/log.ts';
import type { RunningServer } from '../../src/webhook/server.ts';
import { startWebhookServer } from '../../src/webhook/server.ts';
import type { TlsSource } from '../../src/webhook/tls.ts';
import type { Grant, KubeObject } from '../support/kube-apiserver/index.ts';
import { TestApiServer } from '../support/kube-apiserver/index.ts';

/** The Service that deploy/base puts in front of the webhook. */
export const WEBHOOK_SERVICE = { namespace: 'config-reloader-injector', name: 'config-reloader-injector' };

/** The webhook behind the Service, as its pods would serve it. */
export interface WebhookHandle {
  /** base64 PEM of the CA that signed its serving certificate, for the caBundle. */
  readonly caBundle: string;
  /** Every JSON line the webhook logged (one `admission review` line per review it answered). */
  readonly log: Array<Record<string, unknown>>;
  /** Its Prometheus text metrics. */
  metrics(): string;
  /** Stops it: the Service then has no endpoint and connections are refused. */
  stop(): Promise<void>;
  /** Starts it again behind the same Service. */
  start(): Promise<void>;
}

export interface TestCluster {
  /** An admin kubeconfig for the test API server. */
  readonly kubeconfig: string;
  /** A temp dir removed by close(). */
  readonly dir: string;
  readonly webhook: WebhookHandle;
  /**
   * A bearer token for a ServiceAccount, allowed what the given Roles grant it through the given RoleBindings
   * (in a real cluster: apply those objects and ask the TokenRequest API, as the kubelet does for a pod).
   */
  serviceAccountToken(namespace: string, name: string, rbac: KubeObject[]): string;
  close(): Promise<void>;
}

function lineCollector(lines: Array<Record<string, unknown>>): Writable {
  let rest = '';
  return new Writable({
    write(chunk: Buffer, _enc, done) {
      rest += chunk.toString('utf8');
      const parts = rest.split('\n');
      rest = parts.pop() ?? '';
      for (const line of parts)
        if (line.startsWith('{')) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
}

async function startWebhook(): Promise<WebhookHandle & { port: () => number; close: () => Promise<void> }> {
  const bundle = await generateCertBundle({
    hosts: serviceHosts(WEBHOOK_SERVICE.name, WEBHOOK_SERVICE.namespace),
    caName: 'e2e webhook CA',
  });
  const tls: TlsSource = {
    material: { cert: bundle.cert, key: bundle.key },
    onChange: () => {},
    close: () => {},
  };
  const log: Array<Record<string, unknown>> = [];
  const logger = createLogger({ name: 'webhook', level: 'info', destination: lineCollector(log) });
  let running: RunningServer | undefined;
  let port = 0;
  const start = async (): Promise<void> => {
    if (running) return;
    running = await startWebhookServer({
      host: '127.0.0.1',
      port,
      tls,
      config: DEFAULT_INJECTOR_CONFIG,
      log: logger,
    });
    port = Number(new URL(running.url).port);
  };
  const stop = async (): Promise<void> => {
    const r = running;
    running = undefined;
    await r?.close();
  };
  await start();
  return {
    caBundle: Buffer.from(bundle.caCert).toString('base64'),
    log,
    metrics: () => {
      if (!running) throw new Error('the webhook is stopped');
      return running.metrics.registry.render();
    },
    start,
    stop,
    port: () => port,
    close: stop,
  };
}

/** RBAC's answer for one ServiceAccount: the rules of every Role bound to it in `objects`. */
function grantsFor(namespace: string, name: string, objects: KubeObject[]): Grant[] {
  const roles = new Map(objects.filter((o) => o.kind === 'Role').map((r) => [r.metadata.name, r]));
  const grants: Grant[] = [];
  for (const binding of objects.filter((o) => o.kind === 'RoleBinding')) {
    const subjects = (binding.subjects as Array<Record<string, string>> | undefined) ?? [];
    const bound = subjects.some(
      (s) =>
        s.kind === 'ServiceAccount' &&
        s.name === name &&
        (s.namespace ?? binding.metadata.namespace) === namespace,
    );
    const role = roles.get((binding.roleRef as { name: string }).name);
    if (!bound || !role || (binding.metadata.namespace ?? namespace) !== namespace) continue;
    for (const rule of (role.rules as Array<Record<string, string[]>> | undefined) ?? [])
      for (const group of rule.apiGroups ?? [''])
        for (const resource of rule.resources ?? [])
          grants.push({
            verbs: rule.verbs ?? [],
            resource,
            group,
            namespace,
            ...(rule.resourceNames ? { names: rule.resourceNames } : {}),
          });
  }
  return grants;
}

export async function startTestCluster(): Promise<TestCluster> {
  const dir = await mkdtemp(join(tmpdir(), 'e2e-'));
  const webhook = await startWebhook();
  // The real server resolves the Service to a ClusterIP; here it is the webhook's loopback port.
  const api = await TestApiServer.start({
    namespaceControllers: true,
    serviceResolver: (namespace, name, port) =>
      namespace === WEBHOOK_SERVICE.namespace && name === WEBHOOK_SERVICE.name && port === 443
        ? { host: '127.0.0.1', port: webhook.port() }
        : undefined,
  });
  const kubeconfig = join(dir, 'admin.kubeconfig');
  await api.writeKubeconfig(kubeconfig);
  return {
    kubeconfig,
    dir,
    webhook,
    serviceAccountToken: (namespace, name, rbac) =>
      api.addServiceAccount(namespace, name, grantsFor(namespace, name, rbac)),
    close: async () => {
      await webhook.close();
      await api.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
