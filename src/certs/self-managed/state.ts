import { X509Certificate, createHash } from 'node:crypto';
import { checkPair } from '../source.ts';

/**
 * The self-managed certificates as stored in their Secret, and the pure decision of what to do next.
 *
 * Secret data: ca.crt/ca.key (the CA that signs the serving certificate), tls.crt/tls.key (the serving
 * certificate), ca-bundle.crt (every CA the webhook configuration must trust: one, or two during a CA
 * rotation) and next-ca.crt/next-ca.key (the new CA while the API servers learn to trust it).
 *
 * CA rotation, one phase per step, recorded in the annotations so that any replica can carry it on:
 *   none       bundle [old]        served by old     the CA has 1/3 of its lifetime left → trust-new
 *   trust-new  bundle [old, new]   served by old     after the propagation delay, once the webhook
 *                                                    configuration holds this bundle → serve-new
 *   serve-new  bundle [old, new]   served by new     once every live replica says it serves the new
 *                                                    certificate → none, bundle [new]
 * The API server trusts both CAs for as long as any replica may still serve a certificate of the old one.
 *
 * A reissue (a new CA made because the Secret is gone or unusable, or its CA expired or is about to) cannot go
 * through trust-new: the old CA's key may be lost, so no certificate of the old CA can be written. It keeps the
 * same order another way:
 *   trust-reissued  bundle [new, CAs the webhook configuration trusted]   tls.crt is of the new CA, but each
 *                   replica keeps serving the certificate it already serves (one of those trusted CAs), and a
 *                   replica that serves nothing yet waits; after the propagation delay, once the webhook
 *                   configuration holds this bundle → serve-new, then none as above.
 * When the webhook configuration trusts no usable CA (a first install, an expired CA) there is nothing to keep
 * working and the reissue is served at once, phase none.
 */

export const CERT_SECRET_KEYS = {
  caCert: 'ca.crt',
  caKey: 'ca.key',
  cert: 'tls.crt',
  key: 'tls.key',
  bundle: 'ca-bundle.crt',
  nextCaCert: 'next-ca.crt',
  nextCaKey: 'next-ca.key',
} as const;

export const ROTATION_ANNOTATIONS = {
  /** The CA rotation phase: trust-new or serve-new; absent when no rotation runs. */
  rotation: 'config-reloader.io/ca-rotation',
  /** When the current phase began (RFC 3339). */
  rotationSince: 'config-reloader.io/ca-rotation-since',
  /**
   * Grows whenever ca-bundle.crt changes; copied onto the webhook configuration with its caBundle, so that
   * a replica holding an older read of the Secret never puts an older bundle back.
   */
  generation: 'config-reloader.io/ca-bundle-generation',
} as const;

/** One annotation per replica, `<prefix><replica>: <sha-256 of the certificate it serves> <RFC 3339 time>`. */
export const SERVED_PREFIX = 'served.config-reloader.io/';

export type RotationPhase = 'none' | 'trust-new' | 'trust-reissued' | 'serve-new';

/** A CA with less than this left is replaced by a reissue: a serving certificate of it would live less than an hour. */
export const CA_MIN_REMAINING_MS = 3_600_000;

export interface KeyPair {
  cert: string;
  key: string;
}

export interface ServedAck {
  fingerprint: string;
  at: Date;
}

export interface CertState {
  ca: KeyPair;
  serving: KeyPair;
  /** PEM certificates, the current CA first. */
  bundle: string[];
  nextCa: KeyPair | undefined;
  phase: RotationPhase;
  phaseSince: Date | undefined;
  generation: number;
  /** Replica key (annotation name) → what it said it serves. */
  served: Map<string, ServedAck>;
}

/** A Secret that cannot be used, and the replicas' served-annotations it still carries (kept by the reissue). */
export interface UnusableState {
  problem: string;
  served: Map<string, ServedAck>;
}

export interface CertPolicy {
  /** Subject alternative names the serving certificate must cover. */
  hosts: string[];
  /** How long the API servers get to see a new caBundle before any replica serves a certificate of the new CA. */
  propagationDelayMs: number;
  /** A replica's served-annotation older than this is a replica that is gone. */
  ackExpiryMs: number;
}

