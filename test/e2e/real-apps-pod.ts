/**
 * One injected pod whose app is a real one (test/support/apps.ts): the pod is created through the real
 * kube-apiserver and the webhook, then run as the kubelet would, from the stored pod: the reloader container
 * (its args and env as injected, a bound ServiceAccount token) first, and once its first sync is done and its
 * startup probe passes, the app, reading the file the reloader wrote, with the environment the webhook gave its
 * container and, for a signal target, the webhook's marker volume as a mount point of its own mount namespace.
 *
 * What this machine does not reproduce: the pod's shared process namespace is this machine's (the reloader finds
 * the app among all processes by the marker's mount point, as it does among the pod's), and every process runs as
 * the test's user (the sidecar's runAsUser, set by the webhook to the app's, is not applied).
 */
import type { V1Pod } from '@kubernetes/client-node';
import type { AppKind, RealApp } from '../support/apps.ts';
import { httpRequest, startApp } from '../support/apps.ts';
import { freePort } from '../support/control-plane/index.ts';
import { TARGET_MARKER_VOLUME } from '../../src/shared/process-marker.ts';
import type { KubeObject } from '../support/kube-apiserver/index.ts';
import type { Kube } from './kube.ts';
import { createPod, waitFor } from './kube.ts';
import type { PodSandbox, RunningContainer } from './kubelet.ts';
import { preparePod } from './kubelet.ts';
import type { TestCluster } from './test-cluster.ts';

export const SIDECAR = 'config-reloader';

/**
 * The test namespace enforces PodSecurity "restricted" (REAL_APPS_NAMESPACE_LABELS): the API server itself checks
 * every injected pod, shareProcessNamespace, the marker volume and the sidecar's user included. The app's side of it:
 */
export const RESTRICTED_POD = {
  runAsNonRoot: true,
  runAsUser: 65534,
  runAsGroup: 65534,
  seccompProfile: { type: 'RuntimeDefault' },
};
export const RESTRICTED_CONTAINER = { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } };
export const REAL_APPS_NAMESPACE_LABELS = {
  'pod-security.kubernetes.io/enforce': 'restricted',
  'pod-security.kubernetes.io/enforce-version': 'latest',
};

export interface AppPodSpec {
  /** Pod name; also the namespace's ServiceAccount and Role get their names from it. */
  name: string;
  namespace: string;
  app: AppKind;
  /** The app container's name (the signal target's CONFIG_RELOADER_CONTAINER value). */
  container: string;
  /** The app's port in the pod (the preset's default), mapped to a free port here. */
  podPort: number;
  /** The object the app's config comes from, mounted at `mountPath` as a volume. */
  object: { kind: 'secret' | 'configmap'; name: string };
  mountPath: string;
  /** The file (key) in that volume the app reads. */
  key: string;
  annotations: Record<string, string>;
  /** The app container's args in the pod (what a user writes; the harness starts the real app its own way). */
  args?: string[];
  /** vmalert's datasource. */
  datasourceUrl?: string;
}

export interface RunningAppPod {
  pod: V1Pod;
  sandbox: PodSandbox;
  reloader: RunningContainer;
  app: RealApp;
  /** The file the app reads, on this machine. */
  file: string;
  /** http://ADDRESS of the reloader's own server (metrics, probes). */
  reloaderUrl: string;
  /** A sample of the reloader's /metrics: `name{labels}` as it writes them, or the sum over every series of `name`. */
  reloaderMetric(name: string, labels?: string): Promise<number>;
  stop(): Promise<void>;
}

/**
 * The Role a pod's ServiceAccount (named like the pod) needs: its objects, by name, and Events for --events.
 */
export function podRbac(
  namespace: string,
  name: string,
  objects: Array<{ kind: 'secret' | 'configmap'; name: string }>,
): KubeObject[] {
  return [
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: { name, namespace },
      rules: [
        ...objects.map((o) => ({
          apiGroups: [''],
          resources: [o.kind === 'secret' ? 'secrets' : 'configmaps'],
          resourceNames: [o.name],
          verbs: ['get', 'list', 'watch'],
        })),
        { apiGroups: [''], resources: ['events'], verbs: ['create'] },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name, namespace },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name },
      subjects: [{ kind: 'ServiceAccount', name, namespace }],
    },
  ];
}

/** Waits for the reloader container's startup probe to pass; returns http://ADDRESS of its server. */
export async function reloaderReady(pod: V1Pod, reloader: RunningContainer): Promise<string> {
  const address = String((await reloader.waitForLog((l) => typeof l.address === 'string')).address);
  const reloaderUrl = `http://${address}`;
  const probe = pod.spec?.initContainers?.find((c) => c.name === SIDECAR)?.startupProbe?.httpGet?.path;
  await waitFor(
    `the reloader of ${pod.metadata?.name} ready (startup probe ${probe})`,
    async () => (await httpRequest('GET', `${reloaderUrl}${probe}`)).status === 200,
  );
  return reloaderUrl;
}

