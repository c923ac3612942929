/**
 * A real Kubernetes control plane for the end-to-end tests: etcd, kube-apiserver and kube-controller-manager,
 * built from the Go modules pinned in test/control-plane (build.sh, cached outside the clone), started on free
 * 127.0.0.1 ports with TLS from their own CA. No scheduler and no kubelet: pods are stored, never run (the e2e
 * kubelet stand-in runs the reloader container as a process).
 *
 * Every process is stopped by its PID: by stop(), and on the test process's exit or termination however it
 * ends, so a failing test leaves nothing running.
 */
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from '../cli.ts';
import { builtOnce, spawnLogged, terminate, type Spawned } from '../spawned.ts';
import type { ControlPlanePki, Pem } from './pki.ts';
import { makePki } from './pki.ts';

/** Admission plugins the tests rely on, named explicitly on top of kube-apiserver's defaults. */
export const ADMISSION_PLUGINS = [
  'NamespaceLifecycle',
  'ServiceAccount',
  'PodSecurity',
  'MutatingAdmissionWebhook',
  'ValidatingAdmissionWebhook',
  'ValidatingAdmissionPolicy',
];

export interface ApiResponse {
  status: number;
  body: unknown;
  text: string;
}

export interface ControlPlane {
  /** The server's own report of its version (`/version` gitVersion), e.g. v1.37.2. */
  readonly version: string;
  /** https://127.0.0.1:PORT */
  readonly server: string;
  /** An admin kubeconfig (client certificate in system:masters). */
  readonly kubeconfig: string;
  /** The PEM CA that signed the API server's certificate. */
  readonly caCert: string;
  /** A temp dir with the PKI, etcd's data and the processes' logs; removed by stop(). */
  readonly dir: string;
  /** Milliseconds from the first process spawned to kube-apiserver ready and the controllers working. */
  readonly startMs: number;
  /** A request as the admin. `body` is sent as JSON (or as-is with `contentType`). */
  request(method: string, path: string, body?: unknown, contentType?: string): Promise<ApiResponse>;
  /** Stops kube-apiserver (SIGTERM) and starts it again on the same port over the same etcd; resolves when ready. */
  restartApiServer(): Promise<void>;
  /** Compacts etcd's history up to its current revision (as kube-apiserver does every 5 minutes); returns it. */
  compactEtcd(): Promise<number>;
  /** The last lines a component logged, for failure messages. */
  logTail(component: 'etcd' | 'kube-apiserver' | 'kube-controller-manager', lines?: number): string;
  stop(): Promise<void>;
}

/**
 * The folder with the three binaries, building them on first use (`npm run cluster:build`; npm test runs it
 * before any test, so this is a cache hit there).
 */
