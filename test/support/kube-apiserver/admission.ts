import { randomUUID } from 'node:crypto';
import { applyPatch } from 'rfc6902';
import type { Operation } from 'rfc6902';
import { validatePod } from '../pod-validation.ts';
import { defaultPod } from './pod-defaults.ts';
import { admitServiceAccount } from './service-account-admission.ts';
import { KubeError } from './status.ts';
import type { KubeObject } from './types.ts';
import type { ServiceResolver } from './webhook-client.ts';
import { WebhookCallError, callWebhook } from './webhook-client.ts';
import { evaluateMatchConditions, labelsOf, matchesLabelSelector, matchesRules } from './webhook-match.ts';

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** What happened to one webhook during one create: emitted as 'admission' on the server's `events`. */
export interface AdmissionRecord {
  configuration: string;
  webhook: string;
  namespace: string;
  /** The pod's name ('' for generateName pods: the name is made after admission). */
  name: string;
  /** 2 on a reinvocation. */
  round: 1 | 2;
  result: 'patched' | 'unchanged' | 'denied' | 'ignored-error' | 'rejected-error' | 'skipped-condition';
  message?: string;
}

export interface AdmissionStore {
  namespace(name: string): KubeObject | undefined;
  serviceAccount(namespace: string, name: string): KubeObject | undefined;
  webhookConfigurations(): KubeObject[];
}

export interface AdmissionRequest {
  namespace: string;
  user: { name: string; groups: string[] };
  dryRun: boolean;
  fieldManager?: string;
}

interface Hook {
  configuration: string;
  spec: Obj;
  name: string;
  failurePolicy: 'Ignore' | 'Fail';
  reinvoke: boolean;
}

const POD_TARGET = {
  operation: 'CREATE',
  group: '',
  version: 'v1',
  resource: 'pods',
  subresource: '',
  namespaced: true,
};

/**
 * The part of kube-apiserver's create path between decoding and storage, for pods: defaulting, the built-in
 * ServiceAccount admission, the MutatingAdmissionWebhook plugin (with one reinvocation round), and validation.
 */
export class PodAdmission {
  readonly #store: AdmissionStore;
  readonly #resolver: () => ServiceResolver | undefined;
  readonly #record: (r: AdmissionRecord) => void;

  constructor(
    store: AdmissionStore,
    resolver: () => ServiceResolver | undefined,
    record: (r: AdmissionRecord) => void,
  ) {
    this.#store = store;
    this.#resolver = resolver;
    this.#record = record;
  }

  /** The pod to store, and the warnings for the client; throws KubeError when the create is rejected. */
  async admit(input: KubeObject, req: AdmissionRequest): Promise<{ pod: KubeObject; warnings: string[] }> {
    let pod = { ...structuredClone(input), apiVersion: 'v1', kind: 'Pod' } as Obj;
    const name = String((pod.metadata as Obj).name ?? '');
    defaultPod(pod);
    admitServiceAccount(pod, req.namespace, name, (sa) => this.#store.serviceAccount(req.namespace, sa));
    defaultPod(pod);

    const warnings: string[] = [];
    const hooks = this.#hooks();
    const previouslyInvoked = new Set<Hook>();
    const reinvoke = new Set<Hook>();
    for (const round of [1, 2] as const) {
      for (const hook of hooks) {
        if (round === 2 && !reinvoke.has(hook)) continue;
        const before = JSON.stringify(pod);
        const result = await this.#invoke(hook, pod, req, round, warnings);
        // Only webhooks that were called count for reinvocation.
        if (result === undefined) continue;
        pod = result;
        const changed = JSON.stringify(pod) !== before;
        // A change makes every earlier IfNeeded webhook run once more, after this round.
        if (changed && round === 1) for (const h of previouslyInvoked) reinvoke.add(h);
        if (hook.reinvoke && round === 1) previouslyInvoked.add(hook);
      }
      if (reinvoke.size === 0) break;
    }

    const problems = validatePod(pod);
    if (problems.length > 0) {
      const causes = problems.map((message) => ({ reason: 'FieldValueInvalid', message }));
      throw new KubeError(422, 'Invalid', `Pod "${name}" is invalid: ${problems.join('; ')}`, {
        name,
        kind: 'Pod',
        causes,
      });
    }
    return { pod: pod as KubeObject, warnings };
  }

  /** Every webhook of every configuration, configurations by name and webhooks in order, as the real server. */
  #hooks(): Hook[] {
    const configs = [...this.#store.webhookConfigurations()].sort((a, b) =>
      a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0,
    );
    return configs.flatMap((config) =>
      (Array.isArray(config.webhooks) ? config.webhooks.filter(isObj) : []).map((spec) => ({
        configuration: config.metadata.name,
        spec,
        name: String(spec.name),
        failurePolicy: spec.failurePolicy === 'Ignore' ? ('Ignore' as const) : ('Fail' as const),
        reinvoke: spec.reinvocationPolicy === 'IfNeeded',
      })),
    );
  }

