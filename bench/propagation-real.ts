/**
 * Section 3b, propagation against a real kube-apiserver (test/support/control-plane: etcd, kube-apiserver and
 * kube-controller-manager on 127.0.0.1): the single updates of section 3, but the clock starts when the bench
 * sends the update (a PUT of the Secret, as the admin, on a kept-alive TLS connection) and the path includes
 * what the test API server skips: kube-apiserver's admission and storage, etcd's commit, its watch, the watch
 * cache and the watch's RBAC (the reloader holds a ServiceAccount token from the TokenRequest API, allowed
 * get/list/watch on that one Secret by name, as in a pod). The time the PUT's 200 came back is recorded too:
 * kube-apiserver answers once etcd committed and delivers the watch event on its own path, so the reload may
 * arrive before the answer (the figure from the answer is then negative).
 */
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { Agent, request } from 'node:https';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parse as parseYaml } from 'yaml';
import { startControlPlane, type ControlPlane } from '../test/support/control-plane/index.ts';
import type { BenchContext, SectionResult } from './lib/context.ts';
import {
  benchConfig,
  benchPadding,
  benchSecret,
  NS,
  ReloadReceiver,
  singleUpdates,
  startReloader,
  writeJsonKubeconfig,
  type ReloaderRun,
  type UpdateStamp,
} from './lib/reloader.ts';
import { figure } from './lib/report.ts';
import { summarize } from './lib/stats.ts';

const NAME = 'app-config';
const SA = 'app';

/** A request as the admin; throws unless it succeeded (200 or 201). */
export async function admin(cp: ControlPlane, method: string, path: string, body: unknown): Promise<unknown> {
  const res = await cp.request(method, path, body);
  if (res.status !== 200 && res.status !== 201)
    throw new Error(`${method} ${path}: ${res.status} ${res.text.slice(0, 500)}`);
  return res.body;
}

/**
 * The reloader's access as in a pod: a ServiceAccount, a Role that may get/list/watch only these Secrets, and a
 * token from the TokenRequest API (an hour: longer than a section takes).
 */
export async function serviceAccountToken(cp: ControlPlane, names: string[] = [NAME]): Promise<string> {
  const rbac = 'rbac.authorization.k8s.io/v1';
  await admin(cp, 'POST', `/api/v1/namespaces/${NS}/serviceaccounts`, {
    apiVersion: 'v1',
    kind: 'ServiceAccount',
    metadata: { name: SA, namespace: NS },
  });
  await admin(cp, 'POST', `/apis/${rbac}/namespaces/${NS}/roles`, {
    apiVersion: rbac,
    kind: 'Role',
    metadata: { name: 'config-reloader', namespace: NS },
    rules: [
      { apiGroups: [''], resources: ['secrets'], resourceNames: names, verbs: ['get', 'list', 'watch'] },
    ],
  });
  await admin(cp, 'POST', `/apis/${rbac}/namespaces/${NS}/rolebindings`, {
    apiVersion: rbac,
    kind: 'RoleBinding',
    metadata: { name: 'config-reloader', namespace: NS },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'config-reloader' },
    subjects: [{ kind: 'ServiceAccount', name: SA, namespace: NS }],
  });
  const tokenRequest = (await admin(cp, 'POST', `/api/v1/namespaces/${NS}/serviceaccounts/${SA}/token`, {
    apiVersion: 'authentication.k8s.io/v1',
    kind: 'TokenRequest',
    spec: { expirationSeconds: 3600 },
  })) as { status: { token: string } };
  return tokenRequest.status.token;
}

/**
 * PUTs of the Secret as the admin (client certificate from its kubeconfig) on one kept-alive TLS connection,
 * stamped with process.hrtime: `sentAt` just before the request is written to an open connection, `answeredAt`
 * when the answer's status line and headers arrived.
 */
export function secretWriter(cp: ControlPlane, name = NAME) {
  const kubeconfig = parseYaml(readFileSync(cp.kubeconfig, 'utf8')) as {
    users: Array<{ user: { 'client-certificate-data': string; 'client-key-data': string } }>;
  };
  const user = kubeconfig.users[0]?.user;
  if (!user) throw new Error(`${cp.kubeconfig} has no user`);
  const agent = new Agent({
    keepAlive: true,
    maxSockets: 1,
    ca: cp.caCert,
    cert: Buffer.from(user['client-certificate-data'], 'base64'),
    key: Buffer.from(user['client-key-data'], 'base64'),
  });
  const url = `${cp.server}/api/v1/namespaces/${NS}/secrets/${name}`;
  let newConnections = 0;
  const send = (method: 'GET' | 'PUT', body?: string) =>
    new Promise<{ status: number; sentAt: bigint; answeredAt: bigint; text: string }>((resolve, reject) => {
      let sentAt = 0n;
      const req = request(
        url,
        {
          method,
          agent,
          headers: {
            accept: 'application/json',
            ...(body !== undefined
              ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }
              : {}),
          },
        },
        (res) => {
          const answeredAt = process.hrtime.bigint();
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (text += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, sentAt, answeredAt, text }));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.on('socket', () => {
        if (!req.reusedSocket) newConnections++;
        sentAt = process.hrtime.bigint();
        req.end(body);
      });
    });
  return {
    /** Opens the connection (a GET of the Secret), so that no update pays for a TLS handshake. */
    warmUp: async (): Promise<void> => {
      const res = await send('GET');
      if (res.status !== 200) throw new Error(`GET ${url}: ${res.status} ${res.text.slice(0, 500)}`);
    },
    put: async (object: Record<string, unknown>): Promise<{ sentAt: bigint; answeredAt: bigint }> => {
      const res = await send('PUT', JSON.stringify(object));
      if (res.status !== 200) throw new Error(`PUT ${url}: ${res.status} ${res.text.slice(0, 500)}`);
      return res;
    },
    /** TLS connections opened, the warm-up's included (1: every update reused it). */
    connections: () => newConnections,
    close: () => agent.destroy(),
  };
}

