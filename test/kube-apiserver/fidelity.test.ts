/**
 * Fidelity of the test API server (test/support/kube-apiserver): the requests our code makes are sent to it and to
 * a real kube-apiserver (test/support/control-plane: v1.37.2 over etcd, with kube-controller-manager), and the
 * answers are compared: status codes, Status objects, list envelopes, watch events and their order, the objects'
 * shape and what the server sets on create and update. Each case runs the same steps against both servers, each in
 * its own namespace; what differs by nature (uids, timestamps, resourceVersion numbers, generated name suffixes)
 * is normalized, and facts about resourceVersions that our code relies on (they grow; a no-op write keeps it) are
 * computed on each side and compared as facts. A difference fails with a diff of the two answers.
 *
 * The requests are the ones of:
 * - the reloader's lean client (src/reloader/kube/client.ts, watch-stream.ts, source.ts): a list of one object by
 *   fieldSelector=metadata.name, a watch from its resourceVersion with allowWatchBookmarks and timeoutSeconds,
 *   with a ServiceAccount token limited by RBAC resourceNames; when bookmarks come (and when none does); 403, 401,
 *   404, 410 after an etcd compaction (hidden by the watch cache) and past the watch cache, an invalid
 *   resourceVersion;
 * - the webhook, through @kubernetes/client-node: the self-managed certificates (src/certs/self-managed/api.ts: Secret
 *   get/create/replace/merge patch, MutatingWebhookConfiguration get and JSON patch with a resourceVersion test)
 *   and the missed-injection scan (src/webhook/missed-injections.ts, scan-lease.ts, kube-http.ts: metadata-only
 *   lists page by page, one pod by metadata.name, the Lease's create, update and release, Event create).
 *
 * FIDELITY_DUMP=DIR writes each case's two normalized answers to DIR/N.json, to look at what is compared.
 *
 * Everything talks to 127.0.0.1 only; the one webhook configuration has a `url` on 127.0.0.1 and selectors that
 * match no object, so the real server never calls it.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { ApiError, describeForbidden } from '../../src/reloader/kube/api-error.ts';
import { KubeClient } from '../../src/reloader/kube/client.ts';
import { BearerToken } from '../../src/reloader/kube/token.ts';
import { readWatchStream } from '../../src/reloader/kube/watch-stream.ts';
import type { WatchEvent } from '../../src/reloader/kube/watch-stream.ts';
import { createCertApi } from '../../src/certs/self-managed/api.ts';
import { kubeHttp } from '../../src/webhook/kube-http.ts';
import { buildEvent, METADATA_ACCEPT, type PodLike } from '../../src/webhook/missed-injections.ts';
import { microTime } from '../../src/webhook/scan-lease.ts';
import type { ControlPlane } from '../support/control-plane/index.ts';
import { startControlPlane } from '../support/control-plane/index.ts';
import type { Grant } from '../support/kube-apiserver/index.ts';
import { TestApiServer } from '../support/kube-apiserver/index.ts';
import type { Endpoint } from '../support/kube-apiserver/raw-client.ts';
import { rawRequest } from '../support/kube-apiserver/raw-client.ts';

const b64 = (s: string): string => Buffer.from(s).toString('base64');
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------------------------------
// The two servers behind one interface

interface Target {
  readonly name: 'kube-apiserver' | 'test API server';
  readonly endpoint: Endpoint;
  /** A token with every permission (a cluster-admin ServiceAccount on the real server). */
  readonly adminToken: string;
  /** Creates a namespace and waits for what kube-controller-manager adds to it (ServiceAccount default, kube-root-ca.crt). */
  namespace(name: string): Promise<void>;
  /** A ServiceAccount's bearer token with these namespaced grants (real: SA, Role, RoleBinding and a TokenRequest). */
  serviceAccount(namespace: string, name: string, grants: Grant[]): Promise<string>;
  /** Compacts the storage's history (etcd); a watch served from the watch cache does not notice. */
  compactStorage(): Promise<void>;
  /** Makes every resourceVersion seen so far too old to watch from (real: compaction and an API server restart). */
  expireHistory(): Promise<void>;
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(50);
  }
}

