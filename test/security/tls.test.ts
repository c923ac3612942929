import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { connect, createServer, getCiphers, type ConnectionOptions, type Server } from 'node:tls';
import selfsigned from 'selfsigned';
import { generateCertBundle } from '../../src/certs/generate.ts';
import { DEFAULT_INJECTOR_CONFIG } from '../../src/injection/config.ts';
import { createLogger } from '../../src/shared/log.ts';
import { startWebhookServer, type RunningServer } from '../../src/webhook/server.ts';
import type { TlsMaterial } from '../../src/certs/source.ts';

/**
 * The webhook's TLS surface: TLS 1.2 at least and only AEAD suites with forward secrecy. Each refusal is checked
 * against a permissive control server with the same certificate, so a handshake that fails did so because the
 * webhook refused it, not because this client could not offer it.
 */

type Outcome = { ok: true; protocol: string; cipher: string } | { ok: false; code: string };

function handshake(port: number, ca: string, opts: ConnectionOptions): Promise<Outcome> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port, ca, servername: 'localhost', ...opts }, () => {
      resolve({ ok: true, protocol: socket.getProtocol() ?? '', cipher: socket.getCipher().standardName });
      socket.end();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => resolve({ ok: false, code: err.code ?? err.message }));
  });
}

/** What an old or careless client offers: every legacy protocol and cipher OpenSSL still has. */
const LEGACY = { ciphers: 'ALL:@SECLEVEL=0', minVersion: 'TLSv1' } as const;

/** Suites the webhook may agree to: TLS 1.3 suites and ECDHE key exchange with GCM or ChaCha20-Poly1305. */
const STRONG = /^(TLS_AES_|TLS_CHACHA20_|TLS_ECDHE_(ECDSA|RSA)_WITH_(AES_\d+_GCM|CHACHA20_POLY1305))/;

interface Pair {
  cert: string;
  key: string;
  ca: string;
}

/** The project's own ECDSA certificates, and an RSA one as cert-manager often issues. */
const PAIRS: Array<[string, () => Promise<Pair>, string[]]> = [
  [
    'ECDSA',
    async () => {
      const b = await generateCertBundle({ hosts: ['localhost', '127.0.0.1'] });
      return { cert: b.cert, key: b.key, ca: b.caCert };
    },
    [
      'ECDHE-ECDSA-AES128-SHA',
      'ECDHE-ECDSA-AES256-SHA',
      'ECDHE-ECDSA-AES128-SHA256',
      'ECDHE-ECDSA-AES256-SHA384',
    ],
  ],
  [
    'RSA',
    async () => {
      const r = await selfsigned.generate([{ name: 'commonName', value: 'localhost' }], {
        keyType: 'rsa',
        keySize: 2048,
        algorithm: 'sha256',
        extensions: [
          {
            name: 'subjectAltName',
            altNames: [
              { type: 2, value: 'localhost' },
              { type: 7, ip: '127.0.0.1' },
            ],
          },
        ],
      });
      return { cert: r.cert, key: r.private, ca: r.cert };
    },
    [
      'AES128-SHA',
      'AES256-SHA',
      'AES128-GCM-SHA256',
      'AES256-SHA256',
      'ECDHE-RSA-AES128-SHA',
      'ECDHE-RSA-AES256-SHA384',
    ],
  ],
];

