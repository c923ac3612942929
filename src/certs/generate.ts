import { isIP } from 'node:net';
import { generate } from 'selfsigned';

/** A PEM certificate authority and a serving certificate it signed. */
export interface CertBundle {
  caCert: string;
  caKey: string;
  cert: string;
  key: string;
  /** When the serving certificate stops being valid. */
  notAfter: Date;
}

export interface GenerateOptions {
  /** Subject alternative names: DNS names, or IP addresses (detected by shape). */
  hosts: string[];
  /** Common name of the CA. */
  caName?: string;
  /** Validity of both certificates, in days. */
  validDays?: number;
  /** Sign with an existing CA instead of making a new one. */
  ca?: { cert: string; key: string };
}

const DAY_MS = 86_400_000;

/** The names a webhook run on this machine is called by (`certs --local`): what `curl https://127.0.0.1:8443` checks. */
export const LOCAL_HOSTS = ['localhost', '127.0.0.1', '::1'];

const DNS_LABEL_RE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/**
 * Why `host` cannot be a subject alternative name, or undefined when it can: an IPv4 or IPv6 address (no
 * brackets, no zone) or a lowercase DNS name. Shapes that look like addresses are read as addresses, as
 * generateCertBundle does, so `1.2.3` is an error rather than a DNS name no client would ever ask for.
 */
export function hostProblem(host: string): string | undefined {
  if (host.includes('/')) return 'is a URL or a path, not a host (give only its host part)';
  if (host.startsWith('[') || host.endsWith(']')) return 'has brackets (write an IPv6 address without them)';
  if (/^[^:]*:\d+$/.test(host)) return 'has a port (give only the host)';
  if (host.includes(':') || /^[\d.]+$/.test(host)) {
    if (isIP(host) === 0 || host.includes('%')) return 'is not a valid IP address';
    return undefined;
  }
  if (host.length > 253 || !host.split('.').every((label) => DNS_LABEL_RE.test(label)))
    return "is neither an IP address nor a DNS name (lowercase letters, digits, '-' and '.')";
  return undefined;
}

function altName(host: string): { type: 2; value: string } | { type: 7; ip: string } {
  return /^[\d.]+$/.test(host) || host.includes(':') ? { type: 7, ip: host } : { type: 2, value: host };
}

/**
 * Makes a CA and a serving certificate with ECDSA P-256 keys signed with SHA-256 and the SANs listed
 * explicitly (selfsigned's defaults are RSA/SHA-1 and a SAN copied from the CN, which Go's TLS rejects).
 */
export async function generateCertBundle(opts: GenerateOptions): Promise<CertBundle> {
  if (opts.hosts.length === 0) throw new Error('generateCertBundle: at least one host name is required');
  const now = new Date(Date.now() - 5 * 60_000); // tolerate small clock skew between replicas and the API server
  const notAfter = new Date(now.getTime() + (opts.validDays ?? 365) * DAY_MS);
  let ca = opts.ca;
  if (!ca) {
    const made = await generate(
      [{ name: 'commonName', value: opts.caName ?? 'config-reloader-injector-ca' }],
      {
        keyType: 'ec',
        curve: 'P-256',
        algorithm: 'sha256',
        notBeforeDate: now,
        notAfterDate: new Date(notAfter.getTime() + DAY_MS),
        extensions: [
          { name: 'basicConstraints', cA: true, critical: true },
          { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
        ],
      },
    );
    ca = { cert: made.cert, key: made.private };
  }
  const leaf = await generate([{ name: 'commonName', value: opts.hosts[0] ?? 'localhost' }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate: now,
    notAfterDate: notAfter,
    ca,
    extensions: [
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames: opts.hosts.map(altName) },
    ],
  });
  return { caCert: ca.cert, caKey: ca.key, cert: leaf.cert, key: leaf.private, notAfter };
}

/** The DNS names under which a Service is reached inside the cluster. */
export function serviceHosts(service: string, namespace: string): string[] {
  return [
    service,
    `${service}.${namespace}`,
    `${service}.${namespace}.svc`,
    `${service}.${namespace}.svc.cluster.local`,
  ];
}