/** The sum of the reloader's samples of `name` (all series), or the one series `name{labels}`. */
export async function reloaderMetric(reloaderUrl: string, name: string, labels?: string): Promise<number> {
  const { text } = await httpRequest('GET', `${reloaderUrl}/metrics`);
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const series = line.slice(0, line.lastIndexOf(' '));
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (
      labels !== undefined
        ? series === `${name}{${labels}}`
        : series === name || series.startsWith(`${name}{`)
    )
      sum += value;
  }
  return sum;
}

/** Writes the object's one key (create or replace); the content is never logged. */
export async function setConfig(
  kube: Kube,
  spec: Pick<AppPodSpec, 'namespace' | 'object' | 'key'>,
  content: string,
): Promise<void> {
  const { namespace } = spec;
  const { name } = spec.object;
  if (spec.object.kind === 'secret') {
    const body = { metadata: { name }, stringData: { [spec.key]: content } };
    try {
      await kube.core.replaceNamespacedSecret({ namespace, name, body });
    } catch {
      await kube.core.createNamespacedSecret({ namespace, body });
    }
  } else {
    const body = { metadata: { name }, data: { [spec.key]: content } };
    try {
      await kube.core.replaceNamespacedConfigMap({ namespace, name, body });
    } catch {
      await kube.core.createNamespacedConfigMap({ namespace, body });
    }
  }
}

/**
 * Creates the pod (its object must exist, with the app's first config) and runs it: the reloader, then the app.
 * The namespace must exist.
 */
export async function runAppPod(cluster: TestCluster, kube: Kube, spec: AppPodSpec): Promise<RunningAppPod> {
  const { namespace } = spec;
  await kube.core.createNamespacedServiceAccount({ namespace, body: { metadata: { name: spec.name } } });
  const volume =
    spec.object.kind === 'secret'
      ? { name: 'config', secret: { secretName: spec.object.name } }
      : { name: 'config', configMap: { name: spec.object.name } };
  const pod = await createPod(kube, namespace, {
    metadata: {
      name: spec.name,
      annotations: { 'config-reloader.io/inject': 'true', ...spec.annotations },
    },
    spec: {
      serviceAccountName: spec.name,
      // The sidecar signals the app as the app's own user: the webhook needs to know it.
      securityContext: RESTRICTED_POD,
      containers: [
        {
          name: spec.container,
          image: `example.com/${spec.app}:e2e`,
          args: spec.args ?? [],
          securityContext: RESTRICTED_CONTAINER,
          volumeMounts: [{ name: 'config', mountPath: spec.mountPath, readOnly: true }],
        },
      ],
      volumes: [volume],
    },
  });
  if (pod.metadata?.annotations?.['config-reloader.io/status'] !== 'injected')
    throw new Error(`pod ${spec.name} was not injected: ${JSON.stringify(pod.metadata?.annotations)}`);
  const token = await cluster.serviceAccountToken(
    namespace,
    spec.name,
    podRbac(namespace, spec.name, [spec.object]),
    {
      name: pod.metadata?.name as string,
      uid: pod.metadata?.uid as string,
    },
  );
  const sandbox = await preparePod(kube, pod, token);
  let reloader: RunningContainer | undefined;
  let app: RealApp | undefined;
  try {
    const port = await freePort();
    reloader = sandbox.start(SIDECAR, { ports: { [spec.podPort]: port } });
    const started = reloader;
    const reloaderUrl = await reloaderReady(pod, started);
    const file = sandbox.hostPath(spec.container, `${spec.mountPath}/${spec.key}`);
    // A signal target carries the webhook's marker volume: the reloader finds the app by that mount point.
    const marker = pod.spec?.containers
      ?.find((c) => c.name === spec.container)
      ?.volumeMounts?.find((m) => m.name === TARGET_MARKER_VOLUME)?.mountPath;
    app = await startApp(spec.app, {
      file,
      port,
      env: sandbox.env(spec.container),
      ...(marker ? { mountPoint: marker } : {}),
      ...(spec.datasourceUrl ? { datasourceUrl: spec.datasourceUrl } : {}),
    });
    const running = app;
    return {
      pod,
      sandbox,
      reloader: started,
      app: running,
      file,
      reloaderUrl,
      reloaderMetric: (name, labels) => reloaderMetric(reloaderUrl, name, labels),
      stop: async () => {
        await running.stop();
        await started.stop();
        await sandbox.close();
      },
    };
  } catch (err) {
    await app?.stop();
    await reloader?.stop();
    await sandbox.close();
    throw err;
  }
}
