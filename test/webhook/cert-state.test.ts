import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { generateCertBundle, serviceHosts } from '../../src/certs/generate.ts';
import {
  ANNOTATIONS,
  certFingerprint,
  planStep,
  readCertState,
  replicaKey,
  secretContent,
  SERVED_PREFIX,
  type CertPolicy,
  type CertState,
} from '../../src/webhook/cert-state.ts';

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
      metadata: { annotations: { [ANNOTATIONS.generation]: '7' } },
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

  it('makes an annotation name of any replica name', () => {
    assert.equal(replicaKey('config-reloader-injector-7d9f8-abcde'), 'config-reloader-injector-7d9f8-abcde');
    const long = replicaKey('x'.repeat(80));
    assert.match(long, /^replica-[0-9a-f]{16}$/);
  });
});
