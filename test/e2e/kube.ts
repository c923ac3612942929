/** Talking to the cluster the way a user does: a kubeconfig and @kubernetes/client-node, nothing test-specific. */
import { ApiException, CoreV1Api, KubeConfig, KubernetesObjectApi } from '@kubernetes/client-node';
import type { KubernetesObject, V1Pod } from '@kubernetes/client-node';
import type { KubeObject } from '../support/kube-apiserver/index.ts';

export interface Kube {
  kc: KubeConfig;
  core: CoreV1Api;
  objects: KubernetesObjectApi;
  /** The API server's URL, from the kubeconfig. */
  server: string;
}

export function connect(kubeconfig: string): Kube {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  const server = kc.getCurrentCluster()?.server;
  if (!server) throw new Error(`${kubeconfig} names no cluster server`);
  return { kc, core: kc.makeApiClient(CoreV1Api), objects: KubernetesObjectApi.makeApiClient(kc), server };
}

/** Creates each object, or replaces it when it exists (as `kubectl apply` ends up doing). */
export async function applyObjects(kube: Kube, objects: KubeObject[]): Promise<void> {
  for (const obj of objects) {
    const spec = structuredClone(obj) as KubernetesObject;
    try {
      await kube.objects.create(spec);
    } catch (err) {
      if (!(err instanceof ApiException) || err.code !== 409) throw err;
      const current = await kube.objects.read(spec as KubernetesObject & { metadata: { name: string } });
      spec.metadata = { ...spec.metadata, resourceVersion: current.metadata?.resourceVersion };
      await kube.objects.replace(spec);
    }
  }
}

export async function createNamespace(
  kube: Kube,
  name: string,
  labels: Record<string, string> = {},
): Promise<void> {
  await kube.core.createNamespace({ body: { metadata: { name, labels } } });
  // The namespace's controllers create its default ServiceAccount right after; pods need it.
  await waitFor(`ServiceAccount ${name}/default`, async () => {
    try {
      return await kube.core.readNamespacedServiceAccount({ namespace: name, name: 'default' });
    } catch (err) {
      if (err instanceof ApiException && err.code === 404) return undefined;
      throw err;
    }
  });
}

/** An app pod with one Secret volume (app-config) mounted at /etc/app, the shape most e2e cases start from. */
export function appPod(name: string, annotations: Record<string, string> = {}): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, annotations },
    spec: {
      containers: [
        {
          name: 'app',
          image: 'example.com/shop:1.4.2',
          volumeMounts: [{ name: 'config', mountPath: '/etc/app', readOnly: true }],
        },
      ],
      volumes: [{ name: 'config', secret: { secretName: 'app-config' } }],
    },
  };
}

export async function createPod(kube: Kube, namespace: string, pod: V1Pod): Promise<V1Pod> {
  return kube.core.createNamespacedPod({ namespace, body: pod });
}

/** The Status message of a failed API call, or the error itself when it is not an API error. */
export function apiErrorOf(err: unknown): { code: number; message: string } {
  if (!(err instanceof ApiException)) throw err;
  const body =
    typeof err.body === 'string'
      ? (JSON.parse(err.body) as { message?: string })
      : (err.body as { message?: string });
  return { code: err.code, message: body?.message ?? '' };
}

/** Polls `check` until it returns something other than undefined/false. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const result = await check();
    if (result !== undefined && result !== false) return result;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
