/** The admission targets (our webhook, the bare Fastify baseline) and the load generator, each its own process. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateCertBundle } from '../../src/certs/generate.ts';
import type { LoadResult, LoadSpec } from '../load.ts';
import type { BenchContext } from './context.ts';
import { BENCH_DIR } from './paths.ts';
import { spawnNode, waitForLine, type BenchChild } from './proc.ts';

export interface CertFiles {
  caFile: string;
  certFile: string;
  keyFile: string;
  ca: string;
}

export async function writeServingCerts(dir: string): Promise<CertFiles> {
  const bundle = await generateCertBundle({ hosts: ['127.0.0.1', 'localhost'], caName: 'bench CA' });
  const files = {
    caFile: join(dir, 'ca.crt'),
    certFile: join(dir, 'tls.crt'),
    keyFile: join(dir, 'tls.key'),
  };
  writeFileSync(files.caFile, bundle.caCert);
  writeFileSync(files.certFile, bundle.cert);
  writeFileSync(files.keyFile, bundle.key, { mode: 0o600 });
  return { ...files, ca: bundle.caCert };
}

export interface Target {
  child: BenchChild;
  url: string;
}

/** `webhook` as it is deployed (default log level info: one JSON line per review, to a file here). */
/** The webhook on 127.0.0.1, a port of its own choosing, serving these certificate files; more flags after them. */
export function webhookArgs(certs: Pick<CertFiles, 'certFile' | 'keyFile'>, more: string[] = []): string[] {
  return [
    'webhook',
    '--host',
    '127.0.0.1',
    '--port',
    '0',
    '--tls-cert-file',
    certs.certFile,
    '--tls-key-file',
    certs.keyFile,
    ...more,
  ];
}

export async function startWebhook(
  ctx: BenchContext,
  certs: CertFiles,
  cpu: string | undefined,
): Promise<Target> {
  const child = spawnNode(ctx.cli.cli, webhookArgs(certs), {
    stdoutFile: join(ctx.tmp, `webhook-${Date.now()}.log`),
    cpu,
  });
  const line = await waitForLine(child, (l) => l.msg === 'webhook listening');
  return { child, url: String(line.url) };
}

export async function startBare(
  ctx: BenchContext,
  certs: CertFiles,
  responsesFile: string,
  cpu: string | undefined,
): Promise<Target> {
  const child = spawnNode(join(BENCH_DIR, 'bare-server.ts'), [certs.certFile, certs.keyFile, responsesFile], {
    stdoutFile: join(ctx.tmp, `bare-${Date.now()}.log`),
    cpu,
  });
  const line = await waitForLine(child, (l) => typeof l.url === 'string');
  return { child, url: String(line.url) };
}

/** Runs bench/load.ts in its own process and returns its result. */
export async function runLoad(
  ctx: BenchContext,
  spec: LoadSpec,
  cpu: string | undefined,
): Promise<LoadResult> {
  const out = join(ctx.tmp, `load-${Date.now()}-${Math.random().toString(36).slice(2)}.json`);
  const child = spawnNode(join(BENCH_DIR, 'load.ts'), [JSON.stringify(spec)], { stdoutFile: out, cpu });
  const { code } = await child.exited;
  const text = child.stdout().trim();
  if (code !== 0 || !text) throw new Error(`load generator failed (${code}): ${child.stderr().slice(-2000)}`);
  const result = JSON.parse(text.split('\n').pop() as string) as LoadResult;
  if (result.errors > 0 || result.non2xx > 0)
    throw new Error(
      `load against ${spec.url} saw ${result.errors} errors and ${result.non2xx} non-2xx answers`,
    );
  return result;
}