export async function runPropagationReal(ctx: BenchContext): Promise<SectionResult> {
  const singles = 200;
  const padding = benchPadding();
  const dir = join('/dev/shm', `cri-bench-${process.pid}-propagation-real`);
  const section = 'propagation-real';

  ctx.log(`${section}: starting etcd, kube-apiserver and kube-controller-manager`);
  const cp = await startControlPlane();
  let receiver: ReloadReceiver | undefined;
  let reloader: ReloaderRun | undefined;
  let writer: ReturnType<typeof secretWriter> | undefined;
  try {
    ctx.log(`${section}: kube-apiserver ${cp.version} at ${cp.server}, up in ${cp.startMs} ms`);
    await admin(cp, 'POST', '/api/v1/namespaces', {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: NS },
    });
    await admin(cp, 'POST', `/api/v1/namespaces/${NS}/secrets`, benchSecret(NAME, 0, padding));
    const kubeconfig = join(ctx.tmp, `kubeconfig-${section}.json`);
    writeJsonKubeconfig(kubeconfig, {
      server: cp.server,
      caCert: cp.caCert,
      token: await serviceAccountToken(cp),
      namespace: NS,
    });

    receiver = new ReloadReceiver();
    await receiver.start(ctx, [dir], section);
    reloader = await startReloader(ctx, { kubeconfig }, [{ name: NAME, dir }], {
      reloadUrl: receiver.url,
      label: section,
    });
    writer = secretWriter(cp);
    await writer.warmUp();
    await sleep(200);

    ctx.log(`${section}: ${singles} single updates`);
    let version = 0;
    const put = writer.put;
    const run = await singleUpdates(
      receiver,
      singles,
      async (): Promise<UpdateStamp> => {
        const v = ++version;
        return { version: v, ...(await put(benchSecret(NAME, v, padding))) };
      },
      (v) => benchConfig(v, padding),
    );

    const s = summarize(run.fromSent);
    const a = summarize(run.fromAnswer);
    const rt = summarize(run.answer);
    const reloadFirst = run.fromAnswer.filter((ms) => ms < 0).length;
    return {
      figures: [
        figure({
          section,
          id: 'propagation-real.single.p50',
          label: `real kube-apiserver, single updates (${singles}): p50 PUT sent → reload`,
          value: s.p50,
          unit: 'ms',
          note: `kube-apiserver ${cp.version} + etcd; PUT sent → its 200 answer p50 ${rt.p50.toFixed(2)} ms, p99 ${rt.p99.toFixed(2)} ms`,
        }),
        figure({
          section,
          id: 'propagation-real.single.p99',
          label: `real kube-apiserver, single updates (${singles}): p99 PUT sent → reload`,
          value: s.p99,
          unit: 'ms',
          note: `max ${s.max.toFixed(2)} ms; 2 KiB Secret, 2 keys, TLS watch with a ServiceAccount token (Role by resourceNames)`,
        }),
        figure({
          section,
          id: 'propagation-real.single.answer.p50',
          label: `real kube-apiserver: p50 PUT's 200 answer → reload`,
          value: a.p50,
          unit: 'ms',
          note: `p99 ${a.p99.toFixed(2)} ms, max ${a.max.toFixed(2)} ms; negative: the reload arrived first (${reloadFirst} of ${singles})`,
        }),
        figure({
          section,
          id: 'propagation-real.single.stale',
          label: 'real kube-apiserver: reloads whose files were not the update, whole',
          value: run.wrong,
          unit: '',
          goal: { op: '<=', value: 0 },
          note: `stale ${run.stale}, mixed ${run.mixed}, config.yaml not whole ${run.notWhole}`,
        }),
      ],
      details: {
        kubernetes: cp.version,
        controlPlaneStartMs: cp.startMs,
        single: s,
        fromAnswer: a,
        putRoundTrip: rt,
        reloadBeforeAnswer: reloadFirst,
        tlsConnections: writer.connections(),
        singleSamples: run.fromSent,
        fromAnswerSamples: run.fromAnswer,
        putRoundTripSamples: run.answer,
      },
    };
  } finally {
    writer?.close();
    await reloader?.child.stop();
    await receiver?.close();
    await cp.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
