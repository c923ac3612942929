import type { KubeConfig } from '@kubernetes/client-node';
import { UsageError } from '../shared/cli.ts';

/** `--kubeconfig` of the webhook; only the features that talk to the API (self-managed certificates, missed injections) use it. */
export const kubeConfigFlags = {
  kubeconfig: { type: 'string' },
} as const;

export const KUBECONFIG_FLAG_HELP = `  --kubeconfig FILE            API access for the features above (default: the pod's service account,
                               else $KUBECONFIG or ~/.kube/config)
`;

/**
 * API credentials from --kubeconfig, else in-cluster, else the default kubeconfig. The client library is
 * loaded only here, so a webhook that never talks to the API does not pay for it.
 */
export async function loadKubeConfig(path: string | undefined, env: NodeJS.ProcessEnv): Promise<KubeConfig> {
  const { KubeConfig } = await import('@kubernetes/client-node');
  const kc = new KubeConfig();
  try {
    if (path) kc.loadFromFile(path);
    else if (env.KUBERNETES_SERVICE_HOST) kc.loadFromCluster();
    else kc.loadFromDefault();
  } catch (err) {
    // A file-system error is worth showing; a parser's message quotes the kubeconfig's text, tokens included.
    const code = (err as NodeJS.ErrnoException).code;
    const problem = code ?? 'the file is not a valid kubeconfig (fix its syntax)';
    throw new UsageError(
      `cannot load the API credentials${path ? ` from --kubeconfig ${path}` : ''}: ${problem}`,
    );
  }
  if (!kc.getCurrentCluster())
    throw new UsageError('no Kubernetes API to talk to: run in a pod, or give --kubeconfig');
  return kc;
}
