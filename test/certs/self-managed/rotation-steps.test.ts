/**
 * The named steps of SelfManagedRotation, each run alone against an in-memory CertApi: reconcile (the Secret),
 * publishBundle (the webhook configuration's caBundle), serve (what this replica serves) and acknowledge (its
 * served-annotation). rotation.test.ts runs them together, through client-node and the test API server.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { before, describe, it } from 'node:test';
import type { V1Secret } from '@kubernetes/client-node';
import { generateCertBundle, serviceHosts } from '../../../src/certs/generate.ts';
import type { CertApi, SecretContent, WebhookConfigView } from '../../../src/certs/self-managed/api.ts';
import { SelfManagedRotation } from '../../../src/certs/self-managed/rotation.ts';
import {
  certFingerprint,
  readCertState,
  secretContent,
  SERVED_PREFIX,
  splitPemCerts,
  type CertState,
  type KeyPair,
} from '../../../src/certs/self-managed/state.ts';
import type { TlsMaterial } from '../../../src/certs/source.ts';
import { createLogger } from '../../../src/shared/log.ts';

const HOSTS = serviceHosts('config-reloader-injector', 'crinj');
const REPLICA = 'webhook-0';
const log = createLogger({ name: 'rotation-steps-test', level: 'silent' });
const b64 = (s: string): string => Buffer.from(s).toString('base64');

/** One Secret and one webhook configuration in memory, with resourceVersions; every call is recorded. */
class MemoryCertApi implements CertApi {
  secret: V1Secret | undefined;
  webhook: { resourceVersion: number; generation: number; caBundles: Array<string | undefined> } | undefined;
  readonly calls: string[] = [];
  /** Run by createSecret before it stores anything: another replica writing first. */
  beforeCreate: (() => void) | undefined;
  /** This many writes of the caBundle answer `conflict` first. */
  caBundleConflicts = 0;
  private secretVersion = 0;

  storeSecret(content: SecretContent): V1Secret {
    this.secret = {
      metadata: { resourceVersion: String(++this.secretVersion), annotations: { ...content.annotations } },
      data: { ...content.data },
    };
    return structuredClone(this.secret);
  }

  readSecret(): Promise<V1Secret | undefined> {
    this.calls.push('readSecret');
    return Promise.resolve(structuredClone(this.secret));
  }

  createSecret(content: SecretContent): Promise<V1Secret | 'exists'> {
    this.calls.push('createSecret');
    this.beforeCreate?.();
    if (this.secret) return Promise.resolve('exists');
    return Promise.resolve(this.storeSecret(content));
  }

  replaceSecret(current: V1Secret, content: SecretContent): Promise<V1Secret | 'conflict'> {
    this.calls.push('replaceSecret');
    if (current.metadata?.resourceVersion !== this.secret?.metadata?.resourceVersion)
      return Promise.resolve('conflict');
    return Promise.resolve(this.storeSecret(content));
  }

  patchSecretAnnotations(annotations: Record<string, string | null>): Promise<void> {
    this.calls.push('patchSecretAnnotations');
    const metadata = (this.secret as V1Secret).metadata as { annotations: Record<string, string> };
    for (const [k, v] of Object.entries(annotations)) {
      if (v === null) delete metadata.annotations[k];
      else metadata.annotations[k] = v;
    }
    return Promise.resolve();
  }

  readWebhookConfig(): Promise<WebhookConfigView | undefined> {
    this.calls.push('readWebhookConfig');
    if (!this.webhook) return Promise.resolve(undefined);
    return Promise.resolve({
      resourceVersion: String(this.webhook.resourceVersion),
      hasAnnotations: true,
      generation: this.webhook.generation,
      caBundles: [...this.webhook.caBundles],
    });
  }

  writeCaBundle(
    current: WebhookConfigView,
    caBundle: string,
    generation: number,
  ): Promise<'ok' | 'conflict'> {
    this.calls.push('writeCaBundle');
    const webhook = this.webhook;
    if (!webhook) throw new Error('no webhook configuration');
    if (this.caBundleConflicts > 0) {
      this.caBundleConflicts--;
      webhook.resourceVersion++;
      return Promise.resolve('conflict');
    }
    if (current.resourceVersion !== String(webhook.resourceVersion)) return Promise.resolve('conflict');
    webhook.caBundles = webhook.caBundles.map(() => caBundle);
    webhook.generation = generation;
    webhook.resourceVersion++;
    return Promise.resolve('ok');
  }
}

let ca: KeyPair;
let serving: KeyPair;
let renewed: KeyPair;

before(async () => {
  const first = await generateCertBundle({ hosts: HOSTS });
  ca = { cert: first.caCert, key: first.caKey };
  serving = { cert: first.cert, key: first.key };
  const second = await generateCertBundle({ hosts: HOSTS, ca });
  renewed = { cert: second.cert, key: second.key };
});

