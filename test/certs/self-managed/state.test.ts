import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { before, describe, it } from 'node:test';
import { generate } from 'selfsigned';
import { generateCertBundle, serviceHosts } from '../../../src/certs/generate.ts';
import {
  ROTATION_ANNOTATIONS,
  certFingerprint,
  planStep,
  readCertState,
  reissuedState,
  replicaKey,
  secretContent,
  SERVED_PREFIX,
  type CertPolicy,
  type CertState,
} from '../../../src/certs/self-managed/state.ts';

const HOSTS = serviceHosts('config-reloader-injector', 'crinj');
const POLICY: CertPolicy = { hosts: HOSTS, propagationDelayMs: 60_000, ackExpiryMs: 600_000 };

describe('cert-state: reading the Secret and planning the next step', () => {
  let state: CertState;
  let other: Awaited<ReturnType<typeof generateCertBundle>>;

  before(async () => {
    const b = await generateCertBundle({ hosts: HOSTS });
    other = await generateCertBundle({ hosts: HOSTS });
    const read = readCertState({
      data: secretContent(
        {
          ca: { cert: b.caCert, key: b.caKey },
          serving: { cert: b.cert, key: b.key },
          bundle: [b.caCert],
          nextCa: undefined,
          phase: 'none',
          phaseSince: undefined,
          generation: 7,
          served: new Map(),
        },
        new Date(),
        POLICY.ackExpiryMs,
      ).data,
      metadata: { annotations: { [ROTATION_ANNOTATIONS.generation]: '7' } },
    });
    assert.ok(!('problem' in read));
    state = read;
  });

  it('round-trips a state through the Secret content', () => {
    const content = secretContent(state, new Date(), POLICY.ackExpiryMs);
    const back = readCertState({ data: content.data, metadata: { annotations: content.annotations } });
    assert.ok(!('problem' in back));
    assert.equal(back.generation, 7);
    assert.equal(certFingerprint(back.serving.cert), certFingerprint(state.serving.cert));
  });

  it('names the problem of an unusable Secret, which is then reissued', () => {
    const content = secretContent(state, new Date(), POLICY.ackExpiryMs);
    const cases: Array<[Record<string, string>, RegExp]> = [
      [
        { ...content.data, 'tls.key': Buffer.from(other.key).toString('base64') },
        /tls\.crt\/tls\.key: the private key does not belong/,
      ],
      [
        { ...content.data, 'ca.key': undefined as unknown as string },
        /ca\.crt and ca\.key must both be present/,
      ],
      [
        { ...content.data, 'ca-bundle.crt': Buffer.from(other.caCert).toString('base64') },
        /ca-bundle\.crt does not hold ca\.crt/,
      ],
      [
        {
          ...content.data,
          'ca.crt': Buffer.from(other.cert).toString('base64'),
          'ca.key': Buffer.from(other.key).toString('base64'),
        },
        /not a CA certificate/,
      ],
    ];
    for (const [data, problem] of cases) {
      const read = readCertState({ data: JSON.parse(JSON.stringify(data)) as Record<string, string> });
      assert.ok('problem' in read);
      assert.match(read.problem, problem);
      assert.equal(planStep(read, { now: new Date(), policy: POLICY, webhookGeneration: 0 }).kind, 'reissue');
    }
  });

  it('does nothing for a fresh state, and renews a serving certificate that misses a wanted name', () => {
    assert.deepEqual(planStep(state, { now: new Date(), policy: POLICY, webhookGeneration: 7 }), {
      kind: 'none',
    });
    const step = planStep(state, {
      now: new Date(),
      policy: { ...POLICY, hosts: [...HOSTS, 'renamed.crinj.svc'] },
      webhookGeneration: 7,
    });
    assert.deepEqual(step, {
      kind: 'renew-serving',
      reason: 'the serving certificate does not cover renamed.crinj.svc',
    });
  });

  it('renews a serving certificate that misses a wanted IP address (--cert-host 127.0.0.1 added later)', async () => {
    for (const ip of ['127.0.0.1', '::1'])
      assert.deepEqual(
        planStep(state, {
          now: new Date(),
          policy: { ...POLICY, hosts: [...HOSTS, ip] },
          webhookGeneration: 7,
        }),
        { kind: 'renew-serving', reason: `the serving certificate does not cover ${ip}` },
      );
    // Once reissued with the addresses (same CA), it stays.
    const withIps = await generateCertBundle({ hosts: [...HOSTS, '127.0.0.1', '::1'], ca: state.ca });
    const reissued = { ...state, serving: { cert: withIps.cert, key: withIps.key } };
    assert.deepEqual(
      planStep(reissued, {
        now: new Date(),
        policy: { ...POLICY, hosts: [...HOSTS, '127.0.0.1', '::1'] },
        webhookGeneration: 7,
      }),
      { kind: 'none' },
    );
  });

  it('renews with a third of the lifetime left, and starts a CA rotation with a third of the CA lifetime left', async () => {
    const later = (days: number): Date => new Date(Date.now() + days * 86_400_000);
    assert.equal(planStep(state, { now: later(240), policy: POLICY, webhookGeneration: 7 }).kind, 'none');
    assert.equal(
      planStep(state, { now: later(250), policy: POLICY, webhookGeneration: 7 }).kind,
      'renew-serving',
    );
    // A serving certificate that outlives the point where the CA (366 days) has a third left: the CA decides.
    const longLeaf = await generateCertBundle({ hosts: HOSTS, ca: state.ca, validDays: 3650 });
    const withLongLeaf: CertState = { ...state, serving: { cert: longLeaf.cert, key: longLeaf.key } };
    assert.equal(
      planStep(withLongLeaf, { now: later(240), policy: POLICY, webhookGeneration: 7 }).kind,
      'none',
    );
    assert.equal(
      planStep(withLongLeaf, { now: later(250), policy: POLICY, webhookGeneration: 7 }).kind,
      'start-ca-rotation',
    );
  });

  it('in trust-new waits for the propagation delay and for the webhook configuration to carry the generation', () => {
    const since = new Date();
    const rotating: CertState = {
      ...state,
      phase: 'trust-new',
      phaseSince: since,
      nextCa: { cert: other.caCert, key: other.caKey },
      bundle: [state.ca.cert, other.caCert],
      generation: 8,
    };
    const at = (ms: number): Date => new Date(since.getTime() + ms);
    assert.equal(planStep(rotating, { now: at(59_000), policy: POLICY, webhookGeneration: 8 }).kind, 'wait');
    assert.deepEqual(planStep(rotating, { now: at(61_000), policy: POLICY, webhookGeneration: 7 }), {
      kind: 'wait',
      reason: 'the webhook configuration does not hold the new caBundle yet',
    });
    assert.equal(
      planStep(rotating, { now: at(61_000), policy: POLICY, webhookGeneration: 8 }).kind,
      'serve-new-ca',
    );
    assert.equal(
      planStep(rotating, { now: at(61_000), policy: POLICY, webhookGeneration: 'absent' }).kind,
      'serve-new-ca',
    );
  });

  it('in serve-new waits for every live replica to serve the current certificate; gone replicas do not hold it up', () => {
    const now = new Date();
    const current = certFingerprint(state.serving.cert);
    const serving: CertState = {
      ...state,
      phase: 'serve-new',
      phaseSince: now,
      bundle: [state.ca.cert, other.caCert],
    };
    const withAcks = (acks: Array<[string, string, number]>): CertState => ({
      ...serving,
      served: new Map(
        acks.map(([r, fp, ageMs]) => [r, { fingerprint: fp, at: new Date(now.getTime() - ageMs) }]),
      ),
    });
    assert.deepEqual(
      planStep(
        withAcks([
          ['a', current, 0],
          ['b', 'old', 1000],
        ]),
        { now, policy: POLICY, webhookGeneration: 8 },
      ),
      {
        kind: 'wait',
        reason: 'replicas still serving a certificate of the previous CA: b',
      },
    );
    assert.equal(
      planStep(
        withAcks([
          ['a', current, 0],
          ['b', 'old', 700_000],
        ]),
        { now, policy: POLICY, webhookGeneration: 8 },
      ).kind,
      'finish-ca-rotation',
    );
    const content = secretContent(
      withAcks([
        ['a', current, 0],
        ['b', 'old', 700_000],
      ]),
      now,
      POLICY.ackExpiryMs,
    );
    assert.deepEqual(
      Object.keys(content.annotations).filter((k) => k.startsWith(SERVED_PREFIX)),
      [`${SERVED_PREFIX}a`],
      'the gone replica is dropped on write',
    );
  });

  it('an expired CA, or one with less than an hour left, is reissued (not a serving certificate renewed by it at every sync)', () => {
    const caEnd = new Date(new X509Certificate(state.ca.cert).validTo).getTime();
    const at = (ms: number): Date => new Date(caEnd + ms);
    for (const [now, reason] of [
      [at(1000), /^the CA expired at /],
      [at(-30 * 60_000), /^the CA expires at .*, too soon for a rotation$/],
    ] as const) {
      const step = planStep(state, { now, policy: POLICY, webhookGeneration: 7 });
      assert.equal(step.kind, 'reissue');
      assert.match((step as { reason: string }).reason, reason);
    }
    assert.equal(
      planStep(state, { now: at(-2 * 3_600_000), policy: POLICY, webhookGeneration: 7 }).kind,
      'renew-serving',
    );
  });

  it('a reissue keeps the CAs the webhook configuration trusts, in phase trust-reissued; with none usable, phase none', async () => {
    const now = new Date();
    const fresh = await generateCertBundle({ hosts: HOSTS });
    const day = 86_400_000;
    const expiredCa = await generate([{ name: 'commonName', value: 'expired' }], {
      keyType: 'ec',
      curve: 'P-256',
      algorithm: 'sha256',
      notBeforeDate: new Date(now.getTime() - 10 * day),
      notAfterDate: new Date(now.getTime() - day),
      extensions: [{ name: 'basicConstraints', cA: true, critical: true }],
    });
    const acks = new Map([['a', { fingerprint: 'old', at: now }]]);
    const made = reissuedState({
      ca: { cert: fresh.caCert, key: fresh.caKey },
      serving: { cert: fresh.cert, key: fresh.key },
      // The current CA, an expired one, a leaf (no CA), garbage and the new CA itself.
      trusted: [state.ca.cert + expiredCa.cert, other.cert, 'not a certificate', fresh.caCert],
      served: acks,
      generation: 9,
      now,
    });
    assert.equal(made.phase, 'trust-reissued');
    assert.equal(made.phaseSince, now);
    assert.deepEqual(made.bundle.map(certFingerprint), [
      certFingerprint(fresh.caCert),
      certFingerprint(state.ca.cert),
    ]);
    assert.equal(made.served, acks, 'the served-annotations are carried over');
    const back = readCertState({
      data: secretContent(made, now, POLICY.ackExpiryMs).data,
      metadata: { annotations: secretContent(made, now, POLICY.ackExpiryMs).annotations },
    });
    assert.ok(!('problem' in back));
    assert.equal(back.phase, 'trust-reissued');
    assert.equal(back.served.get('a')?.fingerprint, 'old');

    const alone = reissuedState({
      ca: { cert: fresh.caCert, key: fresh.caKey },
      serving: { cert: fresh.cert, key: fresh.key },
      trusted: [expiredCa.cert],
      served: new Map(),
      generation: 9,
      now,
    });
    assert.equal(alone.phase, 'none');
    assert.equal(alone.phaseSince, undefined);
    assert.deepEqual(alone.bundle.map(certFingerprint), [certFingerprint(fresh.caCert)]);
  });

  it('in trust-reissued waits for the propagation delay and the webhook configuration like trust-new, then serves', () => {
    const since = new Date();
    const reissued: CertState = {
      ...state,
      phase: 'trust-reissued',
      phaseSince: since,
      bundle: [state.ca.cert, other.caCert],
      generation: 8,
    };
    const at = (ms: number): Date => new Date(since.getTime() + ms);
    assert.equal(planStep(reissued, { now: at(59_000), policy: POLICY, webhookGeneration: 8 }).kind, 'wait');
    assert.deepEqual(planStep(reissued, { now: at(61_000), policy: POLICY, webhookGeneration: 7 }), {
      kind: 'wait',
      reason: 'the webhook configuration does not hold the new caBundle yet',
    });
    assert.equal(
      planStep(reissued, { now: at(61_000), policy: POLICY, webhookGeneration: 8 }).kind,
      'serve-new-ca',
    );
    const content = secretContent({ ...reissued, bundle: [state.ca.cert] }, since, POLICY.ackExpiryMs);
    const lonely = readCertState({ data: content.data, metadata: { annotations: content.annotations } });
    assert.ok('problem' in lonely);
    assert.match(lonely.problem, /rotation phase trust-reissued needs the previous CA/);
  });

  it('an unusable Secret still gives its served-annotations to the reissue', () => {
    const content = secretContent(state, new Date(), POLICY.ackExpiryMs);
    const read = readCertState({
      data: { ...content.data, 'tls.key': Buffer.from(other.key).toString('base64') },
      metadata: { annotations: { [`${SERVED_PREFIX}replica-a`]: `abc ${new Date().toISOString()}` } },
    });
    assert.ok('problem' in read);
    assert.equal(read.served.get('replica-a')?.fingerprint, 'abc');
  });

  it('makes an annotation name of any replica name', () => {
    assert.equal(replicaKey('config-reloader-injector-7d9f8-abcde'), 'config-reloader-injector-7d9f8-abcde');
    const long = replicaKey('x'.repeat(80));
    assert.match(long, /^replica-[0-9a-f]{16}$/);
  });
});