/** What the Secret needs next; `none` and `wait` change nothing. */
export type Step =
  | { kind: 'none' }
  | { kind: 'wait'; reason: string }
  | { kind: 'reissue'; reason: string }
  | { kind: 'renew-serving'; reason: string }
  | { kind: 'start-ca-rotation' }
  | { kind: 'serve-new-ca' }
  | { kind: 'finish-ca-rotation' };

export interface PlanContext {
  now: Date;
  policy: CertPolicy;
  /** The generation the webhook configuration carries; `absent` when it does not exist (nobody to wait for). */
  webhookGeneration: number | 'absent';
}

const PEM_CERT_RE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

export function splitPemCerts(pem: string): string[] {
  return (pem.match(PEM_CERT_RE) ?? []).map((c) => `${c}\n`);
}

/** Lowercase hex SHA-256 of a PEM certificate's DER, as `openssl x509 -fingerprint -sha256` prints it, without colons. */
export function certFingerprint(pem: string): string {
  return createHash('sha256').update(new X509Certificate(pem).raw).digest('hex');
}

/** An annotation name part (at most 63 characters) for a replica, normally its pod name. */
export function replicaKey(replica: string): string {
  const name = replica.toLowerCase();
  if (/^[a-z0-9]([-a-z0-9._]{0,61}[a-z0-9])?$/.test(name)) return name;
  return `replica-${createHash('sha256').update(replica).digest('hex').slice(0, 16)}`;
}

function decode(data: Record<string, string> | undefined, key: string): string | undefined {
  const v = data?.[key];
  return v === undefined ? undefined : Buffer.from(v, 'base64').toString('utf8');
}

function isCa(cert: X509Certificate): boolean {
  return cert.ca;
}

/** The stored state, or the reason it cannot be used (a Secret edited by hand, a half-written one). */
export function readCertState(secret: {
  data?: Record<string, string> | undefined;
  metadata?: { annotations?: Record<string, string> | undefined } | undefined;
}): CertState | UnusableState {
  const data = secret.data;
  const annotations = secret.metadata?.annotations ?? {};
  const served = readAcks(annotations);
  const unusable = (problem: string): UnusableState => ({ problem, served });
  const generation = Number(annotations[ROTATION_ANNOTATIONS.generation] ?? 0);
  const pairs: Record<string, KeyPair | undefined> = {};
  for (const [name, certKey, keyKey] of [
    ['ca', CERT_SECRET_KEYS.caCert, CERT_SECRET_KEYS.caKey],
    ['serving', CERT_SECRET_KEYS.cert, CERT_SECRET_KEYS.key],
    ['nextCa', CERT_SECRET_KEYS.nextCaCert, CERT_SECRET_KEYS.nextCaKey],
  ] as const) {
    const cert = decode(data, certKey);
    const key = decode(data, keyKey);
    if (cert === undefined && key === undefined) continue;
    if (cert === undefined || key === undefined)
      return unusable(`${certKey} and ${keyKey} must both be present`);
    try {
      checkPair({ cert, key });
    } catch (err) {
      return unusable(`${certKey}/${keyKey}: ${(err as Error).message}`);
    }
    pairs[name] = { cert, key };
  }
  const { ca, serving, nextCa } = pairs;
  if (!ca || !serving)
    return unusable(`${CERT_SECRET_KEYS.caCert}, ${CERT_SECRET_KEYS.cert} and their keys are required`);
  if (!isCa(new X509Certificate(ca.cert)))
    return unusable(`${CERT_SECRET_KEYS.caCert} is not a CA certificate`);
  let bundle: string[];
  let fingerprints: Set<string>;
  try {
    bundle = splitPemCerts(decode(data, CERT_SECRET_KEYS.bundle) ?? '');
    fingerprints = new Set(bundle.map(certFingerprint));
  } catch {
    return unusable(`${CERT_SECRET_KEYS.bundle} holds something that is not a PEM certificate`);
  }
  if (!fingerprints.has(certFingerprint(ca.cert)))
    return unusable(`${CERT_SECRET_KEYS.bundle} does not hold ${CERT_SECRET_KEYS.caCert}`);
  const rawPhase = annotations[ROTATION_ANNOTATIONS.rotation];
  const phase: RotationPhase =
    rawPhase === 'trust-new' || rawPhase === 'trust-reissued' || rawPhase === 'serve-new' ? rawPhase : 'none';
  if (phase === 'trust-new' && (!nextCa || !fingerprints.has(certFingerprint(nextCa.cert))))
    return unusable(
      `rotation phase trust-new needs ${CERT_SECRET_KEYS.nextCaCert} in ${CERT_SECRET_KEYS.bundle}`,
    );
  if ((phase === 'serve-new' || phase === 'trust-reissued') && bundle.length < 2)
    return unusable(`rotation phase ${phase} needs the previous CA in ${CERT_SECRET_KEYS.bundle}`);
  const sinceRaw = annotations[ROTATION_ANNOTATIONS.rotationSince];
  const since = sinceRaw === undefined ? undefined : new Date(sinceRaw);
  return {
    ca,
    serving,
    bundle,
    nextCa: phase === 'trust-new' ? nextCa : undefined,
    phase,
    phaseSince: since && !Number.isNaN(since.getTime()) ? since : undefined,
    generation: Number.isSafeInteger(generation) && generation > 0 ? generation : 0,
    served,
  };
}

