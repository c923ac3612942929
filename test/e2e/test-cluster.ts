/**
 * The end-to-end tests' cluster: a real control plane (etcd, kube-apiserver, kube-controller-manager built from
 * pinned Kubernetes modules, test/support/control-plane), with the webhook running in the test process on
 * 127.0.0.1. The only thing that differs from an installation is how the API server reaches the webhook: the
 * rendered MutatingWebhookConfiguration names a Service, which would make kube-apiserver dial a cluster IP, so
 * its clientConfig is rewritten to `url: https://127.0.0.1:<port>/<path>` before it is applied. Nothing here
 * may create an object that makes the API server call a Service (assertNoServiceCalls).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { stringify } from 'yaml';
import { generateCertBundle } from '../../src/certs/generate.ts';
import { DEFAULT_INJECTOR_CONFIG } from '../../src/injection/config.ts';
import { createLogger } from '../../src/shared/log.ts';
import type { RunningServer } from '../../src/webhook/server.ts';
import { startWebhookServer } from '../../src/webhook/server.ts';
import type { TlsSource } from '../../src/certs/source.ts';
import type { ControlPlane, StartOptions } from '../support/control-plane/index.ts';
import { startControlPlane } from '../support/control-plane/index.ts';
import type { KubeObject } from '../support/kube-apiserver/index.ts';
import { kubectlPath } from '../support/kubectl.ts';
import { renderKustomize } from './manifests.ts';

/** The webhook, as its pods would serve it, on a loopback port. */
export interface WebhookHandle {
  /** base64 PEM of the CA that signed its serving certificate, for the caBundle. */
  readonly caBundle: string;
  /** https://127.0.0.1:PORT (the same port across stop/start). */
  readonly url: string;
  /** Every JSON line the webhook logged (one `admission review` line per review it answered). */
  readonly log: Array<Record<string, unknown>>;
  /** Its Prometheus text metrics. */
  metrics(): string;
  /** Stops it: connections to its port are then refused. */
  stop(): Promise<void>;
  /** Starts it again on the same port. */
  start(): Promise<void>;
}

/** Where a rendered MutatingWebhookConfiguration sends its reviews. */
export interface WebhookTarget {
  /** https://127.0.0.1:PORT; each webhook's Service path is appended. */
  url: string;
  /** base64 PEM; left out of the configuration when undefined. */
  caBundle?: string;
}

export interface TestCluster {
  readonly controlPlane: ControlPlane;
  /** An admin kubeconfig. */
  readonly kubeconfig: string;
  /** A temp dir removed by close(). */
  readonly dir: string;
  readonly webhook: WebhookHandle;
  /** `kubectl --kubeconfig=<admin> ARGS`; never throws, resolves with the exit code and output. */
  kubectl(args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }>;
  /**
   * Renders a deploy/ overlay, points its MutatingWebhookConfiguration at the test's webhook (url + caBundle,
   * see the file comment) and applies it with `kubectl apply --server-side`. Returns the objects applied.
   * `target` points it at another webhook on 127.0.0.1 instead (e.g. the webhook process on a port chosen
   * first); without a caBundle there the field is left out, for a webhook that writes it itself
   * (--self-managed-certs).
   */
  install(overlay: string, target?: WebhookTarget): Promise<KubeObject[]>;
  /**
   * Applies `rbac` (Roles and RoleBindings) and asks the TokenRequest API for a token of the ServiceAccount,
   * bound to `pod` as the kubelet's projected token is.
   */
  serviceAccountToken(
    namespace: string,
    name: string,
    rbac: KubeObject[],
    pod?: { name: string; uid: string },
  ): Promise<string>;
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

async function startWebhook(): Promise<WebhookHandle & { close: () => Promise<void> }> {
  const bundle = await generateCertBundle({ hosts: ['127.0.0.1'], caName: 'e2e webhook CA' });
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
    get url() {
      return `https://127.0.0.1:${port}`;
    },
    log,
    metrics: () => {
      if (!running) throw new Error('the webhook is stopped');
      return running.metrics.registry.render();
    },
    start,
    stop,
    close: stop,
  };
}

/**
 * Throws when an object would make kube-apiserver call a Service: a webhook configuration whose clientConfig
 * names one, or an APIService backed by one. Tests may send traffic to 127.0.0.1 only.
 */