async function realTarget(cp: ControlPlane): Promise<Target> {
  const admin = async (method: string, path: string, body?: unknown): Promise<unknown> => {
    const res = await cp.request(method, path, body);
    if (res.status >= 300) throw new Error(`${method} ${path}: HTTP ${res.status} ${res.text}`);
    return res.body;
  };
  const token = async (namespace: string, name: string): Promise<string> => {
    const review = (await admin('POST', `/api/v1/namespaces/${namespace}/serviceaccounts/${name}/token`, {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenRequest',
      spec: { expirationSeconds: 3600 },
    })) as { status: { token: string } };
    return review.status.token;
  };
  await admin('POST', '/api/v1/namespaces/kube-system/serviceaccounts', {
    metadata: { name: 'fidelity-admin' },
  });
  await admin('POST', '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings', {
    metadata: { name: 'fidelity-admin' },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cluster-admin' },
    subjects: [{ kind: 'ServiceAccount', name: 'fidelity-admin', namespace: 'kube-system' }],
  });
  const adminToken = await token('kube-system', 'fidelity-admin');
  const endpoint = { url: cp.server, caCert: cp.caCert };
  await until(
    'the admin ServiceAccount is authorized',
    async () =>
      (await rawRequest(endpoint, 'GET', '/api/v1/namespaces', { token: adminToken })).status === 200,
  );
  return {
    name: 'kube-apiserver',
    endpoint,
    adminToken,
    async namespace(name) {
      await admin('POST', '/api/v1/namespaces', { metadata: { name } });
      await until(`namespace ${name} filled by kube-controller-manager`, async () => {
        const sa = await cp.request('GET', `/api/v1/namespaces/${name}/serviceaccounts/default`);
        const ca = await cp.request('GET', `/api/v1/namespaces/${name}/configmaps/kube-root-ca.crt`);
        return sa.status === 200 && ca.status === 200;
      });
    },
    async serviceAccount(namespace, name, grants) {
      await admin('POST', `/api/v1/namespaces/${namespace}/serviceaccounts`, { metadata: { name } });
      await admin('POST', `/apis/rbac.authorization.k8s.io/v1/namespaces/${namespace}/roles`, {
        metadata: { name },
        rules: grants.map((g) => {
          if (g.namespace !== namespace) throw new Error('only grants in the ServiceAccount namespace');
          return {
            apiGroups: [g.group ?? ''],
            resources: [g.resource],
            verbs: g.verbs,
            ...(g.names ? { resourceNames: g.names } : {}),
          };
        }),
      });
      await admin('POST', `/apis/rbac.authorization.k8s.io/v1/namespaces/${namespace}/rolebindings`, {
        metadata: { name },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name },
        subjects: [{ kind: 'ServiceAccount', name, namespace }],
      });
      // RBAC takes effect once the authorizer's informers saw the RoleBinding.
      for (const g of grants) {
        const attributes = {
          namespace,
          verb: g.verbs[0],
          group: g.group ?? '',
          resource: g.resource,
          ...(g.names ? { name: g.names[0] } : {}),
        };
        await until(`RBAC allows ${name} to ${attributes.verb} ${g.resource}`, async () => {
          const review = (await admin('POST', '/apis/authorization.k8s.io/v1/subjectaccessreviews', {
            apiVersion: 'authorization.k8s.io/v1',
            kind: 'SubjectAccessReview',
            spec: {
              user: `system:serviceaccount:${namespace}:${name}`,
              groups: [
                'system:serviceaccounts',
                `system:serviceaccounts:${namespace}`,
                'system:authenticated',
              ],
              resourceAttributes: attributes,
            },
          })) as { status?: { allowed?: boolean } };
          return review.status?.allowed === true;
        });
      }
      return token(namespace, name);
    },
    async compactStorage() {
      await cp.compactEtcd();
    },
    async expireHistory() {
      await cp.compactEtcd();
      await cp.restartApiServer();
    },
  };
}

