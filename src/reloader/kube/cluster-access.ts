import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { UsageError } from '../../shared/cli.ts';
import type { ClusterConfig } from '../config.ts';
import { BearerToken } from './token.ts';

/** The API server and the credentials to reach it, from a kubeconfig or the in-cluster service account. */
export interface ClusterAccess {
  server: URL;
  tls: { ca?: Buffer; cert?: Buffer; key?: Buffer; rejectUnauthorized: boolean; servername?: string };
  token?: BearerToken;
  /** The kubeconfig context's namespace, or the in-cluster namespace file's content. */
  namespace?: string;
  /** For logs: where the access came from. */
  origin: string;
}

type Dict = Record<string, unknown>;

function isDict(v: unknown): v is Dict {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(d: Dict | undefined, key: string): string | undefined {
  const v = d?.[key];
  return typeof v === 'string' && v !== '' ? v : undefined;
}

function named(list: unknown, name: string, field: string): Dict | undefined {
  if (!Array.isArray(list)) return undefined;
  const entry: unknown = list.find((e: unknown) => isDict(e) && e.name === name);
  return isDict(entry) && isDict(entry[field]) ? entry[field] : undefined;
}

async function readConfigFile(path: string, what: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    throw new UsageError(
      `cannot read ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
}

async function parseKubeconfigText(text: string, path: string): Promise<Dict> {
  let doc: unknown;
  try {
    // JSON needs no parser module; YAML loads `yaml` only now, so in-cluster runs never pay for it.
    doc = text.trimStart().startsWith('{') ? JSON.parse(text) : (await import('yaml')).parse(text);
  } catch (err) {
    // Only the position: the parsers quote the offending text, and a kubeconfig holds tokens and keys.
    const pos = (err as { linePos?: Array<{ line: number; col: number }> }).linePos?.[0];
    const where = pos ? ` (line ${pos.line}, column ${pos.col})` : '';
    throw new UsageError(
      `kubeconfig ${path} is neither valid YAML nor JSON${where}: fix its syntax, or point --kubeconfig at another file`,
    );
  }
  if (!isDict(doc)) throw new UsageError(`kubeconfig ${path} is not a kubeconfig (no mapping at the top)`);
  return doc;
}

/** `*-data` (base64) wins over the file form, as in kubectl; relative files are relative to the kubeconfig. */
async function material(
  d: Dict | undefined,
  key: string,
  base: string,
  what: string,
): Promise<Buffer | undefined> {
  const data = str(d, `${key}-data`);
  if (data) return Buffer.from(data, 'base64');
  const file = str(d, key);
  if (!file) return undefined;
  return readConfigFile(isAbsolute(file) ? file : resolve(base, file), what);
}

export async function loadKubeconfig(path: string): Promise<ClusterAccess> {
  const doc = await parseKubeconfigText((await readConfigFile(path, 'kubeconfig')).toString('utf8'), path);
  const contextName = str(doc, 'current-context');
  if (!contextName) throw new UsageError(`kubeconfig ${path} has no current-context`);
  const context = named(doc.contexts, contextName, 'context');
  if (!context) throw new UsageError(`kubeconfig ${path}: context "${contextName}" is not defined`);
  const clusterName = str(context, 'cluster') ?? '';
  const cluster = named(doc.clusters, clusterName, 'cluster');
  if (!cluster)
    throw new UsageError(
      `kubeconfig ${path}: cluster "${clusterName}" of context "${contextName}" is not defined`,
    );
  const userName = str(context, 'user');
  const user = userName === undefined ? undefined : named(doc.users, userName, 'user');
  if (userName !== undefined && !user)
    throw new UsageError(`kubeconfig ${path}: user "${userName}" of context "${contextName}" is not defined`);
  if (user && (user.exec !== undefined || user['auth-provider'] !== undefined)) {
    throw new UsageError(
      `kubeconfig ${path}: user "${userName}" uses an exec or auth-provider plugin, which the reloader does not run; use a token, tokenFile or client certificate`,
    );
  }
  const serverText = str(cluster, 'server');
  let server: URL;
  try {
    server = new URL(serverText ?? '');
  } catch {
    throw new UsageError(`kubeconfig ${path}: cluster "${clusterName}" has no valid server URL`);
  }
  const base = dirname(resolve(path));
  const token = str(user, 'token');
  const tokenFile = str(user, 'tokenFile');
  return {
    server,
    tls: {
      ca: await material(cluster, 'certificate-authority', base, 'certificate authority'),
      cert: await material(user, 'client-certificate', base, 'client certificate'),
      key: await material(user, 'client-key', base, 'client key'),
      rejectUnauthorized: cluster['insecure-skip-tls-verify'] !== true,
      servername: str(cluster, 'tls-server-name'),
    },
    token: token
      ? new BearerToken({ value: token })
      : tokenFile
        ? new BearerToken({ file: isAbsolute(tokenFile) ? tokenFile : resolve(base, tokenFile) })
        : undefined,
    namespace: str(context, 'namespace'),
    origin: `kubeconfig ${path} (context ${contextName})`,
  };
}

export async function loadInCluster(
  host: string,
  port: string,
  serviceAccountDir: string,
): Promise<ClusterAccess> {
  const ca = await readConfigFile(join(serviceAccountDir, 'ca.crt'), 'the in-cluster CA');
  const token = new BearerToken({ file: join(serviceAccountDir, 'token') });
  try {
    token.get();
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  let namespace: string | undefined;
  try {
    namespace = (await readFile(join(serviceAccountDir, 'namespace'), 'utf8')).trim() || undefined;
  } catch {
    namespace = undefined; // --namespace or POD_NAMESPACE may still name it
  }
  const hostPart = host.includes(':') ? `[${host}]` : host;
  return {
    server: new URL(`https://${hostPart}:${port}`),
    tls: { ca, rejectUnauthorized: true },
    token,
    namespace,
    origin: 'in-cluster service account',
  };
}

export function loadClusterAccess(cluster: ClusterConfig): Promise<ClusterAccess> {
  return cluster.mode === 'kubeconfig'
    ? loadKubeconfig(cluster.path)
    : loadInCluster(cluster.host, cluster.port, cluster.serviceAccountDir);
}