export function assertNoServiceCalls(objects: KubeObject[]): void {
  for (const o of objects) {
    const webhooks = (o.webhooks as Array<{ name: string; clientConfig?: { service?: unknown } }>) ?? [];
    for (const w of webhooks)
      if (w.clientConfig?.service)
        throw new Error(
          `${o.kind} ${o.metadata.name}: webhook ${w.name} names a Service; use url: https://127.0.0.1`,
        );
    if (o.kind === 'APIService' && (o.spec as { service?: unknown } | undefined)?.service)
      throw new Error(`APIService ${o.metadata.name} names a Service: never in tests`);
  }
}

/**
 * The rendered configuration with every webhook called at `base` + its Service path, trusting `caBundle`
 * (no caBundle when it is undefined). `base` must be a loopback URL: tests send traffic to 127.0.0.1 only.
 */
export function pointWebhooksAt(config: KubeObject, base: string, caBundle: string | undefined): KubeObject {
  if (!base.startsWith('https://127.0.0.1:'))
    throw new Error(`webhook url ${base}: tests call https://127.0.0.1:<port> only`);
  const copy = structuredClone(config);
  for (const webhook of copy.webhooks as Array<{ clientConfig: Record<string, unknown> }>) {
    const service = webhook.clientConfig.service as { path?: string } | undefined;
    webhook.clientConfig = {
      url: `${base}${service?.path ?? '/'}`,
      ...(caBundle === undefined ? {} : { caBundle }),
    };
  }
  return copy;
}

export async function startTestCluster(opts: StartOptions = {}): Promise<TestCluster> {
  const controlPlane = await startControlPlane(opts);
  const dir = await mkdtemp(join(tmpdir(), 'e2e-'));
  let webhook: Awaited<ReturnType<typeof startWebhook>> | undefined;
  try {
    webhook = await startWebhook();
  } catch (err) {
    await controlPlane.stop();
    throw err;
  }
  const hook = webhook;
  const kubectl: TestCluster['kubectl'] = async (args, input) => {
    const child = execFile(
      kubectlPath(),
      [`--kubeconfig=${controlPlane.kubeconfig}`, `--cache-dir=${join(dir, 'kube-cache')}`, ...args],
      { env: { PATH: process.env.PATH ?? '/usr/bin', HOME: dir }, timeout: 60_000, maxBuffer: 64 << 20 },
    );
    child.stdin?.end(input ?? '');
    return new Promise((resolve) => {
      let stdout = '';
      let stderr = '';
      child.stdout?.on('data', (c: Buffer) => (stdout += c.toString()));
      child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
      child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
    });
  };
  const applyServerSide = async (objects: KubeObject[]): Promise<void> => {
    assertNoServiceCalls(objects);
    const file = join(dir, `apply-${Date.now()}-${Math.random().toString(36).slice(2)}.yaml`);
    await writeFile(file, objects.map((o) => stringify(o)).join('---\n'));
    const result = await kubectl([
      'apply',
      '--server-side',
      '--force-conflicts',
      '--field-manager=e2e',
      '-f',
      file,
    ]);
    if (result.code !== 0) throw new Error(`kubectl apply --server-side failed: ${result.stderr}`);
  };
  return {
    controlPlane,
    kubeconfig: controlPlane.kubeconfig,
    dir,
    webhook: hook,
    kubectl,
    install: async (overlay, target = { url: hook.url, caBundle: hook.caBundle }) => {
      const objects = (await renderKustomize(overlay)).map((o) =>
        o.kind === 'MutatingWebhookConfiguration' ? pointWebhooksAt(o, target.url, target.caBundle) : o,
      );
      await applyServerSide(objects);
      return objects;
    },
    serviceAccountToken: async (namespace, name, rbac, pod) => {
      await applyServerSide(rbac.filter((o) => o.kind === 'Role' || o.kind === 'RoleBinding'));
      const res = await controlPlane.request(
        'POST',
        `/api/v1/namespaces/${namespace}/serviceaccounts/${name}/token`,
        {
          apiVersion: 'authentication.k8s.io/v1',
          kind: 'TokenRequest',
          spec: {
            expirationSeconds: 3600,
            ...(pod
              ? { boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: pod.name, uid: pod.uid } }
              : {}),
          },
        },
      );
      if (res.status !== 201)
        throw new Error(`TokenRequest for ${namespace}/${name}: ${res.status} ${res.text}`);
      return (res.body as { status: { token: string } }).status.token;
    },
    close: async () => {
      await hook.close();
      await controlPlane.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