function fakeTarget(api: TestApiServer): Target {
  return {
    name: 'test API server',
    endpoint: api,
    adminToken: api.adminToken,
    async namespace(name) {
      const res = await rawRequest(api, 'POST', '/api/v1/namespaces', {
        token: api.adminToken,
        body: { metadata: { name } },
      });
      if (res.status !== 201) throw new Error(`namespace ${name}: HTTP ${res.status} ${res.body}`);
    },
    async serviceAccount(namespace, name, grants) {
      const res = await rawRequest(api, 'POST', `/api/v1/namespaces/${namespace}/serviceaccounts`, {
        token: api.adminToken,
        body: { metadata: { name } },
      });
      if (res.status !== 201) throw new Error(`serviceaccount ${name}: HTTP ${res.status} ${res.body}`);
      return api.addServiceAccount(namespace, name, grants);
    },
    // The test API server's history is the watch cache's: compacting etcd alone changes nothing a watch sees.
    compactStorage: async () => {},
    expireHistory: async () => api.compact(),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Requests, made the way our code makes them

interface Answer {
  status: number;
  contentType?: string | undefined;
  body?: unknown;
}

/** A plain request (no client library), for writes our code does not make itself and for protocol details. */
async function call(
  t: Target,
  method: string,
  path: string,
  body?: unknown,
  opts: { token?: string; contentType?: string } = {},
): Promise<Answer> {
  const res = await rawRequest(t.endpoint, method, path, {
    token: opts.token ?? t.adminToken,
    ...(body !== undefined ? { body } : {}),
    ...(opts.contentType ? { contentType: opts.contentType } : {}),
  });
  let parsed: unknown = res.body;
  try {
    parsed = JSON.parse(res.body);
  } catch {
    // not JSON: compared as text
  }
  return { status: res.status, contentType: res.headers['content-type'], body: parsed };
}

/** The reloader's client with a bearer token, as src/reloader/kube/cluster-access.ts builds it from a kubeconfig. */
function reloaderClient(t: Target, token: string): KubeClient {
  return new KubeClient({
    server: new URL(t.endpoint.url),
    tls: { ca: Buffer.from(t.endpoint.caCert), rejectUnauthorized: true },
    token: new BearerToken({ value: token }),
    origin: 'fidelity test',
  });
}

/** The reloader's list path (SourceWatcher.listPath). */
function listPath(namespace: string, resource: 'secrets' | 'configmaps', name: string): string {
  return `/api/v1/namespaces/${namespace}/${resource}?fieldSelector=${encodeURIComponent(`metadata.name=${name}`)}`;
}

/** The reloader's watch path (SourceWatcher.watch). */
function watchPath(list: string, resourceVersion: string, timeoutSeconds: number): string {
  return `${list}&watch=true&allowWatchBookmarks=true&resourceVersion=${encodeURIComponent(resourceVersion)}&timeoutSeconds=${timeoutSeconds}`;
}

/** What the reloader's client makes of an error: the HTTP code and the Status it parsed. */
function apiErrorAnswer(err: unknown): Answer {
  if (!(err instanceof ApiError)) throw err;
  return { status: err.code, body: err.status };
}

async function bodyOf(res: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of res as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

/** A GET through the reloader's client (its `stream`, so that the headers are seen too). */
async function reloaderGet(t: Target, token: string, path: string): Promise<Answer> {
  const client = reloaderClient(t, token);
  try {
    const res = await client.stream(path, { idleTimeoutMs: 15_000 });
    const text = await bodyOf(res);
    return {
      status: res.statusCode ?? 0,
      contentType: res.headers['content-type'],
      body: JSON.parse(text) as unknown,
    };
  } catch (err) {
    return apiErrorAnswer(err);
  } finally {
    client.destroy();
  }
}

interface WatchAnswer extends Answer {
  events?: WatchEvent[];
  /** 'closed by the server' (timeoutSeconds, or after an ERROR), or 'stopped' by the caller's predicate. */
  end?: string;
}

/**
 * A watch through the reloader's client and stream reader: opens `path`, runs `during` while events arrive, and
 * reads until the server ends the stream or `stopWhen` says enough.
 */
async function reloaderWatch(
  t: Target,
  token: string,
  path: string,
  during: () => Promise<void> = async () => {},
  stopWhen: (events: WatchEvent[]) => boolean = () => false,
): Promise<WatchAnswer> {
  const client = reloaderClient(t, token);
  try {
    let res: IncomingMessage;
    try {
      res = await client.stream(path, { idleTimeoutMs: 15_000 });
    } catch (err) {
      return apiErrorAnswer(err);
    }
    const events: WatchEvent[] = [];
    let stopped = false;
    const reading = readWatchStream(res, (event) => {
      events.push(event);
      stopped = stopWhen(events);
      return !stopped;
    });
    await during();
    await reading;
    return {
      status: res.statusCode ?? 0,
      contentType: res.headers['content-type'],
      events: collapseBookmarks(events),
      end: stopped ? 'stopped' : 'closed by the server',
    };
  } finally {
    client.destroy();
  }
}

/**
 * Consecutive BOOKMARK events as one: the real watch cache sends its pre-timeout bookmark once or twice, depending
 * on where the deadline falls within the second its bookmark timer ticks on (it re-queues a watcher whose
 * bookmark went out before the exact deadline - 2 s into the next second's bucket).
 */
function collapseBookmarks(events: WatchEvent[]): WatchEvent[] {
  return events.filter((e, i) => !(e.type === 'BOOKMARK' && events[i - 1]?.type === 'BOOKMARK'));
}

/** A KubeConfig with a bearer token, as the webhook loads one (src/webhook/kube-config.ts). */
function kubeConfig(t: Target, token = t.adminToken): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: t.endpoint.url, caData: b64(t.endpoint.caCert) }],
    users: [{ name: 'u', token }],
    contexts: [{ name: 'c', cluster: 'c', user: 'u' }],
    currentContext: 'c',
  });
  return kc;
}

/** What client-node hands our code, as JSON (its classes carry Dates and drop undefined fields). */
const plain = (value: unknown): unknown =>
  value === undefined ? '(undefined)' : (JSON.parse(JSON.stringify(value)) as unknown);

const rvOf = (obj: unknown): string =>
  String((obj as { metadata?: { resourceVersion?: string } } | undefined)?.metadata?.resourceVersion);

/**
 * Whether the resourceVersions of a list and the watch events after it grow as our code assumes: each object
 * event newer than what came before, a bookmark not older. (Both servers make them decimal strings.)
 */
function rvOrder(listRv: string, events: Array<{ type: string; object: unknown }>): string {
  let last = BigInt(listRv);
  for (const e of events) {
    const rv = BigInt(rvOf(e.object));
    if (e.type === 'BOOKMARK' ? rv < last : rv <= last) return `a ${e.type} event goes back`;
    last = rv;
  }
  return 'growing';
}

