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
 * Certificates from files, re-read when they change. cert-manager and the kubelet replace Secret-backed files
 * by swapping a symlink in the directory, so the directories are watched, not the files.
 */
export async function fileTlsSource(certFile: string, keyFile: string, log: Logger): Promise<TlsSource> {
  const read = async (): Promise<TlsMaterial> => ({ cert: await readFile(certFile, 'utf8'), key: await readFile(keyFile, 'utf8') });
  let material: TlsMaterial;
  try {
    material = await read();
  } catch (err) {
    throw new Error(`cannot read --tls-cert-file ${certFile} / --tls-key-file ${keyFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    checkPair(material);
  } catch (err) {
    throw new Error(`--tls-cert-file ${certFile} / --tls-key-file ${keyFile}: ${(err as Error).message}`);
  }
  const listeners: Array<(m: TlsMaterial) => void> = [];
  let timer: NodeJS.Timeout | undefined;
  const reload = async (): Promise<void> => {
    try {
      const next = await read();
      if (next.cert === material.cert && next.key === material.key) return;
      const cert = checkPair(next);
      material = next;
      log.info({ certFile, notAfter: cert.validTo, fingerprint256: cert.fingerprint256 }, 'serving certificate reloaded');
      for (const l of listeners) l(material);
    } catch (err) {
      // A half-written rotation: keep serving the previous pair and try again on the next change.
      log.warn({ certFile, keyFile, problem: (err as Error).message }, 'new certificate files are not usable yet; still serving the previous certificate');
    }
  };
  const schedule = (): void => {
    clearTimeout(timer);
    timer = setTimeout(() => void reload(), 200);
  };
  const watchers: FSWatcher[] = [...new Set([dirname(resolve(certFile)), dirname(resolve(keyFile))])].map((dir) =>
    watch(dir, { persistent: false }, schedule).on('error', (err) => log.warn({ dir, err }, 'cannot watch certificate directory')),
  );
  return {
    get material() {
      return material;
    },
    onChange: (l) => listeners.push(l),
    close: () => {
      clearTimeout(timer);
      for (const w of watchers) w.close();
    },
  };
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
  for (const candidate of caOut ? [caOut] : [join('certs', 'webhook-ca.crt'), join(tmpdir(), 'config-reloader-injector', 'webhook-ca.crt')]) {
    try {
      await mkdir(dirname(candidate), { recursive: true });
      await writeFile(candidate, bundle.caCert);
      caPath = resolve(candidate);
      break;
    } catch (err) {
      log.warn({ path: candidate, code: (err as NodeJS.ErrnoException).code }, 'cannot write the self-signed CA there');
    }
  }
  log.info({ caFile: caPath, hosts: names }, 'no --tls-cert-file/--tls-key-file given: serving a self-signed certificate made at start; its CA is in caFile');
  return { material: { cert: bundle.cert, key: bundle.key }, caCert: bundle.caCert, caPath, onChange: () => {}, close: () => {} };
}
