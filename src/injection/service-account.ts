import { TOKEN_VOLUME } from './annotations.ts';
import { isObject, objectsOf, stringOf, type JsonObject } from './json.ts';

export const SERVICE_ACCOUNT_PATH = '/var/run/secrets/kubernetes.io/serviceaccount';

const normalise = (path: string): string => (path.length > 1 ? path.replace(/\/+$/, '') : path);

/**
 * The pod's volume that holds the API token, for the sidecar to mount at the standard path. The ServiceAccount
 * admission step ran before this webhook, so it already added `kube-api-access-*` and mounted it in the containers
 * that existed then, but not in containers added later. Undefined: the sidecar needs its own (see ownTokenVolume).
 */
export function findTokenVolume(spec: JsonObject): string | undefined {
  const volumes = new Map(objectsOf(spec.volumes).map((v) => [stringOf(v.name), v]));
  // What the app itself mounts at the standard path is, by definition, its API credential.
  for (const container of [...objectsOf(spec.initContainers), ...objectsOf(spec.containers)]) {
    for (const mount of objectsOf(container.volumeMounts)) {
      const name = stringOf(mount.name);
      const path = stringOf(mount.mountPath);
      if (
        name !== undefined &&
        path !== undefined &&
        normalise(path) === SERVICE_ACCOUNT_PATH &&
        volumes.has(name)
      )
        return name;
    }
  }
  if (spec.automountServiceAccountToken === false) return undefined;
  const candidates = [...volumes.entries()].filter(
    (entry): entry is [string, JsonObject] => entry[0] !== undefined && isApiAccessVolume(entry[1]),
  );
  const preferred = candidates.find(([name]) => name.startsWith('kube-api-access-')) ?? candidates[0];
  return preferred?.[0];
}

/** A projected volume as the ServiceAccount admission builds it: a token for the API server's own audience and its CA. */
function isApiAccessVolume(volume: JsonObject): boolean {
  if (!isObject(volume.projected)) return false;
  const sources = objectsOf(volume.projected.sources);
  // A token with an audience is for some other service (Vault, SPIRE, ...) and the API server would reject it.
  const token = sources.some(
    (s) =>
      isObject(s.serviceAccountToken) &&
      stringOf(s.serviceAccountToken.path) === 'token' &&
      !s.serviceAccountToken.audience,
  );
  const ca = sources.some((s) => isObject(s.configMap) && s.configMap.name === 'kube-root-ca.crt');
  return token && ca;
}

/** The sidecar's own token volume, the same as the ServiceAccount admission would add; mounted only in the sidecar. */
export function ownTokenVolume(): JsonObject {
  return {
    name: TOKEN_VOLUME,
    projected: {
      sources: [
        { serviceAccountToken: { path: 'token', expirationSeconds: 3607 } },
        { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
        {
          downwardAPI: {
            items: [{ path: 'namespace', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } }],
          },
        },
      ],
    },
  };
}