  /** The pod after this webhook, or undefined when the webhook does not apply to it (not called). */
  async #invoke(
    hook: Hook,
    pod: Obj,
    req: AdmissionRequest,
    round: 1 | 2,
    warnings: string[],
  ): Promise<Obj | undefined> {
    const { spec } = hook;
    const meta = pod.metadata as Obj;
    const base = {
      configuration: hook.configuration,
      webhook: hook.name,
      namespace: req.namespace,
      name: String(meta.name ?? ''),
      round,
    };
    if (!matchesRules(spec.rules, POD_TARGET)) return undefined;
    const ns = this.#store.namespace(req.namespace);
    if (!matchesLabelSelector(spec.namespaceSelector, labelsOf(ns))) return undefined;
    if (!matchesLabelSelector(spec.objectSelector, labelsOf(pod))) return undefined;

    const uid = randomUUID();
    const request: Obj = {
      uid,
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      requestKind: { group: '', version: 'v1', kind: 'Pod' },
      requestResource: { group: '', version: 'v1', resource: 'pods' },
      ...(meta.name ? { name: meta.name } : {}),
      namespace: req.namespace,
      operation: 'CREATE',
      userInfo: { username: req.user.name, groups: req.user.groups },
      object: pod,
      oldObject: null,
      dryRun: req.dryRun,
      options: {
        kind: 'CreateOptions',
        apiVersion: 'meta.k8s.io/v1',
        ...(req.fieldManager ? { fieldManager: req.fieldManager } : {}),
      },
    };
    const fail = (message: string): Obj => {
      if (hook.failurePolicy === 'Ignore') {
        this.#record({ ...base, result: 'ignored-error', message });
        return pod;
      }
      this.#record({ ...base, result: 'rejected-error', message });
      const text = `failed calling webhook "${hook.name}": ${message}`;
      throw new KubeError(500, 'InternalError', `Internal error occurred: ${text}`, {
        causes: [{ message: text }],
      });
    };

    const conditions = evaluateMatchConditions(spec.matchConditions, {
      object: pod,
      oldObject: null,
      request,
    });
    if ('error' in conditions) return fail(`failed to evaluate match condition: ${conditions.error}`);
    if (!conditions.match) {
      this.#record({ ...base, result: 'skipped-condition' });
      return undefined;
    }

    const timeout = typeof spec.timeoutSeconds === 'number' ? spec.timeoutSeconds : 10;
    let response;
    try {
      response = await callWebhook(
        spec.clientConfig,
        timeout,
        { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request },
        this.#resolver(),
      );
    } catch (err) {
      if (err instanceof WebhookCallError) return fail(err.message);
      throw err;
    }
    warnings.push(...response.warnings);
    if (!response.allowed) {
      const status = response.status ?? {};
      const deniedBy = `admission webhook "${hook.name}" denied the request`;
      const message = status.message
        ? `${deniedBy}: ${status.message}`
        : status.reason
          ? `${deniedBy}: ${status.reason}`
          : `${deniedBy} without explanation`;
      this.#record({ ...base, result: 'denied', message });
      const code = typeof status.code === 'number' && status.code >= 400 ? status.code : 400;
      throw new KubeError(code, status.reason ?? '', message);
    }
    if (!response.patch || response.patch.length === 0) {
      this.#record({ ...base, result: 'unchanged' });
      return pod;
    }
    const patched = structuredClone(pod);
    const errors = applyPatch(patched, response.patch as Operation[]).filter((e) => e !== null);
    if (errors.length > 0)
      return fail(`JSON patch could not be applied: ${errors.map((e) => e.message).join('; ')}`);
    if (!isObj(patched.metadata) || patched.kind !== 'Pod')
      return fail('the patched object is not a Pod any more');
    // The real server decodes the patched object again, which applies the defaults to what the webhook added.
    defaultPod(patched);
    this.#record({ ...base, result: 'patched' });
    return patched;
  }
}
