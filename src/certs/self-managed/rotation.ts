import { X509Certificate } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { generateCertBundle } from '../generate.ts';
import type { Logger } from '../../shared/log.ts';
import { describeApiError } from './api-errors.ts';
import type { CertApi } from './api.ts';
import {
  certFingerprint,
  formatAck,
  nextGeneration,
  planStep,
  readCertState,
  reissuedState,
  replicaKey,
  secretContent,
  SERVED_PREFIX,
  splitPemCerts,
  type CertPolicy,
  type CertState,
  type KeyPair,
  type ServedAck,
  type Step,
  type UnusableState,
} from './state.ts';
import type { WebhookConfigView } from './api.ts';
import { trackServed, untrackServed, type TlsMaterial, type TlsSource } from '../source.ts';

/**
 * Certificates the webhook makes and keeps itself, in one Secret that every replica shares:
 * - the first replica to find no Secret creates it; the API's create conflict (409) decides the one writer
 *   and the others read what it wrote, so all replicas serve certificates of one CA;
 * - every replica writes that Secret's CA bundle into the MutatingWebhookConfiguration's caBundle;
 * - each one re-reads the Secret every sync interval and renews what is due (a compare-and-swap update:
 *   on 409 it re-reads and decides again), then serves what the Secret holds, swapped in without a restart;
 * - CA rotation goes through phases recorded in the Secret (see state.ts), so the caBundle trusts the
 *   old and the new CA until every replica serves a certificate of the new one;
 * - so does a reissue (a new CA because the Secret was lost or unusable, or its CA expired): the CAs the webhook
 *   configuration trusted stay in the bundle, and every replica keeps serving what it serves until the new
 *   bundle has reached the webhook configuration and the propagation delay has passed.
 */

export interface SelfManagedOptions {
  api: CertApi;
  /** SANs of the serving certificate: the Service's DNS names (serviceHosts). */
  hosts: string[];
  /** This replica's name (its pod name), for the annotation that says which certificate it serves. */
  replica: string;
  log: Logger;
  /** Serving certificate lifetime; renewed with a third of it left (default 365 days). */
  certValidityMs?: number;
  /** CA lifetime; rotated with a third of it left (default 10 years). */
  caValidityMs?: number;
  /** How often the Secret is re-read (default 30 s). */
  syncIntervalMs?: number;
  /** How long a new caBundle is left to reach every API server before a certificate of the new CA is served (default 60 s). */
  propagationDelayMs?: number;
  /** A replica refreshes its served-annotation this often (default 10 sync intervals)... */
  ackRefreshMs?: number;
  /** ...and one not refreshed for this long is a replica that is gone (default 3 refreshes). */
  ackExpiryMs?: number;
}

export interface SelfManagedCerts extends TlsSource {
  /** The CAs the webhook configuration trusts (PEM): one, or two during a CA rotation. */
  readonly caBundle: string;
  /** One reconciliation now; the background loop runs one every sync interval. */
  sync(): Promise<void>;
}

const DAY_MS = 86_400_000;
const MAX_ATTEMPTS = 10;

/**
 * A CA bundle as readCertState reads it back from the Secret (each certificate cut by splitPemCerts, ending in
 * a newline; the generated PEMs have none). Built any other way, the caBundle a replica writes from a state it
 * made and the one a replica writes from its read of the Secret differ in bytes, and the second rewrites the
 * webhook configuration for nothing.
 */
function bundleOf(...cas: string[]): string[] {
  return cas.flatMap(splitPemCerts);
}

/**
 * One replica's share of the rotation. A sync runs the named steps in order: reconcile (the Secret), publishBundle
 * (its CA bundle into the webhook configuration), serve (its certificate, when the API servers trust its CA) and
 * acknowledge (say what this replica serves). Each step is a method, so a test can run one alone.
 */
