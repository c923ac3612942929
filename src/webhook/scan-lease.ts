import { statusMessage, type KubeHttp } from './kube-http.ts';

/**
 * One scanner among the webhook's replicas: a coordination.k8s.io/v1 Lease in the webhook's namespace, held by
 * the replica that scans. Unlike a controller's leader election, nothing here needs a fast failover (a scan
 * every few minutes), so the lease is touched only when a replica wakes up to scan, not every few seconds:
 *
 * - the holder renews it when it starts a scan, while a long scan runs, and when it ends, writing the result
 *   (the count) into an annotation that the other replicas read for their own metric;
 * - another replica takes it over when it is free (no holder, released on shutdown) or when it has not changed
 *   for `durationMs` as that replica observed it on its own clock (client-go's rule: clocks of two machines are
 *   never compared);
 * - every write is a compare-and-swap on the Lease's resourceVersion (409: someone else won, read again).
 *
 * RBAC: get and update of this Lease by name, create of Leases in the namespace (create cannot be limited by
 * name).
 */

export const LEASE_COUNT_ANNOTATION = 'config-reloader.io/missed-injections';
export const LEASE_SCANNED_AT_ANNOTATION = 'config-reloader.io/missed-injections-scanned-at';

export interface LeaseObject {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace: string;
    resourceVersion?: string;
    annotations?: Record<string, string>;
  };
  spec?: {
    holderIdentity?: string;
    leaseDurationSeconds?: number;
    acquireTime?: string;
    renewTime?: string;
    leaseTransitions?: number;
  };
}

/** What a replica learnt at its turn. */
export type LeaseTurn =
  { role: 'holder'; lease: LeaseObject } | { role: 'follower'; holder: string; lease: LeaseObject };

/** The Lease said no (an API error other than a lost race): the turn is skipped. */
export class LeaseError extends Error {
  readonly status: number | undefined;
  constructor(message: string, status?: number) {
    super(message);
    this.status = status;
    this.name = 'LeaseError';
  }
}

