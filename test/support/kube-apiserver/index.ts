import { EventEmitter } from 'node:events';
import { writeFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import type { Server } from 'node:https';
import type { Socket } from 'node:net';
import { generateCertBundle } from '../../../src/certs/generate.ts';
import type { AdmissionRecord } from './admission.ts';
import { PodAdmission } from './admission.ts';
import { Authorizer } from './authz.ts';
import type { FailOptions, StaleListOptions } from './faults.ts';
import { Faults, StaleLists } from './faults.ts';
import type { RequestContext } from './handler.ts';
import { ApiHandler, sendStatus } from './handler.ts';
import { kubeconfigYaml } from './kubeconfig.ts';
import { openapiDocument } from './openapi.ts';
import { resourceByKind, resourceByName } from './resources.ts';
import { Store } from './store.ts';
import type { Grant, KubeObject, WatchEventType } from './types.ts';
import type { ActiveWatch, WatchHooks } from './watch.ts';
import type { ServiceResolver } from './webhook-client.ts';

export type { Grant, KubeObject, WatchEventType } from './types.ts';
export { KubeError } from './status.ts';
export type { StatusBody } from './status.ts';
export type { FailOptions, StaleListOptions } from './faults.ts';
export type { AdmissionRecord } from './admission.ts';
export type { ServiceResolver } from './webhook-client.ts';

export interface StartOptions {
  /** Port to listen on; 0 (the default) picks a free one. */
  port?: number;
  /** Interval between BOOKMARK events on watches that allow them (default 1000 ms; the real server's is about a minute). */
  bookmarkIntervalMs?: number;
  /**
   * Send bookmarks also on a watch that saw no newer revision than the one it started from (default true; tests
   * rely on a bookmark from a quiet server). false: as the real watch cache, which drops those, so that a watch on
   * a server where nothing is written gets no bookmark at all.
   */
  idleBookmarks?: boolean;
  /** How many changes the history keeps for watches resuming from an older resourceVersion (default 4096). */
  historySize?: number;
  /**
   * Where a webhook's `clientConfig.service` is reached (the real server resolves the Service to its ClusterIP);
   * without it only `clientConfig.url` webhooks can be called. Changeable later with `setServiceResolver`.
   */
  serviceResolver?: ServiceResolver;
  /**
   * Run what kube-controller-manager does for every namespace: create the `default` ServiceAccount and the
   * `kube-root-ca.crt` ConfigMap (this server's CA). Pod creates over HTTP need the ServiceAccount. Default false,
   * so that tests counting objects or resourceVersions see only their own.
   */
  namespaceControllers?: boolean;
}

/** Emitted as 'watch-event' on `events` as the event is handed to the watch's socket (see ActiveWatch's flush). */
export interface WatchEventRecord {
  type: WatchEventType;
  resource: string;
  namespace: string | undefined;
  name: string;
  resourceVersion: string;
  sentAt: bigint;
}

/** One answered request, in `requests` and emitted as 'request' on `events` (a watch: when its stream starts). */
export interface RequestRecord {
  method: string;
  path: string;
  query: string;
  user: string;
  status: number;
  /** The request's Accept header ('' without one): what form the client asked for (JSON, a Table, metadata only). */
  accept?: string;
}

const DEFAULT_NAMESPACES = ['default', 'kube-system', 'kube-public', 'kube-node-lease'];

/**
 * An in-process kube-apiserver for tests: HTTPS with its own CA, bearer tokens, RBAC-like grants, and the
 * list/watch protocol of the real one, so that @kubernetes/client-node, kubectl and our own client can talk to it.
 */
export class TestApiServer {
  readonly caCert: string;
  readonly adminToken: string;
  readonly events = new EventEmitter();
  readonly requests: RequestRecord[] = [];
  /** What each webhook did to each pod create, in order (also emitted as 'admission' on `events`). */
  readonly admissions: AdmissionRecord[] = [];

  readonly #tls: { cert: string; key: string };
  readonly #store: Store;
  readonly #authz = new Authorizer();
  readonly #faults = new Faults();
  readonly #staleLists = new StaleLists();
  readonly #handler: ApiHandler;
  readonly #bookmarkIntervalMs: number;
  readonly #idleBookmarks: boolean;
  readonly #sockets = new Set<Socket>();
  readonly #watches = new Set<ActiveWatch>();
  #server: Server | undefined;
  #port = 0;
  #resolver: ServiceResolver | undefined;

  private constructor(certs: { caCert: string; cert: string; key: string }, opts: StartOptions) {
    this.caCert = certs.caCert;
    this.#tls = { cert: certs.cert, key: certs.key };
    this.#store = new Store(opts.historySize ?? 4096);
    this.#bookmarkIntervalMs = opts.bookmarkIntervalMs ?? 1000;
    this.#idleBookmarks = opts.idleBookmarks ?? true;
    this.adminToken = this.#authz.addUser({ name: 'test-admin' });
    this.#resolver = opts.serviceResolver;
    const admission = new PodAdmission(
      {
        namespace: (name) => this.#store.get(resourceByName('namespaces'), undefined, name),
        serviceAccount: (ns, name) => this.#store.get(resourceByName('serviceaccounts'), ns, name),
        webhookConfigurations: () => this.#store.list(resourceByName('mutatingwebhookconfigurations')),
      },
      () => this.#resolver,
      (record) => {
        this.admissions.push(record);
        this.events.emit('admission', record);
      },
    );
    this.#handler = new ApiHandler(this.#store, this.#authz, {
      serverAddress: () => `127.0.0.1:${this.#port}`,
      watchHooks: () => this.#watchHooks(),
      onWatch: (w) => this.#watches.add(w),
      openapi: openapiDocument,
      admitPod: (pod, req) => admission.admit(pod, req),
    });
    const nsDef = resourceByName('namespaces');
    for (const name of DEFAULT_NAMESPACES)
      this.#store.create(nsDef, { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
    if (opts.namespaceControllers) {
      for (const name of DEFAULT_NAMESPACES) this.#fillNamespace(name);
      // After the write that made the namespace, never inside it: watchers must see the namespace first.
      this.#store.subscribe((ev) => {
        if (ev.type === 'ADDED' && ev.def === nsDef)
          queueMicrotask(() => this.#fillNamespace(ev.object.metadata.name));
      });
    }
    this.events.setMaxListeners(0);
  }

  static async start(opts: StartOptions = {}): Promise<TestApiServer> {
    const certs = await generateCertBundle({
      hosts: ['127.0.0.1', 'localhost'],
      caName: 'test-kube-apiserver-ca',
    });
    const server = new TestApiServer(certs, opts);
    await server.#listen(opts.port ?? 0);
    return server;
  }

  get url(): string {
    return `https://127.0.0.1:${this.#port}`;
  }

  get port(): number {
    return this.#port;
  }

  /** The newest resourceVersion (etcd's revision). */
  get resourceVersion(): string {
    return String(this.#store.rv);
  }

  /** A service account's bearer token; the user is system:serviceaccount:NAMESPACE:NAME. */
  addServiceAccount(namespace: string, name: string, grants: Grant[]): string {
    return this.#authz.addUser({
      name: `system:serviceaccount:${namespace}:${name}`,
      grants: structuredClone(grants),
    });
  }

  async writeKubeconfig(path: string, opts: { token?: string; namespace?: string } = {}): Promise<void> {
    const params: Parameters<typeof kubeconfigYaml>[0] = {
      server: this.url,
      caCert: this.caCert,
      token: opts.token ?? this.adminToken,
    };
    if (opts.namespace) params.namespace = opts.namespace;
    await writeFile(path, kubeconfigYaml(params), { mode: 0o600 });
  }

  /** Creates an object directly (no HTTP, no auth), creating its namespace first if missing. Throws KubeError. */
  create(obj: KubeObject): KubeObject {
    const def = resourceByKind(obj.apiVersion, obj.kind);
    const ns = obj.metadata.namespace;
    if (def.namespaced && !ns)
      throw new Error(
        `test kube-apiserver: create ${obj.kind} "${obj.metadata.name}": metadata.namespace is required`,
      );
    if (def.namespaced && ns && !this.get('namespaces', undefined, ns))
      this.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
    const { resourceVersion: _rv, uid: _uid, creationTimestamp: _ct, ...metadata } = obj.metadata;
    return this.#store.create(def, { ...obj, metadata });
  }

  /** Replaces an object directly; a metadata.resourceVersion, if present, must be current. Throws KubeError. */
  update(obj: KubeObject): KubeObject {
    return this.#store.update(resourceByKind(obj.apiVersion, obj.kind), obj);
  }

  /** Deletes an object directly. Throws KubeError (404) when it does not exist. */
  delete(resource: string, namespace: string | undefined, name: string): void {
    this.#store.delete(resourceByName(resource), namespace, name);
  }

  get(resource: string, namespace: string | undefined, name: string): KubeObject | undefined {
    const obj = this.#store.get(resourceByName(resource), namespace, name);
    return obj && structuredClone(obj);
  }

  /** Current objects of a resource, optionally in one namespace. */
  list(resource: string, namespace?: string): KubeObject[] {
    return this.#store.list(resourceByName(resource), namespace);
  }

  /** Replaces the Service resolution used for webhook calls from now on. */
  setServiceResolver(resolver: ServiceResolver | undefined): void {
    this.#resolver = resolver;
  }

  /** The serviceaccounts and root-ca-cert-publisher controllers' work for one namespace. */
  #fillNamespace(namespace: string): void {
    if (!this.get('namespaces', undefined, namespace)) return;
    if (!this.get('serviceaccounts', namespace, 'default'))
      this.create({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'default', namespace } });
    if (!this.get('configmaps', namespace, 'kube-root-ca.crt'))
      this.create({
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: {
          name: 'kube-root-ca.crt',
          namespace,
          annotations: {
            'kubernetes.io/description':
              'Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.',
          },
        },
        data: { 'ca.crt': this.caCert },
      });
  }

  /** Destroys every open watch connection mid-stream (no terminating chunk), as a network failure would. */
  dropWatches(): void {
    for (const w of [...this.#watches]) w.destroy();
    this.#watches.clear();
  }

  /** How many watch streams are open right now. */
  get openWatches(): number {
    return this.#watches.size;
  }

  /** Forgets the event history: watches and Exact lists from an older resourceVersion now get 410 Gone. */
  compact(): void {
    this.#store.compact();
  }

  /** Answers matching requests with a Status error of this HTTP code (before authentication, like a failing apiserver). */
  failRequests(status: number, opts: FailOptions = {}): void {
    this.#faults.add(status, opts);
  }

  clearFaults(): void {
    this.#faults.clear();
  }

  /**
   * Answers lists from the state at `resourceVersion` (an older revision still in the history), as a lagging API
   * server or cache would: lists without a resourceVersion, with 0, or with one not newer than the snapshot (see
   * StaleLists in faults.ts). Watches, gets and lists asking for a newer revision are served as usual. Until
   * `clearStaleLists()`.
   */
  serveStaleLists(resourceVersion: string, opts: StaleListOptions = {}): void {
    this.#staleLists.set(Number(resourceVersion), opts);
  }

  clearStaleLists(): void {
    this.#staleLists.clear();
  }

  /** The API server goes down: the listener closes and every connection, watch or idle, is destroyed. */
  async stop(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    this.#server = undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    this.dropWatches();
    for (const s of this.#sockets) s.destroy();
    this.#sockets.clear();
    await closed;
  }

  /** Comes back on the same port, with the same CA, tokens and objects. */
  async restart(): Promise<void> {
    if (this.#server) return;
    await this.#listen(this.#port);
  }

  async close(): Promise<void> {
    await this.stop();
    this.events.removeAllListeners();
  }

  #watchHooks(): WatchHooks {
    return {
      bookmarkIntervalMs: this.#bookmarkIntervalMs,
      idleBookmarks: this.#idleBookmarks,
      onWrite: (type, object, sentAt) => {
        const meta = (object as KubeObject).metadata as Record<string, unknown> | undefined;
        const record: WatchEventRecord = {
          type,
          resource: '',
          namespace: meta?.namespace as string | undefined,
          name: (meta?.name as string | undefined) ?? '',
          resourceVersion: String(meta?.resourceVersion ?? ''),
          sentAt,
        };
        if (type !== 'ERROR')
          record.resource = resourceByKind(
            (object as KubeObject).apiVersion,
            (object as KubeObject).kind,
          ).resource;
        this.events.emit('watch-event', record);
      },
      onClose: (w) => this.#watches.delete(w),
    };
  }

  #listen(port: number): Promise<void> {
    const server = createServer(
      { cert: this.#tls.cert, key: this.#tls.key, keepAliveTimeout: 90_000, requestTimeout: 0 },
      (req, res) => this.#onRequest(req, res),
    );
    server.on('connection', (socket: Socket) => {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
    });
    // A client dropping its TLS handshake is not a server failure.
    server.on('tlsClientError', () => {});
    this.#server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        this.#port = (server.address() as { port: number }).port;
        resolve();
      });
    });
  }

  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'https://127.0.0.1');
    const record: RequestRecord = {
      method: req.method ?? 'GET',
      path: url.pathname,
      query: url.search.replace(/^\?/, ''),
      user: '',
      status: 0,
      accept: req.headers.accept ?? '',
    };
    const ctx: RequestContext = {
      user: '',
      respond: (status) => {
        record.user = ctx.user;
        record.status = status;
        this.requests.push(record);
        this.events.emit('request', record);
      },
    };
    const fault = this.#faults.take(url.pathname + url.search);
    if (fault) {
      req.resume();
      return sendStatus(res, ctx, fault.status);
    }
    // The record keeps what the client asked; a stale list is served as a list pinned to the older revision.
    void this.#handler.handle(req, res, ctx, this.#staleLists.rewrite(record.method, url) ?? url);
  }
}
