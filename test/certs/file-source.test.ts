import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, describe, it } from 'node:test';
import { connect } from 'node:tls';
import { generateCertBundle, type CertBundle } from '../../src/certs/generate.ts';
import { DEFAULT_INJECTOR_CONFIG } from '../../src/injection/config.ts';
import { createLogger, type Logger } from '../../src/shared/log.ts';
import { capturingLogger } from '../support/captured-log.ts';
import { waitFor } from '../support/wait.ts';
import { startWebhookServer, type RunningServer } from '../../src/webhook/server.ts';
import { fileTlsSource } from '../../src/certs/file-source.ts';
import { selfSignedTlsSource } from '../../src/certs/self-signed.ts';
import { servedCertificateExpiry, type TlsSource } from '../../src/certs/source.ts';
import { httpsRequest } from '../support/https.ts';

const HOSTS = ['localhost', '127.0.0.1'];
const EXPIRY = 'config_reloader_webhook_certificate_expiry_timestamp_seconds';

/** The fingerprint of the certificate a fresh TLS connection is served, verified against `ca`. */
function servedFingerprint(url: string, ca: string): Promise<string> {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port: Number(port), ca, servername: 'localhost' }, () => {
      resolve(socket.getPeerX509Certificate()?.fingerprint256 ?? '');
      socket.end();
    });
    socket.on('error', reject);
  });
}

/**
 * A Secret volume as the kubelet writes it: the files live in a timestamped directory, `..data` points to it, and
 * each key is a symlink through `..data`. An update writes a new timestamped directory and renames a `..data_tmp`
 * symlink over `..data` (one atomic rename), then removes the old directory.
 */
