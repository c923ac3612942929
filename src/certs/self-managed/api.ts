import {
  AdmissionregistrationV1Api,
  CoreV1Api,
  Observable,
  PatchStrategy,
  setHeaderOptions,
  type ConfigurationOptions,
  type KubeConfig,
  type RequestContext,
  type ResponseContext,
  type V1Secret,
} from '@kubernetes/client-node';
import { apiStatus } from './api-errors.ts';
import { ROTATION_ANNOTATIONS, SERVED_PREFIX } from './state.ts';

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
  /** Deadline of each call, from sending the request to the last byte of the answer (default CERT_API_TIMEOUT_MS). */
  requestTimeoutMs?: number;
}

/**
 * 15 s per call, as for the webhook's other API calls (missed-injections.ts): the API server answers a get, a
 * create, an update or a patch of one small object in milliseconds, so a call unanswered after 15 s is on a
 * dead connection (a node that went away, a stalled proxy, a black-holed route). It fails, and the next sync,
 * one --cert-sync-interval later, retries it on a new connection, instead of the sync loop waiting for undici's
 * 300 s headers timeout (or, for a body that stalls half-way, its 300 s body timeout) with every later sync
 * queued behind it.
 */
export const CERT_API_TIMEOUT_MS = 15_000;

/** A call that got no (complete) answer within its deadline. */
export class CertApiTimeoutError extends Error {
  constructor(what: string, ms: number) {
    super(`${what}: no answer from the API server within ${ms} ms`);
    this.name = 'CertApiTimeoutError';
  }
}

function isOurs(annotation: string): boolean {
  return (
    annotation.startsWith(SERVED_PREFIX) ||
    (Object.values(ROTATION_ANNOTATIONS) as string[]).includes(annotation)
  );
}

/** Client options that give one call an abort signal: undici aborts the request and the reading of its body. */
function withSignal(signal: AbortSignal, options?: ConfigurationOptions): ConfigurationOptions {
  return {
    ...options,
    middleware: [
      ...(options?.middleware ?? []),
      {
        pre: (ctx: RequestContext) => {
          ctx.setSignal(signal);
          return new Observable(Promise.resolve(ctx));
        },
        post: (ctx: ResponseContext) => new Observable(Promise.resolve(ctx)),
      },
    ],
    middlewareMergeStrategy: 'append',
  };
}

export function createCertApi(kc: KubeConfig, target: CertApiTarget): CertApi {
  const core = kc.makeApiClient(CoreV1Api);
  const admission = kc.makeApiClient(AdmissionregistrationV1Api);
  const { namespace, secretName: name, webhookConfigName } = target;
  const timeoutMs = target.requestTimeoutMs ?? CERT_API_TIMEOUT_MS;
  const secretLabels = {
    'app.kubernetes.io/name': 'config-reloader-injector',
    'app.kubernetes.io/component': 'webhook-certificates',
  };
  /** Runs one call with its deadline; past it, the request is aborted and a CertApiTimeoutError naming it thrown. */
  const deadline = async <T>(
    what: string,
    call: (options: ConfigurationOptions) => Promise<T>,
    options?: ConfigurationOptions,
  ): Promise<T> => {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new CertApiTimeoutError(what, timeoutMs)), timeoutMs);
    try {
      return await call(withSignal(controller.signal, options));
    } catch (err) {
      if (controller.signal.aborted) throw controller.signal.reason as Error;
      throw err;
    } finally {
      clearTimeout(timer);
    }
  };
  const swallow = async <T>(call: Promise<T>, status: number): Promise<T | undefined> => {
    try {
      return await call;
    } catch (err) {
      if (apiStatus(err) === status) return undefined;
      throw err;
    }
  };
  const secretPath = `Secret ${namespace}/${name}`;
  const webhookPath = `MutatingWebhookConfiguration ${webhookConfigName}`;
  return {
    readSecret: () =>
      swallow(
        deadline(`get ${secretPath}`, (o) => core.readNamespacedSecret({ name, namespace }, o)),
        404,
      ),
    async createSecret(content) {
      const body: V1Secret = {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name, namespace, labels: secretLabels, annotations: content.annotations },
        type: 'kubernetes.io/tls',
        data: content.data,
      };
      return (
        (await swallow(
          deadline(`create ${secretPath}`, (o) => core.createNamespacedSecret({ namespace, body }, o)),
          409,
        )) ?? 'exists'
      );
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
      return (
        (await swallow(
          deadline(`update ${secretPath}`, (o) => core.replaceNamespacedSecret({ name, namespace, body }, o)),
          409,
        )) ?? 'conflict'
      );
    },
    async patchSecretAnnotations(annotations) {
      await deadline(
        `patch ${secretPath}`,
        (o) => core.patchNamespacedSecret({ name, namespace, body: { metadata: { annotations } } }, o),
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
    },
    async readWebhookConfig() {
      const mwc = await swallow(
        deadline(`get ${webhookPath}`, (o) =>
          admission.readMutatingWebhookConfiguration({ name: webhookConfigName }, o),
        ),
        404,
      );
      if (!mwc) return undefined;
      const generation = Number(mwc.metadata?.annotations?.[ROTATION_ANNOTATIONS.generation] ?? 0);
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
      const annotation = `/metadata/annotations/${ROTATION_ANNOTATIONS.generation.replace(/~/g, '~0').replace(/\//g, '~1')}`;
      if (current.hasAnnotations) ops.push({ op: 'add', path: annotation, value: String(generation) });
      else
        ops.push({
          op: 'add',
          path: '/metadata/annotations',
          value: { [ROTATION_ANNOTATIONS.generation]: String(generation) },
        });
      current.caBundles.forEach((_, i) =>
        ops.push({ op: 'add', path: `/webhooks/${i}/clientConfig/caBundle`, value: caBundle }),
      );
      try {
        await deadline(
          `patch ${webhookPath}`,
          (o) => admission.patchMutatingWebhookConfiguration({ name: webhookConfigName, body: ops }, o),
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