/** MicroTime as the API server writes it: RFC 3339 with microseconds. */
export function microTime(date: Date): string {
  return date.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export interface ScanLeaseOptions {
  http: KubeHttp;
  namespace: string;
  name: string;
  identity: string;
  /** Taken over when unchanged for this long (as observed here). */
  durationMs: number;
  now?: () => number;
}

export class ScanLease {
  private readonly http: KubeHttp;
  private readonly path: string;
  private readonly collection: string;
  readonly namespace: string;
  readonly name: string;
  readonly identity: string;
  private readonly durationMs: number;
  private readonly now: () => number;
  /** The Lease's resourceVersion as last seen, and when (local clock): what expiry is measured from. */
  private observed: { resourceVersion: string; at: number } | undefined;
  private current: LeaseObject | undefined;

  constructor(opts: ScanLeaseOptions) {
    this.http = opts.http;
    this.namespace = opts.namespace;
    this.name = opts.name;
    this.identity = opts.identity;
    this.durationMs = opts.durationMs;
    this.now = opts.now ?? Date.now;
    this.collection = `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(opts.namespace)}/leases`;
    this.path = `${this.collection}/${encodeURIComponent(opts.name)}`;
  }

  /** Whether this replica held the Lease at its last turn (and has not released it since). */
  get holding(): boolean {
    return this.current?.spec?.holderIdentity === this.identity;
  }

  /**
   * This replica's turn: takes or keeps the Lease when it may (writing renewTime), otherwise reports who holds
   * it. Throws LeaseError when the API refuses (403, 404 namespace, 5xx) and KubeHttpError without an answer.
   */
  async turn(signal?: AbortSignal): Promise<LeaseTurn> {
    for (let attempt = 0; attempt < 3; attempt++) {
      const lease = await this.read(signal);
      if (!lease) {
        const created = await this.write('POST', this.fresh(), signal);
        if (created) return { role: 'holder', lease: created };
        continue; // another replica created it first: read it
      }
      const holder = lease.spec?.holderIdentity ?? '';
      // Still ours: the scan renews it when it ends (and while it runs, when it runs long).
      if (holder === this.identity) return { role: 'holder', lease };
      if (holder && !this.expired(lease)) return { role: 'follower', holder, lease };
      const taken = await this.write('PUT', this.takenOver(lease), signal);
      if (taken) return { role: 'holder', lease: taken };
    }
    throw new LeaseError('the Lease kept changing under this replica (3 conflicts in a row)');
  }

  /**
   * Renews the held Lease, optionally with annotations (the scan's result). Returns false when it was lost
   * (another replica took it over: this one stops scanning).
   */
  async renew(annotations: Record<string, string> = {}, signal?: AbortSignal): Promise<boolean> {
    const lease = this.current;
    if (!lease || !this.holding) return false;
    const next = this.renewed(lease);
    next.metadata.annotations = { ...next.metadata.annotations, ...annotations };
    const written = await this.write('PUT', next, signal);
    return written !== undefined && this.holding;
  }

  /** On shutdown: the Lease is left without a holder, so another replica takes it at its next turn. */
  async release(signal?: AbortSignal): Promise<void> {
    const lease = this.current;
    if (!lease || !this.holding) return;
    // As client-go's leader election releases one: no holder, a duration of 1 s.
    const now = microTime(new Date(this.now()));
    const next = structuredClone(lease);
    next.spec = {
      ...next.spec,
      holderIdentity: '',
      acquireTime: now,
      renewTime: now,
      leaseDurationSeconds: 1,
    };
    await this.write('PUT', next, signal);
  }

  private expired(lease: LeaseObject): boolean {
    const rv = lease.metadata.resourceVersion ?? '';
    const now = this.now();
    if (this.observed?.resourceVersion !== rv) {
      this.observed = { resourceVersion: rv, at: now };
      return false;
    }
    return now - this.observed.at >= this.durationMs;
  }

  private fresh(): LeaseObject {
    const now = microTime(new Date(this.now()));
    return {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name: this.name, namespace: this.namespace },
      spec: {
        holderIdentity: this.identity,
        leaseDurationSeconds: Math.ceil(this.durationMs / 1000),
        acquireTime: now,
        renewTime: now,
        leaseTransitions: 0,
      },
    };
  }

  private renewed(lease: LeaseObject): LeaseObject {
    const next = structuredClone(lease);
    next.spec = {
      ...next.spec,
      holderIdentity: this.identity,
      leaseDurationSeconds: Math.ceil(this.durationMs / 1000),
      renewTime: microTime(new Date(this.now())),
    };
    return next;
  }

  private takenOver(lease: LeaseObject): LeaseObject {
    const next = this.renewed(lease);
    next.spec = {
      ...next.spec,
      acquireTime: next.spec?.renewTime,
      leaseTransitions: (lease.spec?.leaseTransitions ?? 0) + (lease.spec?.holderIdentity ? 1 : 0),
    };
    return next;
  }

  private async read(signal?: AbortSignal): Promise<LeaseObject | undefined> {
    const res = await this.http.request({ path: this.path, signal });
    if (res.status === 404) {
      this.current = undefined;
      return undefined;
    }
    if (res.status !== 200) throw new LeaseError(`get Lease: ${statusMessage(res)}`, res.status);
    this.current = res.body as LeaseObject;
    return this.current;
  }

  /** The written Lease, or undefined when another replica won the race (409). */
  private async write(
    method: 'POST' | 'PUT',
    lease: LeaseObject,
    signal?: AbortSignal,
  ): Promise<LeaseObject | undefined> {
    const res = await this.http.request({
      method,
      path: method === 'POST' ? this.collection : this.path,
      body: lease,
      signal,
    });
    if (res.status === 409) return undefined;
    if (res.status !== 200 && res.status !== 201)
      throw new LeaseError(
        `${method === 'POST' ? 'create' : 'update'} Lease: ${statusMessage(res)}`,
        res.status,
      );
    this.current = res.body as LeaseObject;
    this.observed = { resourceVersion: this.current.metadata.resourceVersion ?? '', at: this.now() };
    return this.current;
  }
}
