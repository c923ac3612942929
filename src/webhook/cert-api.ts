import {
  AdmissionregistrationV1Api,
  CoreV1Api,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
  type V1Secret,
} from '@kubernetes/client-node';
import { apiStatus } from './api-errors.ts';
import { ANNOTATIONS, SERVED_PREFIX } from './cert-state.ts';

/** The Kubernetes calls of the self-managed certificates: one Secret and one MutatingWebhookConfiguration, by name. */
export interface CertApi {
  readSecret(): Promise<V1Secret | undefined>;
  /** `exists` when another replica created it first (409 AlreadyExists). */
  createSecret(content: SecretContent): Promise<V1Secret | 'exists'>;
  /** Replaces data and our annotations if the Secret is still at `current`'s resourceVersion; `conflict` otherwise. */
  replaceSecret(current: V1Secret, content: SecretContent): Promise<V1Secret | 'conflict'>;
  /** A merge patch of annotations (null removes one); no precondition, each replica writes only its own key. */
  patchSecretAnnotations(annotations: Record<string, string | null>): Promise<void>;
  readWebhookConfig(): Promise<WebhookConfigView | undefined>;
  /** Sets caBundle on every webhook entry and the generation annotation, if still at `current.resourceVersion`. */
  writeCaBundle(current: WebhookConfigView, caBundle: string, generation: number): Promise<'ok' | 'conflict'>;
}

export interface SecretContent {
  data: Record<string, string>;
  annotations: Record<string, string>;
}

export interface WebhookConfigView {
  resourceVersion: string;
  hasAnnotations: boolean;
  generation: number;
  /** Each webhook entry's clientConfig.caBundle (base64). */
  caBundles: Array<string | undefined>;
}

export interface CertApiTarget {
  namespace: string;
  secretName: string;
  webhookConfigName: string;
}

function isOurs(annotation: string): boolean {
  return (
    annotation.startsWith(SERVED_PREFIX) || (Object.values(ANNOTATIONS) as string[]).includes(annotation)
  );
}

export function createCertApi(kc: KubeConfig, target: CertApiTarget): CertApi {
  const core = kc.makeApiClient(CoreV1Api);
  const admission = kc.makeApiClient(AdmissionregistrationV1Api);
  const { namespace, secretName: name, webhookConfigName } = target;
  const secretLabels = {
    'app.kubernetes.io/name': 'config-reloader-injector',
    'app.kubernetes.io/component': 'webhook-certificates',
  };
  const swallow = async <T>(call: Promise<T>, status: number): Promise<T | undefined> => {
    try {
      return await call;
    } catch (err) {
      if (apiStatus(err) === status) return undefined;
      throw err;
    }
  };
  return {
    readSecret: () => swallow(core.readNamespacedSecret({ name, namespace }), 404),
    async createSecret(content) {
      const body: V1Secret = {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name, namespace, labels: secretLabels, annotations: content.annotations },
        type: 'kubernetes.io/tls',
        data: content.data,
      };
      return (await swallow(core.createNamespacedSecret({ namespace, body }), 409)) ?? 'exists';
    },
    async replaceSecret(current, content) {
      const kept = Object.fromEntries(
        Object.entries(current.metadata?.annotations ?? {}).filter(([k]) => !isOurs(k)),
      );
      const body: V1Secret = {
        ...current,
        metadata: { ...current.metadata, name, namespace, annotations: { ...kept, ...content.annotations } },
        data: content.data,
      };
      return (await swallow(core.replaceNamespacedSecret({ name, namespace, body }), 409)) ?? 'conflict';
    },
    async patchSecretAnnotations(annotations) {
      await core.patchNamespacedSecret(
        { name, namespace, body: { metadata: { annotations } } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
    },
    async readWebhookConfig() {
      const mwc = await swallow(admission.readMutatingWebhookConfiguration({ name: webhookConfigName }), 404);
      if (!mwc) return undefined;
      const generation = Number(mwc.metadata?.annotations?.[ANNOTATIONS.generation] ?? 0);
      return {
        resourceVersion: mwc.metadata?.resourceVersion ?? '',
        hasAnnotations: mwc.metadata?.annotations !== undefined,
        generation: Number.isSafeInteger(generation) ? generation : 0,
        caBundles: (mwc.webhooks ?? []).map((w) => w.clientConfig.caBundle),
      };
    },
    async writeCaBundle(current, caBundle, generation) {
      // A JSON patch, not a PUT of the object read: the typed client drops fields it does not know, and a PUT
      // would erase them. The test on resourceVersion makes it a compare-and-swap.
      const ops: object[] = [
        { op: 'test', path: '/metadata/resourceVersion', value: current.resourceVersion },
      ];
      const annotation = `/metadata/annotations/${ANNOTATIONS.generation.replace(/~/g, '~0').replace(/\//g, '~1')}`;
      if (current.hasAnnotations) ops.push({ op: 'add', path: annotation, value: String(generation) });
      else
        ops.push({
          op: 'add',
          path: '/metadata/annotations',
          value: { [ANNOTATIONS.generation]: String(generation) },
        });
      current.caBundles.forEach((_, i) =>
        ops.push({ op: 'add', path: `/webhooks/${i}/clientConfig/caBundle`, value: caBundle }),
      );
      try {
        await admission.patchMutatingWebhookConfiguration(
          { name: webhookConfigName, body: ops },
          setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
        );
        return 'ok';
      } catch (err) {
        // 409: changed meanwhile; 422: the test operation failed (the API server reports it as Invalid).
        const code = apiStatus(err);
        if (code === 409 || code === 422) return 'conflict';
        throw err;
      }
    },
  };
}
