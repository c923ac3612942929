import { X509Certificate, createPrivateKey } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import type { Logger } from '../shared/log.ts';
import { generateCertBundle } from '../certs/generate.ts';

export interface TlsMaterial {
  cert: string;
  key: string;
}

/** Where the serving certificate comes from; `onChange` fires with material that was checked to be a usable pair. */
export interface TlsSource {
  readonly material: TlsMaterial;
  onChange(listener: (material: TlsMaterial) => void): void;
  close(): void;
}

/** Throws a message naming the problem when the PEMs are not a certificate and its matching private key. */
export function checkPair(material: TlsMaterial): X509Certificate {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(material.cert);
  } catch {
    throw new Error('the certificate file does not hold a PEM certificate');
  }
  let matches: boolean;
  try {
    matches = cert.checkPrivateKey(createPrivateKey(material.key));
  } catch {
    throw new Error('the key file does not hold a PEM private key');
  }
  if (!matches) throw new Error('the private key does not belong to the certificate');
  return cert;
}

/**
 * The certificate sources open in this process, for the gauge config_reloader_webhook_certificate_expiry_timestamp_seconds
 * (metrics.ts): every source registers itself when made and leaves on close(). The webhook process has one.
 */
const openSources = new Set<{ readonly material: TlsMaterial | undefined }>();
const notAfterCache = new WeakMap<TlsMaterial, number>();

export function trackServed(source: { readonly material: TlsMaterial | undefined }): void {
  openSources.add(source);
}

export function untrackServed(source: { readonly material: TlsMaterial | undefined }): void {
  openSources.delete(source);
}

/** notAfter (Unix seconds) of the serving certificate of the open sources, the earliest if several; undefined before any serves. */
export function servedCertificateExpiry(): number | undefined {
  let earliest: number | undefined;
  for (const source of openSources) {
    const material = source.material;
    if (!material) continue;
    let notAfter = notAfterCache.get(material);
    if (notAfter === undefined) {
      try {
        notAfter = new Date(new X509Certificate(material.cert).validTo).getTime() / 1000;
      } catch {
        continue;
      }
      notAfterCache.set(material, notAfter);
    }
    if (earliest === undefined || notAfter < earliest) earliest = notAfter;
  }
  return earliest;
}

/**
 * How often fileTlsSource re-reads the files whatever fs.watch says. A Secret volume changes by an atomic swap of
 * its `..data` symlink, which a watch can miss (an inotify queue overflow, a watch limit reached, a directory
 * watched through a symlink that the swap replaces); one missed event used to mean serving the old certificate
 * until it expired. 30 s: the kubelet itself takes a minute or two to project a renewed Secret into the pod and
 * cert-manager renews 30 days before expiry, so 30 s more after a missed event costs nothing that matters (a CA
 * replaced by cainjector is the tightest case: pods admitted in that window may skip injection), while reading
 * two small files twice a minute costs nothing measurable.
 */
export const FILE_POLL_INTERVAL_MS = 30_000;

export interface FileTlsOptions {
  /** Re-read and compare the files this often, for the changes fs.watch misses (default FILE_POLL_INTERVAL_MS). */
  pollIntervalMs?: number;
}

/**
 * Certificates from files, re-read when they change. cert-manager and the kubelet replace Secret-backed files
 * by swapping a symlink in the directory, so the directories are watched, not the files; and since a watch
 * can miss a change, the files are also read again every `pollIntervalMs` and compared with what is served.
 */
