import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isValidObjectName } from '../shared/source-spec.ts';
import { parseFlags, UsageError } from '../shared/cli.ts';
import { generateCertBundle, serviceHosts } from './generate.ts';

const HELP = `Usage: config-reloader-injector certs --service NAME --namespace NS [--out DIR] [--days N] [--host NAME]...

Makes a CA and a serving certificate for the webhook's Service (ECDSA P-256, SHA-256), with the Service's
DNS names as subject alternative names: NAME, NAME.NS, NAME.NS.svc, NAME.NS.svc.cluster.local.
Writes DIR/ca.crt, DIR/tls.crt and DIR/tls.key (mode 0600), and prints the base64 caBundle for the
MutatingWebhookConfiguration on stdout.

Flags:
  --service NAME     the webhook's Service name (default config-reloader-injector)
  --namespace NS     the Service's namespace (default config-reloader-injector)
  --out DIR          output directory (default certs)
  --days N           validity in days (default 365)
  --host NAME        an extra SAN (DNS name or IP address); repeatable
`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseFlags('certs', argv, {
    service: { type: 'string', default: 'config-reloader-injector' },
    namespace: { type: 'string', default: 'config-reloader-injector' },
    out: { type: 'string', default: 'certs' },
    days: { type: 'string', default: '365' },
    host: { type: 'string', multiple: true, default: [] },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const service = values.service as string;
  const namespace = values.namespace as string;
  for (const [flag, v] of [['service', service], ['namespace', namespace]] as const) {
    if (!isValidObjectName(v) || v.includes('.')) throw new UsageError(`--${flag} "${v}" is not a valid DNS label (lowercase letters, digits and '-')`);
  }
  const days = Number(values.days);
  if (!Number.isInteger(days) || days < 1 || days > 3650) throw new UsageError(`--days "${String(values.days)}" must be a whole number from 1 to 3650`);
  const out = values.out as string;
  const bundle = await generateCertBundle({
    hosts: [...serviceHosts(service, namespace), ...(values.host as string[])],
    caName: `${service}.${namespace} webhook CA`,
    validDays: days,
  });
  await mkdir(out, { recursive: true });
  await writeFile(join(out, 'ca.crt'), bundle.caCert);
  await writeFile(join(out, 'tls.crt'), bundle.cert);
  await writeFile(join(out, 'tls.key'), bundle.key, { mode: 0o600 });
  process.stderr.write(`wrote ${join(out, 'ca.crt')}, ${join(out, 'tls.crt')} and ${join(out, 'tls.key')}; valid until ${bundle.notAfter.toISOString()}\ncaBundle:\n`);
  process.stdout.write(Buffer.from(bundle.caCert).toString('base64') + '\n');
  return 0;
}
