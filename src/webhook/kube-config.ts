import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import type { KubeConfig } from '@kubernetes/client-node';
import { findKubeconfig, UsageError, type KubeconfigSource } from '../shared/cli.ts';

/** `--kubeconfig` of the webhook; only the features that talk to the API (self-managed certificates, missed injections) use it. */
export const kubeConfigFlags = {
  kubeconfig: { type: 'string' },
} as const;

export const KUBECONFIG_FLAG_HELP = `  --kubeconfig FILE            API access for the features above (default: $KUBECONFIG's first file, else
                               the pod's service account, else ~/.kube/config; the reloader looks in the
                               same order)
`;

/** Where client-node's loadFromCluster reads the pod's service account (the kubelet mounts it there). */
const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface LoadedKubeConfig {
  kubeConfig: KubeConfig;
  /** For the log: where the credentials came from. */
  origin: string;
}

function describeSource(source: KubeconfigSource): string {
  if (source.kind === 'in-cluster') return 'the in-cluster service account';
  return source.from === '--kubeconfig' ? `--kubeconfig ${source.path}` : `${source.path} (${source.from})`;
}

/**
 * API credentials, found in the order both commands share (findKubeconfig). The client library is loaded
 * only here, so a webhook that never talks to the API does not pay for it. Whatever would leave the client
 * retrying forever is checked now and is a UsageError (exit 2, before listening), as in the reloader: no
 * kubeconfig at all (client-node would fall back to http://localhost:8080), an unreadable or invalid file, no
 * current cluster, plain HTTP, an in-cluster run without the service account's token and CA.
 */
export async function loadKubeConfig(
  path: string | undefined,
  env: NodeJS.ProcessEnv,
): Promise<LoadedKubeConfig> {
  const source = findKubeconfig(path, env);
  const where = describeSource(source);
  const { KubeConfig } = await import('@kubernetes/client-node');
  const kc = new KubeConfig();
  if (source.kind === 'in-cluster') {
    // client-node reads these at each request; a pod without them would only ever log failed requests.
    for (const file of ['token', 'ca.crt']) {
      try {
        accessSync(join(SERVICE_ACCOUNT_DIR, file), constants.R_OK);
      } catch (err) {
        throw new UsageError(
          `running in a cluster (KUBERNETES_SERVICE_HOST is set) but ${join(SERVICE_ACCOUNT_DIR, file)} cannot be ` +
            `read (${(err as NodeJS.ErrnoException).code ?? 'error'}): mount the service account token ` +
            '(automountServiceAccountToken: true) or give --kubeconfig',
        );
      }
    }
    kc.loadFromCluster();
    return { kubeConfig: kc, origin: where };
  }
  try {
    kc.loadFromFile(source.path);
  } catch (err) {
    // A file-system error is worth showing; a parser's message quotes the kubeconfig's text, tokens included.
    const code = (err as NodeJS.ErrnoException).code;
    const problem = code ?? 'the file is not a valid kubeconfig (fix its syntax)';
    throw new UsageError(`cannot load the API credentials from ${where}: ${problem}`);
  }
  const cluster = kc.getCurrentCluster();
  if (!cluster)
    throw new UsageError(
      `cannot load the API credentials from ${where}: no current-context, or its cluster is not defined ` +
        '(set current-context, or give another --kubeconfig)',
    );
  if (cluster.server.startsWith('http:') && cluster.skipTLSVerify !== true)
    throw new UsageError(
      `cannot load the API credentials from ${where}: cluster "${cluster.name}" has the plain HTTP server ` +
        `${cluster.server}, which the API client refuses; use https`,
    );
  return { kubeConfig: kc, origin: `${where}, context ${kc.getCurrentContext()}` };
}