class SecretVolume {
  readonly dir: string;
  #generation = 0;
  #current: string | undefined;
  private constructor(dir: string) {
    this.dir = dir;
  }
  static async create(pair: { cert: string; key: string }): Promise<SecretVolume> {
    const volume = new SecretVolume(await mkdtemp(join(tmpdir(), 'tls-volume-')));
    await volume.swap(pair);
    await symlink(join('..data', 'tls.crt'), join(volume.dir, 'tls.crt'));
    await symlink(join('..data', 'tls.key'), join(volume.dir, 'tls.key'));
    return volume;
  }
  get certFile(): string {
    return join(this.dir, 'tls.crt');
  }
  get keyFile(): string {
    return join(this.dir, 'tls.key');
  }
  async swap(pair: { cert: string; key: string }): Promise<void> {
    const name = `..2026_01_0${++this.#generation}_12_00_00.00000000${this.#generation}`;
    await mkdir(join(this.dir, name));
    await writeFile(join(this.dir, name, 'tls.crt'), pair.cert);
    await writeFile(join(this.dir, name, 'tls.key'), pair.key, { mode: 0o600 });
    await symlink(name, join(this.dir, '..data_tmp'));
    await rename(join(this.dir, '..data_tmp'), join(this.dir, '..data'));
    if (this.#current) await rm(join(this.dir, this.#current), { recursive: true, force: true });
    this.#current = name;
  }
}

/**
 * Replaces fs.watch, for the ES module bindings too (file-source.ts imports it by name), with watchers that are never told
 * of a change: what a missed event looks like to the webhook. Returns the restore function.
 */
function suppressWatchEvents(mode: 'silent' | 'throw' = 'silent'): () => void {
  const original = fs.watch;
  const made: string[] = [];
  fs.watch = ((path: fs.PathLike) => {
    made.push(String(path));
    if (mode === 'throw')
      throw Object.assign(new Error('ENOSPC: System limit for number of file watchers reached'), {
        code: 'ENOSPC',
      });
    return Object.assign(new EventEmitter(), { close() {}, ref() {}, unref() {} }) as unknown as fs.FSWatcher;
  }) as typeof fs.watch;
  syncBuiltinESMExports();
  return () => {
    fs.watch = original;
    syncBuiltinESMExports();
    assert.ok(made.length > 0, 'the source did set up a watch (which was then never told)');
  };
}

const expiryGauge = async (server: RunningServer, ca: string): Promise<number | undefined> => {
  const text = (await httpsRequest(`${server.url}/metrics`, { ca })).body;
  const line = text.split('\n').find((l) => l.startsWith(`${EXPIRY} `));
  return line === undefined ? undefined : Number(line.split(' ')[1]);
};
const notAfterSeconds = (pem: string): number => new Date(new X509Certificate(pem).validTo).getTime() / 1000;
const fingerprint = (pem: string): string => new X509Certificate(pem).fingerprint256;

describe('certificates from files: a change fs.watch misses is still picked up', () => {
  const cleanup: Array<() => Promise<void> | void> = [];
  let ca: CertBundle;
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });
  after(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  const start = async (
    volume: SecretVolume,
    log: Logger,
    pollIntervalMs: number,
    watch: 'real' | 'suppressed' | 'throws',
  ): Promise<{ tls: TlsSource; server: RunningServer }> => {
    const restore =
      watch === 'real' ? undefined : suppressWatchEvents(watch === 'throws' ? 'throw' : 'silent');
    let tls: TlsSource;
    try {
      tls = await fileTlsSource(volume.certFile, volume.keyFile, log, { pollIntervalMs });
    } finally {
      restore?.();
    }
    const server = await startWebhookServer({
      host: '127.0.0.1',
      port: 0,
      tls,
      config: DEFAULT_INJECTOR_CONFIG,
      log,
    });
    cleanup.push(() => server.close());
    return { tls, server };
  };

  it('the kubelet swaps ..data and no watch event comes: the poll serves the new certificate and the expiry gauge follows', async () => {
    ca = await generateCertBundle({ hosts: HOSTS });
    const first = await generateCertBundle({
      hosts: HOSTS,
      ca: { cert: ca.caCert, key: ca.caKey },
      validDays: 30,
    });
    const second = await generateCertBundle({
      hosts: HOSTS,
      ca: { cert: ca.caCert, key: ca.caKey },
      validDays: 90,
    });
    const volume = await SecretVolume.create(first);
    cleanup.push(() => rm(volume.dir, { recursive: true, force: true }));
    const { log, lines } = capturingLogger('tls-reload-test', 'debug');
    const { tls, server } = await start(volume, log, 150, 'suppressed');
    const changes: string[] = [];
    tls.onChange((m) => changes.push(fingerprint(m.cert)));
    assert.equal(await servedFingerprint(server.url, ca.caCert), fingerprint(first.cert));
    assert.equal(await expiryGauge(server, ca.caCert), notAfterSeconds(first.cert));

    await volume.swap(second);
    await waitFor(
      async () => (await servedFingerprint(server.url, ca.caCert)) === fingerprint(second.cert),
      'the new certificate to be served',
    );
    assert.deepEqual(changes, [fingerprint(second.cert)], 'one change, reported once');
    assert.equal(fingerprint(tls.material.cert), fingerprint(second.cert));
    assert.equal(await expiryGauge(server, ca.caCert), notAfterSeconds(second.cert));
    const reloaded = lines.filter((l) => l.msg === 'serving certificate reloaded');
    assert.equal(reloaded.length, 1);
    assert.equal(reloaded[0]?.via, 'poll', 'the poll found it, as no watch event came');
    const metrics = (await httpsRequest(`${server.url}/metrics`, { ca: ca.caCert })).body;
    assert.match(metrics, /^config_reloader_webhook_certificate_reloads_total 1$/m);
  });

  it('with the real fs.watch the same swap is picked up by the watch, long before the next poll', async () => {
    const first = await generateCertBundle({ hosts: HOSTS, ca: { cert: ca.caCert, key: ca.caKey } });
    const second = await generateCertBundle({ hosts: HOSTS, ca: { cert: ca.caCert, key: ca.caKey } });
    const volume = await SecretVolume.create(first);
    cleanup.push(() => rm(volume.dir, { recursive: true, force: true }));
    const { log, lines } = capturingLogger('tls-reload-test', 'debug');
    const { server } = await start(volume, log, 600_000, 'real');
    await volume.swap(second);
    await waitFor(
      async () => (await servedFingerprint(server.url, ca.caCert)) === fingerprint(second.cert),
      'the new certificate to be served',
    );
    assert.equal(lines.find((l) => l.msg === 'serving certificate reloaded')?.via, 'watch');
  });

  it('a watch that cannot be set up (the inotify watch limit) leaves the poll to find the swap', async () => {
    const first = await generateCertBundle({ hosts: HOSTS, ca: { cert: ca.caCert, key: ca.caKey } });
    const second = await generateCertBundle({ hosts: HOSTS, ca: { cert: ca.caCert, key: ca.caKey } });
    const volume = await SecretVolume.create(first);
    cleanup.push(() => rm(volume.dir, { recursive: true, force: true }));
    const { log, lines } = capturingLogger('tls-reload-test', 'debug');
    const { server } = await start(volume, log, 100, 'throws');
    assert.ok(lines.some((l) => l.msg === 'cannot watch certificate directory; relying on the poll'));
    await volume.swap(second);
    await waitFor(
      async () => (await servedFingerprint(server.url, ca.caCert)) === fingerprint(second.cert),
      'the new certificate to be served',
    );
  });

  it('an unusable pair is warned about once, not at every poll, and the previous certificate stays until a usable one comes', async () => {
    const first = await generateCertBundle({ hosts: HOSTS, ca: { cert: ca.caCert, key: ca.caKey } });
    const other = await generateCertBundle({ hosts: HOSTS, ca: { cert: ca.caCert, key: ca.caKey } });
    const fixed = await generateCertBundle({ hosts: HOSTS, ca: { cert: ca.caCert, key: ca.caKey } });
    const volume = await SecretVolume.create(first);
    cleanup.push(() => rm(volume.dir, { recursive: true, force: true }));
    const { log, lines } = capturingLogger('tls-reload-test', 'debug');
    const { server } = await start(volume, log, 50, 'suppressed');
    await volume.swap({ cert: other.cert, key: first.key });
    await new Promise((r) => setTimeout(r, 600));
    const warnings = lines.filter(
      (l) => l.msg === 'new certificate files are not usable yet; still serving the previous certificate',
    );
    assert.equal(warnings.length, 1, 'about ten polls, one warning');
    assert.equal(warnings[0]?.problem, 'the private key does not belong to the certificate');
    assert.equal(await servedFingerprint(server.url, ca.caCert), fingerprint(first.cert));
    await volume.swap(fixed);
    await waitFor(
      async () => (await servedFingerprint(server.url, ca.caCert)) === fingerprint(fixed.cert),
      'the usable pair to be served',
    );
  });

  it('a closed source stops polling and leaves the expiry gauge', async () => {
    const first = await generateCertBundle({ hosts: HOSTS, ca: { cert: ca.caCert, key: ca.caKey } });
    const volume = await SecretVolume.create(first);
    cleanup.push(() => rm(volume.dir, { recursive: true, force: true }));
    const { log, lines } = capturingLogger('tls-reload-test', 'debug');
    const tls = await fileTlsSource(volume.certFile, volume.keyFile, log, { pollIntervalMs: 30 });
    assert.equal(servedCertificateExpiry(), notAfterSeconds(first.cert));
    tls.close();
    assert.equal(servedCertificateExpiry(), undefined, 'no source open in this process any more');
    await volume.swap(await generateCertBundle({ hosts: HOSTS, ca: { cert: ca.caCert, key: ca.caKey } }));
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(lines.filter((l) => l.msg === 'serving certificate reloaded').length, 0);
  });
});

describe('config_reloader_webhook_certificate_expiry_timestamp_seconds: the self-signed source', () => {
  it('is the notAfter of the certificate made at start', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tls-selfsigned-'));
    const log = createLogger({ name: 't', level: 'silent' });
    const tls = await selfSignedTlsSource(['127.0.0.1'], join(dir, 'ca.crt'), log);
    const server = await startWebhookServer({
      host: '127.0.0.1',
      port: 0,
      tls,
      config: DEFAULT_INJECTOR_CONFIG,
      log,
    });
    try {
      assert.equal(await expiryGauge(server, tls.caCert), notAfterSeconds(tls.material.cert));
      const text = (await httpsRequest(`${server.url}/metrics`, { ca: tls.caCert })).body;
      assert.match(text, new RegExp(`^# TYPE ${EXPIRY} gauge$`, 'm'));
    } finally {
      await server.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