export class SelfManagedRotation implements SelfManagedCerts {
  private readonly api: CertApi;
  private readonly log: Logger;
  private readonly hosts: string[];
  private readonly syncIntervalMs: number;
  private readonly certValidityMs: number;
  private readonly caValidityMs: number;
  private readonly ackRefreshMs: number;
  private readonly policy: CertPolicy;
  private readonly me: string;
  private readonly listeners: Array<(m: TlsMaterial) => void> = [];
  private served: TlsMaterial | undefined;
  private bundle = '';
  private closed = false;
  private timer: NodeJS.Timeout | undefined;
  private webhookMissingLogged = false;
  /** The last state read or written, for the served-annotations a reissue carries over when the Secret is gone. */
  private known: CertState | undefined;
  private queue: Promise<void> = Promise.resolve();

  constructor(opts: SelfManagedOptions) {
    this.api = opts.api;
    this.log = opts.log;
    this.hosts = opts.hosts;
    this.syncIntervalMs = opts.syncIntervalMs ?? 30_000;
    this.certValidityMs = opts.certValidityMs ?? 365 * DAY_MS;
    this.caValidityMs = opts.caValidityMs ?? 3650 * DAY_MS;
    this.ackRefreshMs = opts.ackRefreshMs ?? 10 * this.syncIntervalMs;
    this.policy = {
      hosts: opts.hosts,
      propagationDelayMs: opts.propagationDelayMs ?? 60_000,
      ackExpiryMs: opts.ackExpiryMs ?? 3 * this.ackRefreshMs,
    };
    this.me = replicaKey(opts.replica);
  }

  /** What this replica serves; undefined until the first serve (startSelfManagedCerts returns only after it). */
  get material(): TlsMaterial {
    return this.served as TlsMaterial;
  }

  get caBundle(): string {
    return this.bundle;
  }

  onChange(listener: (material: TlsMaterial) => void): void {
    this.listeners.push(listener);
  }