function readAcks(annotations: Record<string, string>): Map<string, ServedAck> {
  const served = new Map<string, ServedAck>();
  for (const [k, v] of Object.entries(annotations)) {
    if (!k.startsWith(SERVED_PREFIX)) continue;
    const [fingerprint, at] = v.split(' ');
    const date = new Date(at ?? '');
    if (fingerprint && !Number.isNaN(date.getTime()))
      served.set(k.slice(SERVED_PREFIX.length), { fingerprint, at: date });
  }
  return served;
}

/** True once less than a third of the certificate's lifetime is left (cert-manager's default renewBefore). */
export function isDue(pem: string, now: Date): boolean {
  const cert = new X509Certificate(pem);
  const from = new Date(cert.validFrom).getTime();
  const to = new Date(cert.validTo).getTime();
  return to - now.getTime() < (to - from) / 3;
}

/** Why the serving certificate cannot stay, or undefined. */
function servingProblem(state: CertState, hosts: string[], now: Date): string | undefined {
  const leaf = new X509Certificate(state.serving.cert);
  const ca = new X509Certificate(state.ca.cert);
  if (!leaf.checkIssued(ca) || !leaf.verify(ca.publicKey))
    return 'the serving certificate is not signed by the CA';
  for (const host of hosts) {
    const ip = /^[\d.]+$/.test(host) || host.includes(':');
    const covered = ip
      ? leaf.checkIP(host) !== undefined
      : leaf.checkHost(host, { subject: 'never' }) !== undefined;
    if (!covered) return `the serving certificate does not cover ${host}`;
  }
  if (isDue(state.serving.cert, now))
    return `the serving certificate expires at ${new Date(leaf.validTo).toISOString()}`;
  return undefined;
}

/** Replicas whose served-annotation is recent enough to count. */
export function liveAcks(state: CertState, now: Date, expiryMs: number): Map<string, ServedAck> {
  return new Map([...state.served].filter(([, ack]) => now.getTime() - ack.at.getTime() <= expiryMs));
}

/** The next step for the Secret, from its state alone: every replica reaches the same decision. */
export function planStep(state: CertState | UnusableState, ctx: PlanContext): Step {
  if ('problem' in state) return { kind: 'reissue', reason: state.problem };
  const { now, policy } = ctx;
  // Before the serving certificate: one renewed by a CA at its end would be as short-lived as the CA, and
  // renewed again at every sync, while the CA itself never got replaced.
  const caEnds = new Date(new X509Certificate(state.ca.cert).validTo);
  if (caEnds.getTime() - now.getTime() < CA_MIN_REMAINING_MS)
    return {
      kind: 'reissue',
      reason:
        caEnds <= now
          ? `the CA expired at ${caEnds.toISOString()}`
          : `the CA expires at ${caEnds.toISOString()}, too soon for a rotation`,
    };
  const problem = servingProblem(state, policy.hosts, now);
  if (problem !== undefined) return { kind: 'renew-serving', reason: problem };
  const since = state.phaseSince?.getTime() ?? 0;
  switch (state.phase) {
    case 'none':
      return isDue(state.ca.cert, now) ? { kind: 'start-ca-rotation' } : { kind: 'none' };
    case 'trust-new':
    case 'trust-reissued': {
      if (now.getTime() - since < policy.propagationDelayMs)
        return { kind: 'wait', reason: 'giving the API servers time to load the new caBundle' };
      if (ctx.webhookGeneration !== 'absent' && ctx.webhookGeneration < state.generation)
        return { kind: 'wait', reason: 'the webhook configuration does not hold the new caBundle yet' };
      return { kind: 'serve-new-ca' };
    }
    case 'serve-new': {
      const current = certFingerprint(state.serving.cert);
      const behind = [...liveAcks(state, now, policy.ackExpiryMs)]
        .filter(([, ack]) => ack.fingerprint !== current)
        .map(([r]) => r);
      if (behind.length > 0)
        return {
          kind: 'wait',
          reason: `replicas still serving a certificate of the previous CA: ${behind.join(', ')}`,
        };
      return { kind: 'finish-ca-rotation' };
    }
  }
}

