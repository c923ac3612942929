import { mkdir, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import type { Logger } from '../shared/log.ts';
import { generateCertBundle } from './generate.ts';
import { trackServed, untrackServed, type TlsSource } from './source.ts';

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