// ---------------------------------------------------------------------------------------------------------------
// Normalization and comparison

interface Compare {
  /**
   * Kinds whose managedFields are compared without their field paths (manager, operation, apiVersion, time and
   * fieldsType only): the test API server has no OpenAPI schema, so its paths for pods are an approximation.
   */
  fieldPathsUncompared?: string[];
}

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g;
const TIME = /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z/g;
const RANDOM_SUFFIX = /\b(kube-api-access-)[a-z0-9]{5}\b/g;

/** Replaces what differs by nature between two servers; everything else is compared as is. */
function normalize(value: unknown, opts: Compare, key = '', kind = ''): unknown {
  if (typeof value === 'string') {
    if (key === 'resourceVersion' && /^\d+$/.test(value)) return '<rv>';
    // The precision stays visible: metav1.Time is whole seconds on the wire, client-node's Dates print milliseconds.
    let s = value
      .replace(UUID, '<uid>')
      .replace(TIME, (t) => (t.includes('.') ? '<time.fraction>' : '<time>'))
      .replace(RANDOM_SUFFIX, '$1<random>');
    // Status messages quote resourceVersions: "too old resource version: 236 (247)".
    if (key === 'message') s = s.replace(/\b\d{2,}\b/g, '<n>');
    return s;
  }
  if (Array.isArray(value)) {
    const items = value.map((v) => normalize(v, opts, key, kind));
    // Both servers order managedFields by operation, then time, then manager: with times normalized away, the
    // order of two entries made in the same second or not would differ by chance, so they are compared sorted.
    if (key === 'managedFields') items.sort((a, b) => (JSON.stringify(a) < JSON.stringify(b) ? -1 : 1));
    return items;
  }
  if (typeof value !== 'object' || value === null) return value;
  const own = (value as { kind?: unknown }).kind;
  const inKind = typeof own === 'string' ? own : kind;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    if (k === 'fieldsV1' && opts.fieldPathsUncompared?.includes(inKind)) out[k] = '<fieldsV1>';
    else out[k] = normalize(v, opts, k, inKind);
  }
  return out;
}

/** JSON with sorted keys, one value per line: what the diff compares. */
function stableLines(value: unknown): string[] {
  const sort = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(sort)
      : typeof v === 'object' && v !== null
        ? Object.fromEntries(
            Object.keys(v)
              .sort()
              .map((k) => [k, sort((v as Record<string, unknown>)[k])]),
          )
        : v;
  return (JSON.stringify(sort(value), null, 2) ?? 'undefined').split('\n');
}

/** A line diff (longest common subsequence): '-' only in a, '+' only in b, unchanged runs shortened. */
function lineDiff(a: string[], b: string[], context = 3): string {
  const n = a.length;
  const m = b.length;
  const lcs: number[][] = Array.from({ length: n + 1 }, () => new Array<number>(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--)
    for (let j = m - 1; j >= 0; j--)
      (lcs[i] as number[])[j] =
        a[i] === b[j]
          ? ((lcs[i + 1] as number[])[j + 1] as number) + 1
          : Math.max((lcs[i + 1] as number[])[j] as number, (lcs[i] as number[])[j + 1] as number);
  const ops: Array<[' ' | '-' | '+', string]> = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) {
      ops.push([' ', a[i] as string]);
      i++;
      j++;
    } else if (
      j < m &&
      (i === n || ((lcs[i] as number[])[j + 1] as number) >= ((lcs[i + 1] as number[])[j] as number))
    ) {
      ops.push(['+', b[j] as string]);
      j++;
    } else {
      ops.push(['-', a[i] as string]);
      i++;
    }
  }
  const near = ops.map((_, k) =>
    ops.slice(Math.max(0, k - context), k + context + 1).some(([op]) => op !== ' '),
  );
  const out: string[] = [];
  let skipped = 0;
  ops.forEach(([op, line], k) => {
    if (near[k]) {
      if (skipped > 0) out.push(`  … ${skipped} unchanged line${skipped === 1 ? '' : 's'}`);
      skipped = 0;
      out.push(`${op} ${line}`);
    } else skipped++;
  });
  if (skipped > 0) out.push(`  … ${skipped} unchanged line${skipped === 1 ? '' : 's'}`);
  return out.join('\n');
}

function assertFaithful(what: string, version: string, real: unknown, fake: unknown, opts: Compare): void {
  const a = stableLines(normalize(real, opts));
  const b = stableLines(normalize(fake, opts));
  if (a.join('\n') === b.join('\n')) return;
  assert.fail(
    `${what}: the test API server answers differently from kube-apiserver ${version}\n` +
      `(- kube-apiserver, + test API server; after normalizing uids, times and resourceVersions)\n` +
      lineDiff(a, b),
  );
}

// ---------------------------------------------------------------------------------------------------------------
// The cases: each runs against both servers in a namespace of its own and returns what it observed

interface Case extends Compare {
  name: string;
  run(t: Target, namespace: string): Promise<Record<string, unknown>>;
}