/**
 * The state a reissue writes: a new CA and its serving certificate, with the CAs the webhook configuration
 * trusts now (`trusted`, PEM; those that are not a usable CA, expired or expiring within CA_MIN_REMAINING_MS are
 * left out) kept in the bundle behind the new one, in phase trust-reissued so that no replica serves the new
 * certificate before the API servers trust its CA. With none of them left, phase none: served at once.
 * `served` carries the replicas' served-annotations over, so that the old CAs leave the bundle only after those
 * replicas say they serve the new certificate.
 */
export function reissuedState(opts: {
  ca: KeyPair;
  serving: KeyPair;
  trusted: string[];
  served: Map<string, ServedAck>;
  generation: number;
  now: Date;
}): CertState {
  const { ca, serving, now } = opts;
  const newFingerprint = certFingerprint(ca.cert);
  const kept = new Map<string, string>();
  for (const pem of opts.trusted.flatMap(splitPemCerts)) {
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(pem);
    } catch {
      continue;
    }
    const fingerprint = certFingerprint(pem);
    if (!cert.ca || fingerprint === newFingerprint) continue;
    if (new Date(cert.validTo).getTime() - now.getTime() < CA_MIN_REMAINING_MS) continue;
    kept.set(fingerprint, pem);
  }
  return {
    ca,
    serving,
    bundle: [...splitPemCerts(ca.cert), ...kept.values()],
    nextCa: undefined,
    phase: kept.size > 0 ? 'trust-reissued' : 'none',
    phaseSince: kept.size > 0 ? now : undefined,
    generation: opts.generation,
    served: opts.served,
  };
}

/** A generation above every earlier one: wall-clock milliseconds, so that a re-created Secret still outranks. */
export function nextGeneration(...previous: number[]): number {
  return Math.max(Date.now(), ...previous.map((p) => p + 1));
}

/** The Secret's data (base64) and our annotations for a state; served-annotations older than `ackExpiryMs` are dropped. */
export function secretContent(
  state: CertState,
  now: Date,
  ackExpiryMs: number,
): { data: Record<string, string>; annotations: Record<string, string> } {
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  const data: Record<string, string> = {
    [CERT_SECRET_KEYS.caCert]: b64(state.ca.cert),
    [CERT_SECRET_KEYS.caKey]: b64(state.ca.key),
    [CERT_SECRET_KEYS.cert]: b64(state.serving.cert),
    [CERT_SECRET_KEYS.key]: b64(state.serving.key),
    [CERT_SECRET_KEYS.bundle]: b64(state.bundle.join('')),
  };
  if (state.nextCa) {
    data[CERT_SECRET_KEYS.nextCaCert] = b64(state.nextCa.cert);
    data[CERT_SECRET_KEYS.nextCaKey] = b64(state.nextCa.key);
  }
  const annotations: Record<string, string> = { [ROTATION_ANNOTATIONS.generation]: String(state.generation) };
  if (state.phase !== 'none') {
    annotations[ROTATION_ANNOTATIONS.rotation] = state.phase;
    annotations[ROTATION_ANNOTATIONS.rotationSince] = (state.phaseSince ?? now).toISOString();
  }
  for (const [replica, ack] of liveAcks(state, now, ackExpiryMs)) {
    annotations[`${SERVED_PREFIX}${replica}`] = formatAck(ack);
  }
  return { data, annotations };
}

export function formatAck(ack: ServedAck): string {
  return `${ack.fingerprint} ${ack.at.toISOString()}`;
}
