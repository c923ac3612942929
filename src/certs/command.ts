import { randomBytes } from 'node:crypto';
import { lstat, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isValidObjectName } from '../shared/source-spec.ts';
import { parseFlags, UsageError } from '../shared/cli.ts';
import { generateCertBundle, hostProblem, LOCAL_HOSTS, serviceHosts } from './generate.ts';

const HELP = `Usage: config-reloader-injector certs [--service NAME] [--namespace NS] [--out DIR] [--days N]
                                      [--local] [--host HOST]... [--force]

Makes a CA and a serving certificate for the webhook's Service (ECDSA P-256, SHA-256), with the Service's
DNS names as subject alternative names: NAME, NAME.NS, NAME.NS.svc, NAME.NS.svc.cluster.local.
Writes DIR/ca.crt, DIR/tls.crt and DIR/tls.key (mode 0600), and prints the base64 caBundle for the
MutatingWebhookConfiguration on stdout.

Flags:
  --service NAME     the webhook's Service name (default config-reloader-injector)
  --namespace NS     the Service's namespace (default config-reloader-injector)
  --out DIR          output directory (default certs)
  --days N           validity in days (default 365)
  --local            also the names of a webhook run on this machine: ${LOCAL_HOSTS.join(', ')}
                     (then: webhook --tls-cert-file DIR/tls.crt --tls-key-file DIR/tls.key, and
                     curl --cacert DIR/ca.crt https://127.0.0.1:8443/...)
  --host HOST        one more subject alternative name: a DNS name or an IP address, such as the host of
                     the url: a webhook configuration calls; repeatable
  --force            replace files already in DIR. Without it an existing ca.crt, tls.crt or tls.key is an
                     error: that CA may be the caBundle of a cluster's webhook configuration, and a new one
                     makes the API server reject the webhook until the caBundle is updated
`;

const FILES = ['ca.crt', 'tls.crt', 'tls.key'] as const;

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/**
 * Writes `data` to `path` with `mode`. A new file is created exclusively (`wx`), so a file that appeared
 * after the check is not overwritten either; with --force the content goes to a temporary file renamed over
 * the old one, so the mode is `mode` even when the old file had another (writeFile's mode applies only to a
 * file it creates).
 */
async function writeNew(path: string, data: string, mode: number, force: boolean): Promise<void> {
  if (!force) {
    try {
      await writeFile(path, data, { mode, flag: 'wx' });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw existsError([path]);
      throw err;
    }
    return;
  }
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, data, { mode, flag: 'wx' });
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

function existsError(paths: string[]): UsageError {
  const what = paths.length === 1 ? `${paths[0]} already exists` : `${paths.join(', ')} already exist`;
  return new UsageError(
    `${what}: that CA may be the caBundle of a cluster's webhook configuration, and a new one makes the API ` +
      'server reject the webhook until the caBundle is updated. Pass --force to replace them, or --out ' +
      'another directory',
  );
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags('certs', argv, {
    service: { type: 'string', default: 'config-reloader-injector' },
    namespace: { type: 'string', default: 'config-reloader-injector' },
    out: { type: 'string', default: 'certs' },
    days: { type: 'string', default: '365' },
    local: { type: 'boolean', default: false },
    host: { type: 'string', multiple: true, default: [] },
    force: { type: 'boolean', default: false },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (positionals.length > 0)
    throw new UsageError(
      `unexpected argument "${positionals[0]}" (see: config-reloader-injector certs --help)`,
    );
  const service = values.service as string;
  const namespace = values.namespace as string;
  for (const [flag, v] of [
    ['service', service],
    ['namespace', namespace],
  ] as const) {
    if (!isValidObjectName(v) || v.includes('.'))
      throw new UsageError(`--${flag} "${v}" is not a valid DNS label (lowercase letters, digits and '-')`);
  }
  const days = Number(values.days);
  if (!Number.isInteger(days) || days < 1 || days > 3650)
    throw new UsageError(`--days "${String(values.days)}" must be a whole number from 1 to 3650`);
  for (const host of values.host as string[]) {
    const problem = hostProblem(host);
    if (problem)
      throw new UsageError(
        `--host "${host}" ${problem}: give a DNS name or an IP address, e.g. --host 10.0.0.5 or --host webhook.example.com`,
      );
  }
  const hosts = [
    ...new Set([
      ...serviceHosts(service, namespace),
      ...(values.local ? LOCAL_HOSTS : []),
      ...(values.host as string[]),
    ]),
  ];
  const out = values.out as string;
  const force = values.force === true;
  const paths = FILES.map((f) => join(out, f));
  if (!force) {
    const existing: string[] = [];
    for (const p of paths) if (await exists(p)) existing.push(p);
    if (existing.length > 0) throw existsError(existing);
  }
  const bundle = await generateCertBundle({
    hosts,
    caName: `${service}.${namespace} webhook CA`,
    validDays: days,
  });
  await mkdir(out, { recursive: true });
  const [caPath, certPath, keyPath] = paths as [string, string, string];
  // The key first: a refusal or a failure part-way leaves no certificate without its key.
  await writeNew(keyPath, bundle.key, 0o600, force);
  await writeNew(certPath, bundle.cert, 0o644, force);
  await writeNew(caPath, bundle.caCert, 0o644, force);
  process.stderr.write(
    `wrote ${caPath}, ${certPath} and ${keyPath}${force ? ' (--force: replacing what was there)' : ''}; ` +
      `valid until ${bundle.notAfter.toISOString()}; names: ${hosts.join(', ')}\ncaBundle:\n`,
  );
  process.stdout.write(Buffer.from(bundle.caCert).toString('base64') + '\n');
  return 0;
}
