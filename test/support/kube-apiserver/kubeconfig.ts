import { stringify } from 'yaml';

export interface KubeconfigParams {
  server: string;
  caCert: string;
  token: string;
  namespace?: string;
  user?: string;
}

/** A kubeconfig as kubectl writes one, with the CA inline (certificate-authority-data) and a bearer token. */
export function kubeconfigYaml(p: KubeconfigParams): string {
  const user = p.user ?? 'test-user';
  const context: Record<string, string> = { cluster: 'test', user };
  if (p.namespace) context.namespace = p.namespace;
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      {
        name: 'test',
        cluster: { server: p.server, 'certificate-authority-data': Buffer.from(p.caCert).toString('base64') },
      },
    ],
    users: [{ name: user, user: { token: p.token } }],
    contexts: [{ name: 'test', context }],
    'current-context': 'test',
    preferences: {},
  });
}