/** A state of one CA, no rotation running. */
function stateOf(overrides: Partial<CertState> = {}): CertState {
  return {
    ca,
    serving,
    bundle: splitPemCerts(ca.cert),
    nextCa: undefined,
    phase: 'none',
    phaseSince: undefined,
    generation: 5,
    served: new Map(),
    ...overrides,
  };
}

function rotation(
  api: CertApi,
  opts: { hosts?: string[]; ackRefreshMs?: number; ackExpiryMs?: number } = {},
) {
  return new SelfManagedRotation({ api, hosts: opts.hosts ?? HOSTS, replica: REPLICA, log, ...opts });
}

describe('SelfManagedRotation.reconcile: the Secret', () => {
  it('with no Secret, creates one holding a new CA and a serving certificate it signed, and returns it', async () => {
    const api = new MemoryCertApi();
    const state = await rotation(api).reconcile();
    assert.deepEqual(api.calls, ['readSecret', 'readWebhookConfig', 'createSecret']);
    const stored = readCertState(api.secret as V1Secret) as CertState;
    assert.equal(certFingerprint(stored.ca.cert), certFingerprint(state.ca.cert));
    assert.equal(stored.serving.cert, state.serving.cert);
    assert.ok(new X509Certificate(state.serving.cert).checkIssued(new X509Certificate(state.ca.cert)));
    assert.deepEqual(state.bundle, splitPemCerts(state.ca.cert));
    assert.equal(state.phase, 'none', 'no webhook configuration trusts an older CA: served at once');
  });

  it('another replica created the Secret first: its content is read and used', async () => {
    const api = new MemoryCertApi();
    api.beforeCreate = () => api.storeSecret(secretContent(stateOf(), new Date(), 60_000));
    const state = await rotation(api).reconcile();
    assert.deepEqual(api.calls, ['readSecret', 'readWebhookConfig', 'createSecret', 'readSecret']);
    assert.equal(state.ca.cert, ca.cert);
    assert.equal(state.serving.cert, serving.cert);
  });

  it('a Secret with nothing due is returned as it is, without a write', async () => {
    const api = new MemoryCertApi();
    api.storeSecret(secretContent(stateOf(), new Date(), 60_000));
    const state = await rotation(api).reconcile();
    assert.deepEqual(api.calls, ['readSecret']);
    assert.equal(state.serving.cert, serving.cert);
  });

  it('a serving certificate that lacks a host is reissued by the same CA; a conflicting write is read and decided again', async () => {
    const api = new MemoryCertApi();
    api.storeSecret(secretContent(stateOf(), new Date(), 60_000));
    let conflicts = 1;
    const replace = api.replaceSecret.bind(api);
    api.replaceSecret = (current, content) => {
      if (conflicts-- > 0) {
        api.storeSecret(secretContent(stateOf(), new Date(), 60_000)); // someone else wrote meanwhile
        return Promise.resolve('conflict');
      }
      return replace(current, content);
    };
    const state = await rotation(api, { hosts: [...HOSTS, 'hook.example.com'] }).reconcile();
    assert.deepEqual(api.calls, ['readSecret', 'readSecret', 'replaceSecret']);
    assert.equal(state.ca.cert, ca.cert, 'same CA');
    assert.notEqual(state.serving.cert, serving.cert);
    assert.ok(new X509Certificate(state.serving.cert).checkHost('hook.example.com'));
    assert.equal((readCertState(api.secret as V1Secret) as CertState).serving.cert, state.serving.cert);
  });
});

describe('SelfManagedRotation.publishBundle: the caBundle of the webhook configuration', () => {
  it('writes the bundle into every webhook entry with the generation', async () => {
    const api = new MemoryCertApi();
    api.webhook = { resourceVersion: 1, generation: 0, caBundles: [undefined, 'b2xk'] };
    await rotation(api).publishBundle(stateOf());
    const bundle = b64(splitPemCerts(ca.cert).join(''));
    assert.deepEqual(api.webhook.caBundles, [bundle, bundle]);
    assert.equal(api.webhook.generation, 5);
  });

  it('writes nothing when the configuration holds the bundle at that generation, or a newer generation', async () => {
    const api = new MemoryCertApi();
    const bundle = b64(splitPemCerts(ca.cert).join(''));
    api.webhook = { resourceVersion: 1, generation: 5, caBundles: [bundle, bundle] };
    await rotation(api).publishBundle(stateOf());
    api.webhook = { resourceVersion: 1, generation: 6, caBundles: ['b2xk'] };
    await rotation(api).publishBundle(stateOf());
    assert.deepEqual(api.calls, ['readWebhookConfig', 'readWebhookConfig']);
    assert.deepEqual(
      api.webhook.caBundles,
      ['b2xk'],
      'an older read of the Secret never puts an older bundle back',
    );
  });

  it('reads again after a conflicting write, and does not fail when the configuration does not exist', async () => {
    const api = new MemoryCertApi();
    api.webhook = { resourceVersion: 1, generation: 0, caBundles: [undefined] };
    api.caBundleConflicts = 1;
    await rotation(api).publishBundle(stateOf());
    assert.deepEqual(api.calls, ['readWebhookConfig', 'writeCaBundle', 'readWebhookConfig', 'writeCaBundle']);
    assert.equal(api.webhook.generation, 5);

    const none = new MemoryCertApi();
    await rotation(none).publishBundle(stateOf());
    assert.deepEqual(none.calls, ['readWebhookConfig']);
  });
});

