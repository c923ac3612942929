import { X509Certificate, createPrivateKey } from 'node:crypto';

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
