/**
 * The control plane's own PKI, made fresh for every start: one CA, the serving certificates of etcd and
 * kube-apiserver (127.0.0.1 and localhost), client certificates (kube-apiserver to etcd, the admin), and the
 * service-account signing key pair. ECDSA P-256 / SHA-256 throughout, as Go's TLS expects.
 */
import { generateKeyPairSync } from 'node:crypto';
import { generate } from 'selfsigned';

export interface Pem {
  cert: string;
  key: string;
}

export interface ControlPlanePki {
  ca: Pem;
  etcdServer: Pem;
  apiServer: Pem;
  /** kube-apiserver's client certificate for etcd. */
  etcdClient: Pem;
  /** CN=admin, O=system:masters: what kubeadm's admin.conf holds. */
  admin: Pem;
  /** The service-account token signing key (private, PKCS#8) and its public half (SPKI). */
  serviceAccount: { privateKey: string; publicKey: string };
}

const EC = { keyType: 'ec', curve: 'P-256', algorithm: 'sha256' } as const;

function validity(): { notBeforeDate: Date; notAfterDate: Date } {
  const now = Date.now();
  return { notBeforeDate: new Date(now - 5 * 60_000), notAfterDate: new Date(now + 7 * 86_400_000) };
}

async function leaf(
  ca: Pem,
  subject: { cn: string; o?: string },
  usage: { server?: string[]; client?: boolean },
): Promise<Pem> {
  const attrs = [
    { name: 'commonName', value: subject.cn },
    ...(subject.o ? [{ name: 'organizationName', value: subject.o }] : []),
  ];
  const made = await generate(attrs, {
    ...EC,
    ...validity(),
    ca,
    extensions: [
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: Boolean(usage.server), clientAuth: Boolean(usage.client) },
      ...(usage.server
        ? [
            {
              name: 'subjectAltName' as const,
              altNames: usage.server.map((h) =>
                /^[\d.]+$/.test(h) ? { type: 7 as const, ip: h } : { type: 2 as const, value: h },
              ),
            },
          ]
        : []),
    ],
  });
  return { cert: made.cert, key: made.private };
}

export async function makePki(): Promise<ControlPlanePki> {
  const caMade = await generate([{ name: 'commonName', value: 'e2e control plane CA' }], {
    ...EC,
    ...validity(),
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    ],
  });
  const ca = { cert: caMade.cert, key: caMade.private };
  const local = ['127.0.0.1', 'localhost'];
  const apiHosts = [...local, 'kubernetes', 'kubernetes.default', 'kubernetes.default.svc'];
  const sa = generateKeyPairSync('ec', {
    namedCurve: 'P-256',
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  return {
    ca,
    etcdServer: await leaf(ca, { cn: 'etcd' }, { server: local, client: true }),
    apiServer: await leaf(ca, { cn: 'kube-apiserver' }, { server: apiHosts }),
    etcdClient: await leaf(ca, { cn: 'kube-apiserver-etcd-client' }, { client: true }),
    admin: await leaf(ca, { cn: 'admin', o: 'system:masters' }, { client: true }),
    serviceAccount: { privateKey: sa.privateKey, publicKey: sa.publicKey },
  };
}