for (const [kind, makePair, weak] of PAIRS) {
  void describe(`webhook TLS hardening, ${kind} certificate`, () => {
    let server: RunningServer;
    let control: Server;
    let ca: string;
    let port: number;
    let controlPort: number;
    const listeners: Array<(m: TlsMaterial) => void> = [];

    before(async () => {
      const pair = await makePair();
      ca = pair.ca;
      const log = createLogger({ name: 'tls-test', level: 'silent' });
      const tls = {
        material: { cert: pair.cert, key: pair.key },
        onChange: (l: (m: TlsMaterial) => void) => void listeners.push(l),
        close: () => {},
      };
      server = await startWebhookServer({
        host: '127.0.0.1',
        port: 0,
        tls,
        config: DEFAULT_INJECTOR_CONFIG,
        log,
      });
      port = Number(new URL(server.url).port);
      control = createServer({ cert: pair.cert, key: pair.key, ...LEGACY }, (s) => s.end());
      await new Promise<void>((resolve) => control.listen(0, '127.0.0.1', resolve));
      controlPort = (control.address() as { port: number }).port;
    });

    after(async () => {
      await server.close();
      await new Promise((resolve) => control.close(resolve));
    });

    void it('agrees to TLS 1.3 and to TLS 1.2 with an AEAD suite', async () => {
      const v13 = await handshake(port, ca, {});
      assert.equal(v13.ok && v13.protocol, 'TLSv1.3');
      const v12 = await handshake(port, ca, { maxVersion: 'TLSv1.2' });
      assert.ok(v12.ok, JSON.stringify(v12));
      assert.equal(v12.protocol, 'TLSv1.2');
      assert.match(v12.cipher, STRONG);
    });

    for (const version of ['TLSv1', 'TLSv1.1'] as const) {
      void it(`refuses ${version}`, async () => {
        const opts = { ...LEGACY, maxVersion: version };
        const baseline = await handshake(controlPort, ca, opts);
        assert.ok(
          baseline.ok && baseline.protocol === version,
          `the client can speak ${version}: ${JSON.stringify(baseline)}`,
        );
        const outcome = await handshake(port, ca, opts);
        assert.equal(outcome.ok, false, `the webhook accepted ${version}`);
        assert.match(
          (outcome as { code: string }).code,
          /PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL|NO_PROTOCOLS/,
        );
        assert.equal((await handshake(port, ca, {})).ok, true, 'still serving');
      });
    }

    for (const cipher of weak) {
      void it(`refuses the weak TLS 1.2 suite ${cipher}`, async () => {
        const opts = { ...LEGACY, ciphers: `${cipher}:@SECLEVEL=0`, maxVersion: 'TLSv1.2' } as const;
        const baseline = await handshake(controlPort, ca, opts);
        assert.ok(baseline.ok, `the client can use ${cipher}: ${JSON.stringify(baseline)}`);
        const outcome = await handshake(port, ca, opts);
        assert.equal(outcome.ok, false, `the webhook accepted ${cipher}`);
        assert.match((outcome as { code: string }).code, /HANDSHAKE_FAILURE|NO_SHARED_CIPHER|NO_CIPHERS/);
      });
    }

    void it('agrees to no TLS 1.2 suite outside the strong list, whichever one a client offers', async () => {
      const accepted: string[] = [];
      let offered = 0;
      for (const cipher of getCiphers()) {
        if (cipher.startsWith('tls_')) continue; // TLS 1.3 suites are not chosen by this list
        const opts = {
          ...LEGACY,
          ciphers: `${cipher.toUpperCase()}:@SECLEVEL=0`,
          maxVersion: 'TLSv1.2',
        } as const;
        if (!(await handshake(controlPort, ca, opts)).ok) continue; // not usable with this key type at all
        offered++;
        const outcome = await handshake(port, ca, opts);
        if (outcome.ok) accepted.push(outcome.cipher);
      }
      assert.ok(offered > accepted.length, 'weak suites were offered');
      assert.ok(accepted.length > 0, 'some TLS 1.2 suite is accepted');
      for (const cipher of accepted) assert.match(cipher, STRONG);
    });

    void it('keeps the same protocol and suite limits after a certificate reload', async () => {
      const next = await makePair();
      for (const l of listeners) l({ cert: next.cert, key: next.key });
      const fresh = await handshake(port, next.ca, { maxVersion: 'TLSv1.2' });
      assert.ok(fresh.ok && STRONG.test(fresh.cipher), JSON.stringify(fresh));
      assert.equal((await handshake(port, next.ca, { ...LEGACY, maxVersion: 'TLSv1.1' })).ok, false);
      const weakSuite = `${weak[0]!}:@SECLEVEL=0`;
      assert.equal(
        (await handshake(port, next.ca, { ...LEGACY, ciphers: weakSuite, maxVersion: 'TLSv1.2' })).ok,
        false,
      );
    });
  });
}