export async function fileTlsSource(
  certFile: string,
  keyFile: string,
  log: Logger,
  opts: FileTlsOptions = {},
): Promise<TlsSource> {
  const pollIntervalMs = opts.pollIntervalMs ?? FILE_POLL_INTERVAL_MS;
  const read = async (): Promise<TlsMaterial> => ({
    cert: await readFile(certFile, 'utf8'),
    key: await readFile(keyFile, 'utf8'),
  });
  let material: TlsMaterial;
  try {
    material = await read();
  } catch (err) {
    throw new Error(
      `cannot read --tls-cert-file ${certFile} / --tls-key-file ${keyFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  try {
    checkPair(material);
  } catch (err) {
    throw new Error(`--tls-cert-file ${certFile} / --tls-key-file ${keyFile}: ${(err as Error).message}`);
  }
  const listeners: Array<(m: TlsMaterial) => void> = [];
  let timer: NodeJS.Timeout | undefined;
  /** The last pair found unusable, so that a poll does not warn about the same files every interval. */
  let rejected: TlsMaterial | undefined;
  let closed = false;
  const reloadOnce = async (via: 'watch' | 'poll'): Promise<void> => {
    let next: TlsMaterial;
    try {
      next = await read();
    } catch (err) {
      // Mid-swap, or the volume went away: the next event or poll tries again.
      log.debug(
        { certFile, keyFile, via, code: (err as NodeJS.ErrnoException).code },
        'cannot read the certificate files',
      );
      return;
    }
    if (closed || (next.cert === material.cert && next.key === material.key)) return;
    if (rejected && next.cert === rejected.cert && next.key === rejected.key) return;
    try {
      const cert = checkPair(next);
      material = next;
      rejected = undefined;
      log.info(
        { certFile, via, notAfter: cert.validTo, fingerprint256: cert.fingerprint256 },
        'serving certificate reloaded',
      );
      for (const l of listeners) l(material);
    } catch (err) {
      // A half-written rotation: keep serving the previous pair and try again on the next change or poll.
      rejected = next;
      log.warn(
        { certFile, keyFile, via, problem: (err as Error).message },
        'new certificate files are not usable yet; still serving the previous certificate',
      );
    }
  };
  // One read at a time: a poll and a watch event never interleave their reads.
  let reading: Promise<void> = Promise.resolve();
  const reload = (via: 'watch' | 'poll'): Promise<void> => (reading = reading.then(() => reloadOnce(via)));
  const schedule = (): void => {
    clearTimeout(timer);
    timer = setTimeout(() => void reload('watch'), 200);
  };
  const watchers: FSWatcher[] = [];
  for (const dir of new Set([dirname(resolve(certFile)), dirname(resolve(keyFile))])) {
    try {
      watchers.push(
        watch(dir, { persistent: false }, schedule).on('error', (err) =>
          log.warn({ dir, err }, 'cannot watch certificate directory; relying on the poll'),
        ),
      );
    } catch (err) {
      // ENOSPC (the inotify watch limit) and the like: the poll alone still finds every change.
      log.warn({ dir, err, pollIntervalMs }, 'cannot watch certificate directory; relying on the poll');
    }
  }
  const poll = setInterval(() => void reload('poll'), pollIntervalMs).unref();
  const source: TlsSource = {
    get material() {
      return material;
    },
    onChange: (l) => listeners.push(l),
    close: () => {
      closed = true;
      clearTimeout(timer);
      clearInterval(poll);
      for (const w of watchers) w.close();
      untrackServed(source);
    },
  };
  trackServed(source);
  return source;
}

/** A CA and serving certificate made at start, for local use; the CA is written to `caOut` so clients can trust it. */
export async function selfSignedTlsSource(
  hosts: string[],
  caOut: string | undefined,
  log: Logger,
): Promise<TlsSource & { caCert: string; caPath: string | undefined }> {
  const names = [...new Set([...hosts, 'localhost', '127.0.0.1', '::1', hostname()])];
  const bundle = await generateCertBundle({ hosts: names, caName: 'config-reloader-injector local CA' });
  let caPath: string | undefined;
  for (const candidate of caOut
    ? [caOut]
    : [join('certs', 'webhook-ca.crt'), join(tmpdir(), 'config-reloader-injector', 'webhook-ca.crt')]) {
    try {
      await mkdir(dirname(candidate), { recursive: true });
      await writeFile(candidate, bundle.caCert);
      caPath = resolve(candidate);
      break;
    } catch (err) {
      log.warn(
        { path: candidate, code: (err as NodeJS.ErrnoException).code },
        'cannot write the self-signed CA there',
      );
    }
  }
  log.info(
    { caFile: caPath, hosts: names },
    'no --tls-cert-file/--tls-key-file given: serving a self-signed certificate made at start; its CA is in caFile',
  );
  const source = {
    material: { cert: bundle.cert, key: bundle.key },
    caCert: bundle.caCert,
    caPath,
    onChange: () => {},
    close: () => untrackServed(source),
  };
  trackServed(source);
  return source;
}