const secret = (name: string, value: string): Record<string, unknown> => ({
  apiVersion: 'v1',
  kind: 'Secret',
  metadata: { name },
  data: { 'config.yaml': b64(value) },
});

const READER: (ns: string) => Grant[] = (ns) => [
  { verbs: ['get', 'list', 'watch'], resource: 'secrets', namespace: ns, names: ['app-config', 'absent'] },
  { verbs: ['get', 'list', 'watch'], resource: 'configmaps', namespace: ns, names: ['app-settings'] },
];

const CASES: Case[] = [
  {
    name: 'reloader: list one Secret by metadata.name, then watch it from the list resourceVersion (bookmarks, timeoutSeconds)',
    async run(t, ns) {
      const token = await t.serviceAccount(ns, 'app', READER(ns));
      const created = await call(t, 'POST', `/api/v1/namespaces/${ns}/secrets`, secret('app-config', 'a'));
      await call(t, 'POST', `/api/v1/namespaces/${ns}/secrets`, secret('other', 'x'));
      const list = await reloaderGet(t, token, listPath(ns, 'secrets', 'app-config'));
      const listRv = rvOf(list.body);
      const writes: Record<string, Answer> = {};
      const path = `/api/v1/namespaces/${ns}/secrets/app-config`;
      // timeoutSeconds 5: the real watch cache sends its bookmark 2 s before the end, well after these writes.
      const watch = await reloaderWatch(
        t,
        token,
        watchPath(listPath(ns, 'secrets', 'app-config'), listRv, 5),
        async () => {
          writes.update = await call(t, 'PUT', path, {
            ...(created.body as object),
            data: { 'config.yaml': b64('b') },
          });
          writes.noOp = await call(t, 'PUT', path, writes.update.body);
          writes.otherObject = await call(t, 'PUT', `/api/v1/namespaces/${ns}/secrets/other`, {
            ...secret('other', 'y'),
          });
          writes.delete = await call(t, 'DELETE', path);
          writes.recreate = await call(
            t,
            'POST',
            `/api/v1/namespaces/${ns}/secrets`,
            secret('app-config', 'c'),
          );
        },
      );
      const events = watch.events ?? [];
      return {
        created,
        list,
        writes,
        watch,
        facts: {
          'list resourceVersion is the created object’s or newer':
            BigInt(listRv) >= BigInt(rvOf(created.body)) ? 'yes' : 'no',
          'a no-op PUT keeps the resourceVersion':
            rvOf(writes.noOp?.body) === rvOf(writes.update?.body) ? 'yes' : 'no',
          'event resourceVersions after the list': rvOrder(listRv, events),
        },
      };
    },
  },
  {
    name: 'reloader: an object that does not exist (an optional source): an empty list, and 404 for a GET',
    async run(t, ns) {
      const token = await t.serviceAccount(ns, 'app', READER(ns));
      return {
        listSecret: await reloaderGet(t, token, listPath(ns, 'secrets', 'absent')),
        listConfigMap: await reloaderGet(t, token, listPath(ns, 'configmaps', 'app-settings')),
        getAsServiceAccount: await reloaderGet(t, token, `/api/v1/namespaces/${ns}/secrets/absent`),
        getRaw: await call(t, 'GET', `/api/v1/namespaces/${ns}/configmaps/app-settings`),
      };
    },
  },
  {
    name: 'reloader: list and watch forbidden for a ServiceAccount whose Role is limited by resourceNames',
    async run(t, ns) {
      const token = await t.serviceAccount(ns, 'app', READER(ns));
      await call(t, 'POST', `/api/v1/namespaces/${ns}/secrets`, secret('app-config', 'a'));
      const paths = {
        'list without fieldSelector': `/api/v1/namespaces/${ns}/secrets`,
        'list of another name': listPath(ns, 'secrets', 'other'),
        'watch of another name': watchPath(listPath(ns, 'secrets', 'other'), '1', 60),
        'list of a kind not granted': listPath(ns, 'configmaps', 'app-config'),
        'get of another name': `/api/v1/namespaces/${ns}/secrets/other`,
      };
      const out: Record<string, unknown> = {};
      for (const [what, path] of Object.entries(paths)) {
        const client = reloaderClient(t, token);
        try {
          await client.getJson(path, { idleTimeoutMs: 15_000 });
          out[what] = 'allowed';
        } catch (err) {
          // What the reloader logs (source.ts reportFailure) comes from the Status message.
          out[what] = {
            ...apiErrorAnswer(err),
            logged: err instanceof ApiError ? describeForbidden(err, 'secrets', 'app-config', ns) : undefined,
          };
        } finally {
          client.destroy();
        }
      }
      const list = await reloaderGet(t, token, listPath(ns, 'secrets', 'app-config'));
      const client = reloaderClient(t, token);
      try {
        const res = await client.stream(
          watchPath(listPath(ns, 'secrets', 'app-config'), rvOf(list.body), 60),
        );
        res.destroy();
        out['the granted name: list, then a watch that opens'] = { list: list.status, watch: res.statusCode };
      } finally {
        client.destroy();
      }
      return out;
    },
  },
  {
    name: 'reloader: a watch with bookmarks on a server where nothing is written: no bookmark, a clean end at timeoutSeconds',
    async run(t, ns) {
      const token = await t.serviceAccount(ns, 'app', READER(ns));
      await call(t, 'POST', `/api/v1/namespaces/${ns}/secrets`, secret('app-config', 'a'));
      const list = await reloaderGet(t, token, listPath(ns, 'secrets', 'app-config'));
      // The watch cache sends a bookmark only past the revision the watch started from; its pre-timeout one is
      // due 1 s in, and nothing moves the revision here (this control plane has no nodes and no leader election).
      return {
        watch: await reloaderWatch(
          t,
          token,
          watchPath(listPath(ns, 'secrets', 'app-config'), rvOf(list.body), 3),
        ),
      };
    },
  },
  {
    name: 'reloader: a watch from a resourceVersion that etcd compacted away is still served by the watch cache',
    async run(t, ns) {
      const created = await call(t, 'POST', `/api/v1/namespaces/${ns}/secrets`, secret('app-config', 'a'));
      const path = `/api/v1/namespaces/${ns}/secrets/app-config`;
      const first = await call(t, 'PUT', path, {
        ...(created.body as object),
        data: { 'config.yaml': b64('b') },
      });
      await call(t, 'PUT', path, { ...(first.body as object), data: { 'config.yaml': b64('c') } });
      await t.compactStorage();
      // timeoutSeconds 1: too short for a bookmark before the end.
      const watch = await reloaderWatch(
        t,
        t.adminToken,
        watchPath(listPath(ns, 'secrets', 'app-config'), rvOf(created.body), 1),
      );
      return { watch };
    },
  },
  {
    name: 'reloader: an invalid resourceVersion',
    async run(t, ns) {
      return {
        watch: await reloaderWatch(
          t,
          t.adminToken,
          watchPath(listPath(ns, 'secrets', 'app-config'), 'abc', 5),
        ),
        list: await reloaderGet(
          t,
          t.adminToken,
          `${listPath(ns, 'secrets', 'app-config')}&resourceVersion=abc`,
        ),
      };
    },
  },
  {
    name: 'reloader: a token the server does not know',
    async run(t, ns) {
      return { list: await reloaderGet(t, 'not-a-token', listPath(ns, 'secrets', 'app-config')) };
    },
  },
  {
    name: 'webhook certificates: the Secret read, created, created again, replaced, replaced from a stale copy, annotated',
    async run(t, ns) {
      const api = createCertApi(kubeConfig(t), {
        namespace: ns,
        secretName: 'webhook-certs',
        webhookConfigName: 'unused',
      });
      const content = {
        data: { 'tls.crt': b64('cert'), 'tls.key': b64('key'), 'ca.crt': b64('ca') },
        annotations: { 'config-reloader.io/generation': '1' },
      };
      const out: Record<string, unknown> = {};
      out.readMissing = plain(await api.readSecret());
      out.create = plain(await api.createSecret(content));
      out.createAgain = plain(await api.createSecret(content));
      const createAgainRaw = await call(t, 'POST', `/api/v1/namespaces/${ns}/secrets`, {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: 'webhook-certs' },
        type: 'kubernetes.io/tls',
        data: content.data,
      });
      out.createAgainRaw = createAgainRaw;
      const current = await api.readSecret();
      out.read = plain(current);
      if (!current) throw new Error('the Secret was not read back');
      out.replace = plain(
        await api.replaceSecret(current, { ...content, data: { ...content.data, 'tls.crt': b64('cert2') } }),
      );
      out.replaceStale = plain(
        await api.replaceSecret(current, { ...content, data: { ...content.data, 'tls.crt': b64('cert3') } }),
      );
      out.replaceStaleRaw = await call(t, 'PUT', `/api/v1/namespaces/${ns}/secrets/webhook-certs`, {
        ...(plain(current) as object),
        data: { ...content.data, 'tls.crt': b64('cert3') },
      });
      await api.patchSecretAnnotations({
        'config-reloader.io/served-pod-a': 'x',
        'config-reloader.io/generation': null,
      });
      out.afterPatch = plain(await api.readSecret());
      out.tlsWithoutKeys = await call(t, 'POST', `/api/v1/namespaces/${ns}/secrets`, {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: 'incomplete' },
        type: 'kubernetes.io/tls',
        data: { 'ca.crt': b64('ca') },
      });
      return out;
    },
  },
  {
    name: 'webhook certificates: the MutatingWebhookConfiguration read and its caBundle written by a JSON patch with a resourceVersion test',
    async run(t, ns) {
      const name = `${ns}.fidelity.example.com`;
      const path = `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${name}`;
      const never = { matchLabels: { 'fidelity.example.com/never': 'true' } };
      const out: Record<string, unknown> = {};
      out.create = await call(
        t,
        'POST',
        '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations',
        {
          apiVersion: 'admissionregistration.k8s.io/v1',
          kind: 'MutatingWebhookConfiguration',
          metadata: { name },
          webhooks: ['a', 'b'].map((w) => ({
            name: `${w}.${name}`,
            // Never called: no object carries the label the selectors ask for.
            clientConfig: { url: 'https://127.0.0.1:9/mutate' },
            rules: [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'] }],
            namespaceSelector: never,
            objectSelector: never,
            sideEffects: 'None',
            admissionReviewVersions: ['v1'],
            failurePolicy: 'Ignore',
          })),
        },
      );
      try {
        const api = createCertApi(kubeConfig(t), {
          namespace: ns,
          secretName: 'unused',
          webhookConfigName: name,
        });
        const view = await api.readWebhookConfig();
        out.read = plain(view);
        if (!view) throw new Error('the webhook configuration was not read back');
        out.write = await api.writeCaBundle(
          view,
          b64('-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n'),
          1,
        );
        out.writeStale = await api.writeCaBundle(
          view,
          b64('-----BEGIN CERTIFICATE-----\nB\n-----END CERTIFICATE-----\n'),
          2,
        );
        out.readAgain = plain(await api.readWebhookConfig());
        out.failedTestRaw = await call(
          t,
          'PATCH',
          path,
          [{ op: 'test', path: '/metadata/resourceVersion', value: '1' }],
          {
            contentType: 'application/json-patch+json',
          },
        );
        out.missingParentRaw = await call(
          t,
          'PATCH',
          path,
          [{ op: 'add', path: '/metadata/labels/x', value: 'y' }],
          {
            contentType: 'application/json-patch+json',
          },
        );
        out.get = await call(t, 'GET', path);
      } finally {
        out.delete = await call(t, 'DELETE', path);
      }
      return out;
    },
  },
  {
    name: 'missed injections: the scan’s metadata-only pages (limit, continue), one pod by metadata.name, the Lease taken, renewed and released, an Event recorded twice',
    fieldPathsUncompared: ['PodList', 'PartialObjectMetadata', 'PartialObjectMetadataList'],
    async run(t, ns) {
      // The scan's own client (src/webhook/kube-http.ts) and requests (missed-injections.ts, scan-lease.ts).
      const http = kubeHttp(kubeConfig(t), 'config-reloader-injector/missed-injections');
      const ask = async (
        method: 'GET' | 'POST' | 'PUT',
        path: string,
        body?: unknown,
        accept?: string,
      ): Promise<Answer> => {
        const res = await http.request({
          method,
          path,
          ...(body !== undefined ? { body } : {}),
          ...(accept ? { accept } : {}),
        });
        return { status: res.status, body: res.body };
      };
      // Continue tokens are opaque (and encode the revision): compared as present or not.
      const opaque = (a: Answer): Answer => {
        const meta = (a.body as { metadata?: { continue?: string } } | undefined)?.metadata;
        if (meta?.continue) meta.continue = '<continue>';
        return a;
      };
      try {
        for (const name of ['a', 'b', 'c'])
          await call(t, 'POST', `/api/v1/namespaces/${ns}/pods`, {
            metadata: { name, annotations: { 'config-reloader.io/inject': 'true' }, labels: { app: 'shop' } },
            spec: { containers: [{ name: 'app', image: 'busybox:1.36' }] },
          });
        await call(
          t,
          'PATCH',
          `/api/v1/namespaces/${ns}`,
          { metadata: { labels: { 'fidelity-scan': ns } } },
          {
            contentType: 'application/merge-patch+json',
          },
        );
        const pods = `/api/v1/namespaces/${ns}/pods`;
        const page1 = await ask('GET', `${pods}?limit=2`, undefined, METADATA_ACCEPT);
        const token = (page1.body as { metadata?: { continue?: string } }).metadata?.continue ?? '';
        const page2 = await ask(
          'GET',
          `${pods}?limit=2&continue=${encodeURIComponent(token)}`,
          undefined,
          METADATA_ACCEPT,
        );
        const out: Record<string, unknown> = {
          page1: opaque(page1),
          page2: opaque(page2),
          namespaces: opaque(
            await ask(
              'GET',
              `/api/v1/namespaces?labelSelector=${encodeURIComponent(`fidelity-scan=${ns}`)}&limit=500`,
              undefined,
              METADATA_ACCEPT,
            ),
          ),
          listAsObject: await ask(
            'GET',
            `${pods}?limit=2`,
            undefined,
            'application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1',
          ),
          getAsList: await ask('GET', `${pods}/a`, undefined, METADATA_ACCEPT),
          getMetadata: await ask(
            'GET',
            `${pods}/a`,
            undefined,
            'application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1',
          ),
          candidate: await ask('GET', `${pods}?fieldSelector=${encodeURIComponent('metadata.name=a')}`),
        };
        const leases = `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases`;
        const lease = (holder: string, time: string, rv?: string): Record<string, unknown> => ({
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: { name: 'scan', namespace: ns, ...(rv ? { resourceVersion: rv } : {}) },
          spec: {
            holderIdentity: holder,
            leaseDurationSeconds: 630,
            acquireTime: time,
            renewTime: time,
            leaseTransitions: 0,
          },
        });
        const now = microTime(new Date());
        out.leaseMissing = await ask('GET', `${leases}/scan`);
        out.leaseCreated = await ask('POST', leases, lease('replica-a', now));
        out.leaseCreatedAgain = await ask('POST', leases, lease('replica-b', now));
        const rv = rvOf(out.leaseCreated && (out.leaseCreated as Answer).body);
        out.leaseMilliseconds = await ask(
          'PUT',
          `${leases}/scan`,
          lease('replica-a', '2025-06-01T10:00:00.123Z', rv),
        );
        out.leaseWithoutRv = await ask('PUT', `${leases}/scan`, lease('replica-a', now));
        const renewed = await ask('PUT', `${leases}/scan`, {
          ...lease('replica-a', microTime(new Date()), rv),
          metadata: {
            name: 'scan',
            namespace: ns,
            resourceVersion: rv,
            annotations: { 'config-reloader.io/missed-injections': '1' },
          },
        });
        out.leaseRenewed = renewed;
        out.leaseStale = await ask('PUT', `${leases}/scan`, lease('replica-b', microTime(new Date()), rv));
        out.leaseReleased = await ask(
          'PUT',
          `${leases}/scan`,
          lease('', microTime(new Date()), rvOf(renewed.body)),
        );
        const pod = (out.candidate as { body: { items: PodLike[] } }).body.items[0] as PodLike;
        const event = buildEvent(pod, { optIn: 'annotation', outcome: { action: 'patch' } });
        out.event = await ask('POST', `/api/v1/namespaces/${ns}/events`, event);
        out.eventAgain = await ask('POST', `/api/v1/namespaces/${ns}/events`, event);
        return out;
      } finally {
        http.close();
      }
    },
  },
  {
    // Last: on the real server this restarts kube-apiserver, whose watch cache then starts at the current revision.
    name: 'reloader: a watch from a resourceVersion older than the watch cache: 410 Expired in an ERROR event, then a relist',
    async run(t, ns) {
      const created = await call(t, 'POST', `/api/v1/namespaces/${ns}/secrets`, secret('app-config', 'a'));
      await call(t, 'PUT', `/api/v1/namespaces/${ns}/secrets/app-config`, {
        ...(created.body as object),
        data: { 'config.yaml': b64('b') },
      });
      await t.expireHistory();
      // A watch cache still initializing after the restart answers 429, and the reloader retries: so does this.
      const open = (): Promise<WatchAnswer> =>
        reloaderWatch(
          t,
          t.adminToken,
          watchPath(listPath(ns, 'secrets', 'app-config'), rvOf(created.body), 60),
        );
      let watch = await open();
      for (const deadline = Date.now() + 15_000; watch.status === 429 && Date.now() < deadline;) {
        await sleep(200);
        watch = await open();
      }
      const error = watch.events?.[0]?.object as { code?: number; reason?: string } | undefined;
      return {
        watch,
        // source.ts: an ERROR with code 410 or reason Expired/Gone ends the watch as 'gone' and lists again.
        reloaderSees: error?.code === 410 || error?.reason === 'Expired' ? 'gone' : 'an error',
        relist: await reloaderGet(t, t.adminToken, listPath(ns, 'secrets', 'app-config')),
      };
    },
  },
];