export function controlPlaneBinaries(): string {
  return builtOnce(join(REPO_ROOT, 'test/control-plane/build.sh'), 'the control plane');
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

interface Component extends Spawned {
  logFile: string;
}

function launch(bin: string, args: string[], logFile: string): Component {
  const spawned = spawnLogged(bin, args, { logFile });
  return { ...spawned, logFile };
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
async function stopComponent(component: Component | undefined, graceMs = 10_000): Promise<void> {
  if (component) await terminate(component, graceMs);
}

function tail(file: string, lines = 30): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

function call(
  url: string,
  tls: { ca: string; client: Pem },
  method: string,
  body?: string,
  contentType = 'application/json',
): Promise<ApiResponse> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      url,
      {
        method,
        ca: tls.ca,
        cert: tls.client.cert,
        key: tls.client.key,
        timeout: 30_000,
        headers: {
          accept: 'application/json',
          ...(body !== undefined ? { 'content-type': contentType } : {}),
        },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          let parsed: unknown = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            // not JSON: keep the text
          }
          resolve({ status: res.statusCode ?? 0, body: parsed, text });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${url}: no answer in 30 s`)));
    req.on('error', reject);
    req.end(body);
  });
}

async function waitUntil(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs: number,
  failFast: () => string | undefined,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const fatal = failFast();
    if (fatal) throw new Error(`${what}: ${fatal}`);
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A kubeconfig for `server` trusting `ca`, as a client certificate or a bearer token (and nothing else). */
export function kubeconfigYaml(server: string, ca: string, user: Pem | { token: string }): string {
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  const credentials =
    'token' in user
      ? `token: ${user.token}`
      : `client-certificate-data: ${b64(user.cert)}\n    client-key-data: ${b64(user.key)}`;
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    `- name: e2e\n  cluster:\n    server: ${server}\n    certificate-authority-data: ${b64(ca)}`,
    'users:',
    `- name: user\n  user:\n    ${credentials}`,
    'contexts:',
    '- name: e2e\n  context:\n    cluster: e2e\n    user: user',
    'current-context: e2e',
    '',
  ].join('\n');
}

export interface StartOptions {
  /** Extra kube-apiserver flags (`--name=value`). */
  apiServerArgs?: string[];
}

export async function startControlPlane(opts: StartOptions = {}): Promise<ControlPlane> {
  const bin = controlPlaneBinaries();
  const started = Date.now();
  const dir = await mkdtemp(join(tmpdir(), 'control-plane-'));
  const pki: ControlPlanePki = await makePki();
  const file = async (name: string, content: string): Promise<string> => {
    const path = join(dir, 'pki', name);
    await writeFile(path, content, { mode: 0o600 });
    return path;
  };
  await mkdir(join(dir, 'pki'));
  const ca = await file('ca.crt', pki.ca.cert);
  const pem = async (name: string, p: Pem): Promise<[string, string]> => [
    await file(`${name}.crt`, p.cert),
    await file(`${name}.key`, p.key),
  ];
  const [etcdCert, etcdKey] = await pem('etcd-server', pki.etcdServer);
  const [apiCert, apiKey] = await pem('apiserver', pki.apiServer);
  const [etcdClientCert, etcdClientKey] = await pem('apiserver-etcd-client', pki.etcdClient);
  const saKey = await file('sa.key', pki.serviceAccount.privateKey);
  const saPub = await file('sa.pub', pki.serviceAccount.publicKey);

  const [etcdClientPort, etcdPeerPort, apiPort, kcmPort] = [
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
  ];
  const etcdUrl = `https://127.0.0.1:${etcdClientPort}`;
  const server = `https://127.0.0.1:${apiPort}`;
  const kubeconfig = join(dir, 'admin.kubeconfig');
  await writeFile(kubeconfig, kubeconfigYaml(server, pki.ca.cert, pki.admin), { mode: 0o600 });

  const components: Record<string, Component | undefined> = {};
  const exitedEarly = (name: string): string | undefined => {
    const c = components[name];
    if (!c || (c.child.exitCode === null && c.child.signalCode === null)) return undefined;
    return `${name} exited (${c.child.exitCode ?? c.child.signalCode}); its log ends:\n${tail(c.logFile)}`;
  };
  const stopAll = async (): Promise<void> => {
    await stopComponent(components['kube-controller-manager']);
    await stopComponent(components['kube-apiserver']);
    await stopComponent(components.etcd);
  };

  try {
    components.etcd = launch(
      join(bin, 'etcd'),
      [
        '--name=e2e',
        `--data-dir=${join(dir, 'etcd')}`,
        `--listen-client-urls=${etcdUrl}`,
        `--advertise-client-urls=${etcdUrl}`,
        `--listen-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
        `--initial-cluster=e2e=http://127.0.0.1:${etcdPeerPort}`,
        `--cert-file=${etcdCert}`,
        `--key-file=${etcdKey}`,
        `--trusted-ca-file=${ca}`,
        '--client-cert-auth',
        '--unsafe-no-fsync',
        '--log-level=warn',
      ],
      join(dir, 'etcd.log'),
    );
    const etcdTls = { ca: pki.ca.cert, client: pki.etcdClient };
    await waitUntil(
      'etcd ready',
      async () => (await call(`${etcdUrl}/health`, etcdTls, 'GET')).status === 200,
      30_000,
      () => exitedEarly('etcd'),
    );

    const apiArgs = [
      `--etcd-servers=${etcdUrl}`,
      `--etcd-cafile=${ca}`,
      `--etcd-certfile=${etcdClientCert}`,
      `--etcd-keyfile=${etcdClientKey}`,
      '--bind-address=127.0.0.1',
      '--advertise-address=127.0.0.1',
      // The `kubernetes` Service's endpoint would be the advertise address, and endpoints may not be loopback.
      '--endpoint-reconciler-type=none',
      `--secure-port=${apiPort}`,
      `--cert-dir=${join(dir, 'apiserver-certs')}`,
      `--tls-cert-file=${apiCert}`,
      `--tls-private-key-file=${apiKey}`,
      `--client-ca-file=${ca}`,
      '--authorization-mode=Node,RBAC',
      `--enable-admission-plugins=${ADMISSION_PLUGINS.join(',')}`,
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      `--service-account-key-file=${saPub}`,
      `--service-account-signing-key-file=${saKey}`,
      '--service-cluster-ip-range=10.96.0.0/16',
      '--allow-privileged=true',
      '--profiling=false',
      ...(opts.apiServerArgs ?? []),
    ];
    const admin = { ca: pki.ca.cert, client: pki.admin };
    const startApiServer = async (): Promise<void> => {
      components['kube-apiserver'] = launch(
        join(bin, 'kube-apiserver'),
        apiArgs,
        join(dir, 'kube-apiserver.log'),
      );
      await waitUntil(
        'kube-apiserver /readyz',
        async () => (await call(`${server}/readyz`, admin, 'GET')).status === 200,
        60_000,
        () => exitedEarly('kube-apiserver'),
      );
    };
    await startApiServer();

    components['kube-controller-manager'] = launch(
      join(bin, 'kube-controller-manager'),
      [
        `--kubeconfig=${kubeconfig}`,
        `--authentication-kubeconfig=${kubeconfig}`,
        `--authorization-kubeconfig=${kubeconfig}`,
        '--bind-address=127.0.0.1',
        `--secure-port=${kcmPort}`,
        '--leader-elect=false',
        `--root-ca-file=${ca}`,
        `--service-account-private-key-file=${saKey}`,
        '--use-service-account-credentials=false',
        '--controllers=*',
        // The tests make a handful of Deployments: two workers instead of five are plenty on a 2-core machine.
        '--concurrent-deployment-syncs=2',
      ],
      join(dir, 'kube-controller-manager.log'),
    );
    const request = async (
      method: string,
      path: string,
      body?: unknown,
      contentType?: string,
    ): Promise<ApiResponse> =>
      call(
        `${server}${path}`,
        admin,
        method,
        body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
        contentType,
      );
    // The controllers work once the namespace controllers gave `default` its ServiceAccount and CA ConfigMap.
    await waitUntil(
      'kube-controller-manager: default ServiceAccount and kube-root-ca.crt in namespace default',
      async () =>
        (await request('GET', '/api/v1/namespaces/default/serviceaccounts/default')).status === 200 &&
        (await request('GET', '/api/v1/namespaces/default/configmaps/kube-root-ca.crt')).status === 200,
      60_000,
      () => exitedEarly('kube-controller-manager') ?? exitedEarly('kube-apiserver'),
    );
    const versionInfo = (await request('GET', '/version')).body as { gitVersion: string };
    const startMs = Date.now() - started;

    return {
      version: versionInfo.gitVersion,
      server,
      kubeconfig,
      caCert: pki.ca.cert,
      dir,
      startMs,
      request,
      restartApiServer: async () => {
        // It stops listening at once on SIGTERM, then lingers on its long-running connections (watches) for
        // longer than a test should wait: what is left after 2 s is killed.
        await stopComponent(components['kube-apiserver'], 2_000);
        await startApiServer();
      },
      compactEtcd: async () => {
        const range = await call(
          `${etcdUrl}/v3/kv/range`,
          etcdTls,
          'POST',
          JSON.stringify({ key: Buffer.from('/').toString('base64'), limit: 1 }),
        );
        const revision = Number((range.body as { header: { revision: string } }).header.revision);
        const compacted = await call(
          `${etcdUrl}/v3/kv/compaction`,
          etcdTls,
          'POST',
          JSON.stringify({ revision: String(revision), physical: true }),
        );
        if (compacted.status !== 200) throw new Error(`etcd compaction failed: ${compacted.text}`);
        return revision;
      },
      logTail: (component, lines) => tail(join(dir, `${component}.log`), lines),
      stop: async () => {
        await stopAll();
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await stopAll();
    // Keep the logs of a failed start for the message, then clean up.
    const logs = ['etcd', 'kube-apiserver', 'kube-controller-manager']
      .map((c) => `--- ${c}:\n${tail(join(dir, `${c}.log`), 15)}`)
      .join('\n');
    await rm(dir, { recursive: true, force: true });
    throw new Error(`${(err as Error).message}\n${logs}`, { cause: err });
  }
}