describe('SelfManagedRotation.serve: what this replica serves', () => {
  it('serves the state certificate and its bundle; a later certificate replaces it and listeners hear of it once', () => {
    const r = rotation(new MemoryCertApi());
    const heard: TlsMaterial[] = [];
    r.onChange((m) => heard.push(m));
    r.serve(stateOf());
    assert.deepEqual(r.material, serving);
    assert.equal(r.caBundle, splitPemCerts(ca.cert).join(''));
    assert.deepEqual(heard, [], 'the first certificate is not a change');
    r.serve(stateOf({ serving: renewed }));
    r.serve(stateOf({ serving: renewed }));
    assert.deepEqual(r.material, renewed);
    assert.deepEqual(heard, [renewed]);
  });

  it('in phase trust-reissued keeps what it serves (or serves nothing yet), while taking the new bundle', async () => {
    const other = await generateCertBundle({ hosts: HOSTS });
    const reissued = stateOf({
      ca: { cert: other.caCert, key: other.caKey },
      serving: { cert: other.cert, key: other.key },
      bundle: [...splitPemCerts(other.caCert), ...splitPemCerts(ca.cert)],
      phase: 'trust-reissued',
      phaseSince: new Date(),
    });
    const fresh = rotation(new MemoryCertApi());
    fresh.serve(reissued);
    assert.equal(fresh.material, undefined);
    const serving = rotation(new MemoryCertApi());
    serving.serve(stateOf());
    serving.serve(reissued);
    assert.equal(serving.material.cert, stateOf().serving.cert, 'still the certificate of the trusted CA');
    assert.equal(
      new X509Certificate(serving.material.cert).verify(new X509Certificate(other.caCert).publicKey),
      false,
    );
    assert.equal(serving.caBundle, reissued.bundle.join(''));
  });
});

describe('SelfManagedRotation.acknowledge: the served-annotation', () => {
  const key = `${SERVED_PREFIX}${REPLICA}`;
  const annotations = (api: MemoryCertApi): Record<string, string> =>
    (api.secret?.metadata?.annotations ?? {}) as Record<string, string>;

  it('says nothing before the first serve, then writes the served fingerprint and the time', async () => {
    const api = new MemoryCertApi();
    api.storeSecret(secretContent(stateOf(), new Date(), 60_000));
    const r = rotation(api);
    await r.acknowledge(stateOf());
    assert.deepEqual(api.calls, []);
    r.serve(stateOf());
    const before = Date.now();
    await r.acknowledge(stateOf());
    const [fingerprint, at] = (annotations(api)[key] ?? '').split(' ');
    assert.equal(fingerprint, certFingerprint(serving.cert));
    assert.ok(new Date(at ?? '').getTime() >= before - 1000);
  });

  it('no call while its annotation is fresh and names what it serves; refreshed once older than ackRefreshMs', async () => {
    const api = new MemoryCertApi();
    api.storeSecret(secretContent(stateOf(), new Date(), 60_000));
    const r = rotation(api, { ackRefreshMs: 1000, ackExpiryMs: 60_000 });
    r.serve(stateOf());
    const fresh = new Map([[REPLICA, { fingerprint: certFingerprint(serving.cert), at: new Date() }]]);
    await r.acknowledge(stateOf({ served: fresh }));
    assert.deepEqual(api.calls, []);
    const stale = new Map([
      [REPLICA, { fingerprint: certFingerprint(serving.cert), at: new Date(Date.now() - 2000) }],
    ]);
    await r.acknowledge(stateOf({ served: stale }));
    assert.deepEqual(api.calls, ['patchSecretAnnotations']);
  });

  it('removes the annotation of a replica not heard from for ackExpiryMs, and keeps live ones', async () => {
    const api = new MemoryCertApi();
    const served = new Map([
      [REPLICA, { fingerprint: certFingerprint(serving.cert), at: new Date() }],
      ['webhook-gone', { fingerprint: 'aa', at: new Date(Date.now() - 120_000) }],
      ['webhook-1', { fingerprint: 'bb', at: new Date() }],
    ]);
    api.storeSecret(secretContent(stateOf({ served }), new Date(Date.now() - 60_000), 600_000));
    const r = rotation(api, { ackExpiryMs: 60_000 });
    r.serve(stateOf());
    await r.acknowledge(stateOf({ served }));
    assert.equal(annotations(api)[`${SERVED_PREFIX}webhook-gone`], undefined);
    assert.ok(annotations(api)[`${SERVED_PREFIX}webhook-1`]);
    assert.ok(annotations(api)[key]);
  });
});