void describe('test API server fidelity: the requests our code makes, answered by it and by a real kube-apiserver', () => {
  let cp: ControlPlane | undefined;
  let api: TestApiServer | undefined;
  let targets: [Target, Target];

  before(async () => {
    // Assigned as each one is up, so that after() stops whatever started even if the other failed.
    await Promise.all([
      startControlPlane().then((started) => (cp = started)),
      // Bookmarks about once a minute and only past the watch's start revision, as the real server sends them.
      TestApiServer.start({
        namespaceControllers: true,
        bookmarkIntervalMs: 60_000,
        idleBookmarks: false,
      }).then((started) => (api = started)),
    ]);
    if (!cp || !api) throw new Error('unreachable: both servers are up');
    targets = [await realTarget(cp), fakeTarget(api)];
  });
  after(async () => {
    await api?.close();
    await cp?.stop();
  });

  CASES.forEach((c, i) => {
    void test(c.name, async () => {
      const ns = `fidelity-${i + 1}`;
      const [real, fake] = await Promise.all(
        targets.map(async (t) => {
          await t.namespace(ns);
          return c.run(t, ns);
        }),
      );
      if (process.env.FIDELITY_DUMP)
        writeFileSync(
          `${process.env.FIDELITY_DUMP}/${i + 1}.json`,
          JSON.stringify({ real: normalize(real, c), fake: normalize(fake, c) }, null, 1),
        );
      assertFaithful(c.name, cp?.version ?? '', real, fake, c);
    });
  });
});