  /** Reads the Secret, creates or advances it when needed, and returns what it now holds. */
  async reconcile(): Promise<CertState> {
    const { api, log, policy } = this;
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      const now = new Date();
      const secret = await api.readSecret();
      if (!secret) {
        const state = await this.reissue(await api.readWebhookConfig(), this.known?.served ?? new Map(), now);
        const created = await api.createSecret(secretContent(state, now, policy.ackExpiryMs));
        if (created === 'exists') {
          log.info('another replica created the certificate Secret first; using what it wrote');
          continue;
        }
        log.info(
          { caFingerprint: certFingerprint(state.ca.cert), phase: state.phase, cas: state.bundle.length },
          'created the certificate Secret with a new CA and serving certificate',
        );
        return state;
      }
      const state = readCertState(secret);
      let webhookGeneration: number | 'absent' = 'absent';
      if (!('problem' in state) && (state.phase === 'trust-new' || state.phase === 'trust-reissued'))
        webhookGeneration = (await api.readWebhookConfig())?.generation ?? 'absent';
      const step = planStep(state, { now, policy, webhookGeneration });
      if (step.kind === 'wait') log.debug({ reason: step.reason }, 'CA rotation waiting');
      if (step.kind === 'none' || step.kind === 'wait') return state as CertState;
      const next = await this.execute(state, step, now);
      const replaced = await api.replaceSecret(secret, secretContent(next, now, policy.ackExpiryMs));
      if (replaced === 'conflict') {
        log.debug({ step: step.kind }, 'the certificate Secret changed meanwhile; reading it again');
        continue;
      }
      log.info(
        {
          step: step.kind,
          reason: 'reason' in step ? step.reason : undefined,
          caFingerprint: certFingerprint(next.ca.cert),
        },
        'certificate Secret updated',
      );
      return next;
    }
    throw new Error(`the certificate Secret kept changing under ${MAX_ATTEMPTS} attempts to update it`);
  }

  /** Writes the state's CA bundle into the MutatingWebhookConfiguration, unless it holds it or a newer one. */
  async publishBundle(state: CertState): Promise<void> {
    const { api, log } = this;
    const wanted = Buffer.from(state.bundle.join('')).toString('base64');
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      const webhook = await api.readWebhookConfig();
      if (!webhook) {
        if (!this.webhookMissingLogged)
          log.warn('the MutatingWebhookConfiguration does not exist; its caBundle will be set once it does');
        this.webhookMissingLogged = true;
        return;
      }
      this.webhookMissingLogged = false;
      // A newer generation there means this replica's read of the Secret is older than another's write.
      if (webhook.generation > state.generation) return;
      if (webhook.generation === state.generation && webhook.caBundles.every((b) => b === wanted)) return;
      if ((await api.writeCaBundle(webhook, wanted, state.generation)) === 'ok') {
        log.info(
          { webhooks: webhook.caBundles.length, cas: state.bundle.length, generation: state.generation },
          'caBundle written to the MutatingWebhookConfiguration',
        );
        return;
      }
    }
    throw new Error(
      `the MutatingWebhookConfiguration kept changing under ${MAX_ATTEMPTS} attempts to set its caBundle`,
    );
  }

  /** Serves the state's certificate (listeners hear of a replacement), unless a reissue is not trusted yet. */
  serve(state: CertState): void {
    this.bundle = state.bundle.join('');
    // The API servers may not trust the new CA yet: keep what is served (of a CA they do trust); a replica that
    // serves nothing yet waits for serve-new.
    if (state.phase === 'trust-reissued') return;
    const current = this.served;
    if (current?.cert === state.serving.cert && current.key === state.serving.key) return;
    const first = current === undefined;
    const material = { ...state.serving };
    this.served = material;
    const leaf = new X509Certificate(material.cert);
    this.log.info(
      { fingerprint256: leaf.fingerprint256, notAfter: leaf.validTo },
      first ? 'serving the certificate from the Secret' : 'serving certificate replaced',
    );
    if (!first) for (const l of this.listeners) l(material);
  }

  /**
   * Says which certificate this replica serves (the CA rotation waits for every live replica), and drops gone
   * replicas; no call when the annotation is fresh and nobody is gone. Nothing to say before the first serve.
   */
  async acknowledge(state: CertState): Promise<void> {
    if (!this.served) return;
    const { me, policy } = this;
    const now = Date.now();
    const fingerprint = certFingerprint(this.served.cert);
    const mine = state.served.get(me);
    const gone = [...state.served]
      .filter(([r, ack]) => r !== me && now - ack.at.getTime() > policy.ackExpiryMs)
      .map(([r]) => r);
    if (mine?.fingerprint === fingerprint && now - mine.at.getTime() < this.ackRefreshMs && gone.length === 0)
      return;
    const patch: Record<string, string | null> = {
      [`${SERVED_PREFIX}${me}`]: formatAck({ fingerprint, at: new Date(now) }),
    };
    for (const r of gone) patch[`${SERVED_PREFIX}${r}`] = null;
    await this.api.patchSecretAnnotations(patch);
  }

  /** One reconciliation now, after any still running; the background loop runs one every sync interval. */
  sync(): Promise<void> {
    const run = this.queue.then(() => this.syncOnce());
    this.queue = run.catch(() => {});
    return run;
  }

  /** Syncs until there is a certificate to serve (retrying with backoff), then every sync interval until close(). */
  async start(): Promise<void> {
    const { log, syncIntervalMs } = this;
    let delay = 1000;
    for (;;) {
      try {
        await this.sync();
        if (this.served) break;
        // A reissue is under way (trust-reissued): its certificate is not trusted yet and this replica has no
        // other one; it starts serving once the phase moves on.
        log.info(
          { retryInMs: syncIntervalMs },
          'waiting for the webhook configuration to trust the new CA before serving',
        );
        delay = 1000;
        await sleep(syncIntervalMs);
      } catch (err) {
        log.warn(
          { ...describeApiError(err), retryInMs: delay },
          'cannot set up the self-managed certificates yet',
        );
        await sleep(delay);
        delay = Math.min(delay * 2, 30_000);
      }
    }
    this.schedule();
    trackServed(this);
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    untrackServed(this);
  }

  private async syncOnce(): Promise<void> {
    const state = await this.reconcile();
    this.known = state;
    // The caBundle first: a certificate of a CA that is new to it is served only after it holds that CA.
    try {
      await this.publishBundle(state);
    } finally {
      this.serve(state);
    }
    await this.acknowledge(state);
  }

  private schedule(): void {
    this.timer = setTimeout(() => {
      this.sync()
        .catch((err: unknown) =>
          this.log.warn(
            describeApiError(err),
            'certificate sync failed; still serving the current certificate',
          ),
        )
        .finally(() => {
          if (!this.closed) this.schedule();
        });
    }, this.syncIntervalMs);
  }

  private async newCa(): Promise<KeyPair> {
    const made = await generateCertBundle({
      hosts: this.hosts,
      caName: `config-reloader-injector webhook CA ${new Date().toISOString()}`,
      validDays: this.caValidityMs / DAY_MS,
    });
    return { cert: made.caCert, key: made.caKey };
  }

  private async issueServing(ca: KeyPair): Promise<KeyPair> {
    // Never past the CA's own expiry: a certificate outliving its issuer stops verifying with it.
    const caLeftMs = new Date(new X509Certificate(ca.cert).validTo).getTime() - Date.now();
    const made = await generateCertBundle({
      hosts: this.hosts,
      ca,
      validDays: Math.min(this.certValidityMs, caLeftMs) / DAY_MS,
    });
    return { cert: made.cert, key: made.key };
  }

  /**
   * A new CA and serving certificate. The CAs the webhook configuration trusts now stay in the bundle and the
   * replicas keep serving what they serve (phase trust-reissued) until the API servers trust the new CA; the
   * served-annotations are carried over so the old CAs leave the bundle only once those replicas moved.
   */
  private async reissue(
    webhook: WebhookConfigView | undefined,
    served: Map<string, ServedAck>,
    now: Date,
    ...previousGenerations: number[]
  ): Promise<CertState> {
    const ca = await this.newCa();
    return reissuedState({
      ca,
      serving: await this.issueServing(ca),
      trusted: (webhook?.caBundles ?? []).map((b) => Buffer.from(b ?? '', 'base64').toString('utf8')),
      served,
      generation: nextGeneration(...previousGenerations, webhook?.generation ?? 0),
      now,
    });
  }

  /** The state after `step`, made with new keys where the step needs them. */
  private async execute(state: CertState | UnusableState, step: Step, now: Date): Promise<CertState> {
    if ('problem' in state || step.kind === 'reissue') {
      const previous = 'problem' in state ? [] : [state.generation];
      return this.reissue(await this.api.readWebhookConfig(), state.served, now, ...previous);
    }
    switch (step.kind) {
      case 'renew-serving':
        return { ...state, serving: await this.issueServing(state.ca) };
      case 'start-ca-rotation': {
        const nextCa = await this.newCa();
        return {
          ...state,
          nextCa,
          bundle: bundleOf(state.ca.cert, nextCa.cert),
          phase: 'trust-new',
          phaseSince: now,
          generation: nextGeneration(state.generation),
        };
      }
      case 'serve-new-ca': {
        // After a reissue the Secret already holds the new CA's certificate: the phase is all that changes.
        if (state.phase === 'trust-reissued') return { ...state, phase: 'serve-new', phaseSince: now };
        const ca = state.nextCa as KeyPair;
        return {
          ...state,
          ca,
          serving: await this.issueServing(ca),
          nextCa: undefined,
          phase: 'serve-new',
          phaseSince: now,
        };
      }
      case 'finish-ca-rotation': {
        const current = certFingerprint(state.serving.cert);
        const served = new Map([...state.served].filter(([, ack]) => ack.fingerprint === current));
        return {
          ...state,
          bundle: bundleOf(state.ca.cert),
          phase: 'none',
          phaseSince: undefined,
          generation: nextGeneration(state.generation),
          served,
        };
      }
      default:
        return state;
    }
  }
}

/** Starts the rotation and returns once this replica has a certificate to serve. */
export async function startSelfManagedCerts(opts: SelfManagedOptions): Promise<SelfManagedCerts> {
  const rotation = new SelfManagedRotation(opts);
  await rotation.start();
  return rotation;
}
