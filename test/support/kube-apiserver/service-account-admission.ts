import { forbidden } from './status.ts';
import type { KubeObject } from './types.ts';

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const objs = (v: unknown): Obj[] => (Array.isArray(v) ? v.filter(isObj) : []);

export const TOKEN_MOUNT_PATH = '/var/run/secrets/kubernetes.io/serviceaccount';
const VOLUME_PREFIX = 'kube-api-access-';
const NAME_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789';

/**
 * The ServiceAccount admission plugin, as plugin/pkg/admission/serviceaccount does it on a pod CREATE: default
 * serviceAccountName, refuse a missing ServiceAccount, and (unless the pod or the ServiceAccount turns automount
 * off) add the `kube-api-access-XXXXX` projected volume and mount it into every container present now.
 */
export function admitServiceAccount(
  pod: Obj,
  namespace: string,
  podName: string,
  lookup: (name: string) => KubeObject | undefined,
): void {
  const spec = isObj(pod.spec) ? pod.spec : (pod.spec = {});
  if (typeof spec.serviceAccountName !== 'string' || spec.serviceAccountName === '')
    spec.serviceAccountName = 'default';
  const saName = spec.serviceAccountName as string;
  const sa = lookup(saName);
  if (!sa)
    throw forbidden(
      { resource: 'pods', group: '' },
      podName || undefined,
      `error looking up service account ${namespace}/${saName}: serviceaccount "${saName}" not found`,
    );
  const automount =
    typeof spec.automountServiceAccountToken === 'boolean'
      ? spec.automountServiceAccountToken
      : typeof sa.automountServiceAccountToken === 'boolean'
        ? sa.automountServiceAccountToken
        : true;
  if (automount) mountToken(spec);
}

function mountToken(spec: Obj): void {
  const existing = objs(spec.volumes).find(
    (v) => typeof v.name === 'string' && v.name.startsWith(VOLUME_PREFIX),
  );
  const volumeName = (existing?.name as string | undefined) ?? VOLUME_PREFIX + randomSuffix();
  let needsVolume = false;
  for (const list of ['initContainers', 'containers'] as const) {
    for (const container of objs(spec[list])) {
      const mounts = objs(container.volumeMounts);
      if (mounts.some((m) => m.mountPath === TOKEN_MOUNT_PATH)) continue;
      container.volumeMounts = [...mounts, { name: volumeName, readOnly: true, mountPath: TOKEN_MOUNT_PATH }];
      needsVolume = true;
    }
  }
  if (existing || !needsVolume) return;
  spec.volumes = [...objs(spec.volumes), apiAccessVolume(volumeName)];
}

export function apiAccessVolume(name: string): Obj & { name: string } {
  return {
    name,
    projected: {
      sources: [
        { serviceAccountToken: { expirationSeconds: 3607, path: 'token' } },
        { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
        {
          downwardAPI: {
            items: [{ path: 'namespace', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } }],
          },
        },
      ],
      defaultMode: 420,
    },
  };
}

function randomSuffix(): string {
  let s = '';
  for (let i = 0; i < 5; i++) s += NAME_ALPHABET[Math.floor(Math.random() * NAME_ALPHABET.length)];
  return s;
}
