import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { isCelError, run as runCel, type CelInput } from '@bufbuild/cel';
import { strings as celStrings } from '@bufbuild/cel/ext';
import type { IMutatingWebhook } from 'kubernetes-models/admissionregistration.k8s.io/v1/MutatingWebhook';
import type { IMutatingWebhookConfiguration } from 'kubernetes-models/admissionregistration.k8s.io/v1/MutatingWebhookConfiguration';
import type { IDeployment } from 'kubernetes-models/apps/v1/Deployment';
import type { IPodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import type { IClusterRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole';
import type { IClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding';
import type { IRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/Role';
import type { IRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IService } from 'kubernetes-models/v1/Service';
import { parseAllDocuments, stringify } from 'yaml';
import { serviceHosts } from '../../src/certs/generate.ts';
import { DEFAULT_INJECTOR_CONFIG } from '../../src/injection/config.ts';
import { parseDuration } from '../../src/shared/cli.ts';
import { missedInjection } from '../../src/webhook/missed-injections.ts';

const DEPLOY = fileURLToPath(new URL('../../deploy/', import.meta.url));

interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  [field: string]: unknown;
}

interface VapSpec {
  failurePolicy: string;
  matchConstraints: {
    resourceRules: unknown[];
    namespaceSelector: LabelSelector;
    objectSelector: LabelSelector;
  };
  matchConditions: Array<{ name: string; expression: string }>;
  variables: Array<{ name: string; expression: string }>;
  validations: Array<{ expression: string; messageExpression?: string }>;
}

interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: Array<{ key: string; operator: string; values?: string[] }>;
}

const kubectl = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' });
if (kubectl.error) {
  throw new Error(
    `kubectl is needed to render deploy/ (kubectl kustomize): ${kubectl.error.message}. Install Debian's kubernetes-client package (apt-get install kubernetes-client) or put kubectl >= 1.27 on PATH.`,
  );
}

/** Every kustomization under deploy/ that renders on its own (components are rendered through the overlays that use them). */
function kustomizations(dir = DEPLOY): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (!entry.isDirectory()) continue;
    const path = join(dir, entry.name);
    const file = join(path, 'kustomization.yaml');
    if (existsSync(file) && !/^kind: Component$/m.test(readFileSync(file, 'utf8')))
      found.push(relative(DEPLOY, path));
    found.push(...kustomizations(path));
  }
  return found.sort();
}

function render(target: string): KubeObject[] {
  const yaml = execFileSync('kubectl', ['kustomize', join(DEPLOY, target)], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return parseAllDocuments(yaml).map((d) => d.toJS() as KubeObject);
}

/** The kubernetes-models class for an apiVersion/kind, which validates against the upstream OpenAPI schema. */
async function modelFor(
  apiVersion: string,
  kind: string,
): Promise<(new (o: unknown) => { validate(): void }) | undefined> {
  const path = apiVersion.includes('/') ? `${apiVersion}/${kind}` : `v1/${kind}`;
  try {
    const mod = (await import(`kubernetes-models/${path}`)) as Record<
      string,
      new (o: unknown) => { validate(): void }
    >;
    return mod[kind];
  } catch {
    return undefined;
  }
}

/** cert-manager's CRDs have no model: the fields its validating webhook requires, checked by hand. */
function certManagerProblems(obj: KubeObject): string[] {
  const spec = (obj.spec ?? {}) as Record<string, unknown>;
  const problems: string[] = [];
  const goDuration = /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/;
  if (obj.kind === 'Issuer' || obj.kind === 'ClusterIssuer') {
    const kinds = ['selfSigned', 'ca', 'acme', 'vault', 'venafi'].filter((k) => k in spec);
    if (kinds.length !== 1)
      problems.push(
        `${obj.kind} ${obj.metadata.name}: exactly one issuer type, got ${kinds.join(',') || 'none'}`,
      );
    if ('ca' in spec && typeof (spec.ca as { secretName?: unknown }).secretName !== 'string')
      problems.push(`${obj.kind} ${obj.metadata.name}: ca.secretName is required`);
  } else if (obj.kind === 'Certificate') {
    if (typeof spec.secretName !== 'string')
      problems.push(`Certificate ${obj.metadata.name}: secretName is required`);
    const ref = spec.issuerRef as { name?: unknown; kind?: unknown } | undefined;
    if (typeof ref?.name !== 'string')
      problems.push(`Certificate ${obj.metadata.name}: issuerRef.name is required`);
    if (
      !['commonName', 'dnsNames', 'uris', 'emailAddresses', 'ipAddresses', 'literalSubject'].some(
        (k) => k in spec,
      )
    )
      problems.push(
        `Certificate ${obj.metadata.name}: at least one of commonName, dnsNames, uris, emailAddresses, ipAddresses`,
      );
    for (const f of ['duration', 'renewBefore'] as const) {
      if (spec[f] !== undefined && !goDuration.test(String(spec[f])))
        problems.push(`Certificate ${obj.metadata.name}: ${f} "${String(spec[f])}" is not a Go duration`);
    }
    const key = spec.privateKey as { algorithm?: string; rotationPolicy?: string } | undefined;
    if (key?.algorithm && !['RSA', 'ECDSA', 'Ed25519'].includes(key.algorithm))
      problems.push(`Certificate ${obj.metadata.name}: privateKey.algorithm ${key.algorithm}`);
    if (key?.rotationPolicy && !['Never', 'Always'].includes(key.rotationPolicy))
      problems.push(`Certificate ${obj.metadata.name}: privateKey.rotationPolicy ${key.rotationPolicy}`);
  } else {
    problems.push(`${obj.apiVersion} ${obj.kind}: unknown cert-manager kind`);
  }
  return problems;
}

/** A label selector as the API server evaluates it. */
function selects(selector: LabelSelector | undefined, labels: Record<string, string>): boolean {
  if (!selector) return true;
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const { key, operator, values = [] } of selector.matchExpressions ?? []) {
    const has = key in labels;
    const ok =
      operator === 'In'
        ? has && values.includes(labels[key] as string)
        : operator === 'NotIn'
          ? !has || !values.includes(labels[key] as string)
          : operator === 'Exists'
            ? has
            : operator === 'DoesNotExist'
              ? !has
              : assert.fail(`unknown operator ${operator}`);
    if (!ok) return false;
  }
  return true;
}

const one = <T>(objs: KubeObject[], kind: string, what = kind): T => {
  const found = objs.filter((o) => o.kind === kind);
  assert.equal(found.length, 1, `exactly one ${what}`);
  return found[0] as unknown as T;
};

const argValue = (c: IContainer, flag: string): string | undefined =>
  c.args?.find((a) => a.startsWith(`--${flag}=`))?.slice(flag.length + 3);

const TARGETS = kustomizations();
const WEBHOOK_TARGETS = TARGETS.filter((t) => t !== 'example');

describe('deploy/ renders with kubectl kustomize, and every object is valid', () => {
  it('has the base, both certificate overlays, their fail-closed variants and the example', () => {
    for (const t of [
      'base',
      'overlays/self-managed',
      'overlays/cert-manager',
      'overlays/self-managed-fail-closed',
      'overlays/cert-manager-fail-closed',
      'example',
    ])
      assert.ok(TARGETS.includes(t), `deploy/${t}`);
  });

  for (const target of TARGETS) {
    it(`deploy/${target}: every object validates against the Kubernetes schema`, async () => {
      const objs = render(target);
      assert.ok(objs.length > 0);
      const problems: string[] = [];
      for (const obj of objs) {
        if (obj.apiVersion.startsWith('cert-manager.io/')) {
          problems.push(...certManagerProblems(obj));
          continue;
        }
        const Model = await modelFor(obj.apiVersion, obj.kind);
        if (!Model) {
          problems.push(`${obj.apiVersion} ${obj.kind}: no schema to validate against`);
          continue;
        }
        try {
          new Model(obj).validate();
        } catch (err) {
          problems.push(`${obj.kind} ${obj.metadata.name}: ${(err as Error).message}`);
        }
      }
      assert.deepEqual(problems, []);
    });
  }
});

describe('the webhook manifests', () => {
  for (const target of WEBHOOK_TARGETS) {
    describe(`deploy/${target}`, () => {
      const objs = render(target);
      const deployment = one<IDeployment>(objs, 'Deployment');
      const service = one<IService>(objs, 'Service');
      const mwc = one<IMutatingWebhookConfiguration>(objs, 'MutatingWebhookConfiguration');
      const ns = deployment.metadata?.namespace as string;
      const podSpec = deployment.spec?.template.spec;
      const podLabels = deployment.spec?.template.metadata?.labels ?? {};
      const container = podSpec?.containers.find((c) => c.name === 'webhook') as IContainer;
      const webhooks = mwc.webhooks ?? [];
      const byName = (name: string): IMutatingWebhook =>
        webhooks.find((w) => w.name === name) as IMutatingWebhook;
      const failClosed = target.endsWith('-fail-closed');

      it('has two webhooks, called once per pod and free of side effects, calling the Service', () => {
        assert.deepEqual(
          webhooks.map((w) => w.name),
          ['namespace.config-reloader.io', 'pod.config-reloader.io'],
        );
        for (const w of webhooks) {
          assert.equal(w.sideEffects, 'None');
          assert.deepEqual(w.admissionReviewVersions, ['v1']);
          assert.equal(w.reinvocationPolicy, 'Never', 'what later webhooks add is theirs (docs/install.md)');
          assert.equal(w.failurePolicy, failClosed ? 'Fail' : 'Ignore');
          assert.ok((w.timeoutSeconds ?? 10) <= 10, 'a short timeout');
          assert.deepEqual(w.rules, [
            {
              apiGroups: [''],
              apiVersions: ['v1'],
              operations: ['CREATE'],
              resources: ['pods'],
              scope: 'Namespaced',
            },
          ]);
          assert.equal(w.clientConfig.service?.name, service.metadata?.name);
          assert.equal(w.clientConfig.service?.namespace, ns);
          assert.ok(
            service.spec?.ports?.some(
              (p) => p.port === w.clientConfig.service?.port && p.targetPort === 'https',
            ),
          );
          assert.equal(w.clientConfig.url, undefined);
        }
        assert.equal(byName('namespace.config-reloader.io').clientConfig.service?.path, '/mutate/namespace');
        assert.equal(byName('pod.config-reloader.io').clientConfig.service?.path, '/mutate');
      });

      it('sends labelled namespaces to /mutate/namespace, the others to /mutate, and never the system namespaces, its own, or its own pods', () => {
        const nsLabels = (name: string, enabled: boolean): Record<string, string> => ({
          'kubernetes.io/metadata.name': name,
          ...(enabled ? { 'config-reloader.io/injection': 'enabled' } : {}),
        });
        const sent = (name: string, enabled: boolean): string[] =>
          webhooks
            .filter((w) => selects(w.namespaceSelector as LabelSelector, nsLabels(name, enabled)))
            .map((w) => w.name);
        assert.deepEqual(sent('shop', true), ['namespace.config-reloader.io']);
        assert.deepEqual(sent('shop', false), ['pod.config-reloader.io']);
        for (const excluded of ['kube-system', 'kube-public', 'kube-node-lease', ns]) {
          assert.deepEqual(sent(excluded, true), [], `${excluded} labelled`);
          assert.deepEqual(sent(excluded, false), [], excluded);
        }
        for (const w of webhooks) {
          assert.equal(
            selects(w.objectSelector as LabelSelector, podLabels),
            false,
            `${w.name} skips the webhook's own pods`,
          );
          assert.equal(
            selects(w.objectSelector as LabelSelector, { app: 'shop' }),
            true,
            `${w.name} takes other pods`,
          );
        }
      });

      it('filters by the opt-in annotation with CEL on the pod-annotation webhook only', () => {
        assert.equal(byName('namespace.config-reloader.io').matchConditions, undefined);
        const conditions = byName('pod.config-reloader.io').matchConditions ?? [];
        assert.equal(conditions.length, 1);
        const expression = conditions[0]?.expression as string;
        const evaluate = (pod: object): unknown => {
          const result = runCel(expression, { object: pod as CelInput });
          assert.ok(!isCelError(result), `CEL error: ${String(result)}`);
          return result;
        };
        assert.equal(evaluate({ metadata: { name: 'a' } }), false, 'no annotations at all');
        assert.equal(evaluate({ metadata: { annotations: { other: 'x' } } }), false, 'other annotations');
        assert.equal(evaluate({ metadata: { annotations: { 'config-reloader.io/inject': 'true' } } }), true);
        // A typo still reaches the webhook, which denies it with a message saying how to fix it.
        assert.equal(
          evaluate({
            metadata: { generateName: 'web-', annotations: { 'config-reloader.io/inject': 'ture' } },
          }),
          true,
        );
      });

      it('runs two spread replicas with HTTPS probes, resources and graceful termination', () => {
        assert.ok((deployment.spec?.replicas ?? 1) >= 2);
        assert.equal(deployment.spec?.strategy?.rollingUpdate?.maxUnavailable, 0);
        assert.ok(
          podSpec?.topologySpreadConstraints?.some(
            (t) =>
              t.topologyKey === 'kubernetes.io/hostname' &&
              selects(t.labelSelector as LabelSelector, podLabels),
          ),
        );
        for (const [probe, path] of [
          ['readinessProbe', '/readyz'],
          ['livenessProbe', '/healthz'],
          ['startupProbe', '/healthz'],
        ] as const) {
          const get = container[probe]?.httpGet;
          assert.equal(get?.path, path, probe);
          assert.equal(get?.scheme, 'HTTPS', probe);
          assert.ok(
            container.ports?.some((p) => p.name === get?.port),
            `${probe} port is a container port`,
          );
        }
        assert.ok(
          container.resources?.requests?.cpu &&
            container.resources.requests.memory &&
            container.resources.limits?.memory,
        );
        const delay = parseDuration('shutdown-delay', argValue(container, 'shutdown-delay') ?? '0s');
        assert.ok(
          delay > 0 && delay < (podSpec?.terminationGracePeriodSeconds ?? 30) * 1000,
          '--shutdown-delay within the grace period',
        );
        assert.equal(container.args?.[0], 'webhook');
        assert.equal(argValue(container, 'port'), '8443');
        assert.ok(container.ports?.some((p) => p.name === 'https' && p.containerPort === 8443));
      });

      it('runs Node with young-generation spaces sized for throughput, not from the memory limit', () => {
        assert.equal(
          container.env?.find((e) => e.name === 'NODE_OPTIONS')?.value,
          '--max-semi-space-size=16',
        );
        assert.equal(
          container.resources?.limits?.memory,
          '256Mi',
          'the limit the setting was measured under',
        );
      });

      it('injects its own image as the sidecar (--reloader-image follows the images transformer)', () => {
        assert.equal(argValue(container, 'reloader-image'), '$(RELOADER_IMAGE)');
        assert.equal(container.env?.find((e) => e.name === 'RELOADER_IMAGE')?.value, container.image);
        assert.match(container.image ?? '', /^config-reloader-injector:\d+\.\d+\.\d+$/);
      });

      it('passes the restricted Pod Security Standard, in a namespace that enforces it', () => {
        const pod = podSpec?.securityContext;
        assert.equal(pod?.runAsNonRoot, true);
        assert.ok((pod?.runAsUser ?? 0) > 0);
        assert.equal(pod?.seccompProfile?.type, 'RuntimeDefault');
        const sc = container.securityContext;
        assert.equal(sc?.allowPrivilegeEscalation, false);
        assert.equal(sc?.readOnlyRootFilesystem, true);
        assert.deepEqual(sc?.capabilities?.drop, ['ALL']);
        assert.equal(sc?.capabilities?.add, undefined);
        assert.equal(sc?.privileged, undefined);
        assert.equal(podSpec?.hostNetwork, undefined);
        const namespace = objs.find((o) => o.kind === 'Namespace' && o.metadata.name === ns);
        assert.equal(namespace?.metadata.labels?.['pod-security.kubernetes.io/enforce'], 'restricted');
      });

      it('selects its pods from the Service and the PodDisruptionBudget, leaving one replica in a drain', () => {
        assert.ok(selects({ matchLabels: service.spec?.selector as Record<string, string> }, podLabels));
        const pdb = one<IPodDisruptionBudget>(objs, 'PodDisruptionBudget');
        assert.ok(selects(pdb.spec?.selector as LabelSelector, podLabels));
        assert.ok(
          Number(pdb.spec?.minAvailable) >= 1 &&
            Number(pdb.spec?.minAvailable) < (deployment.spec?.replicas ?? 1),
        );
      });

      it('a ValidatingAdmissionPolicy warns and audits an opted-in pod admitted without the sidecar, never denies, and leaves out exactly what the webhooks leave out', () => {
        const policy = one<KubeObject & { spec: VapSpec }>(objs, 'ValidatingAdmissionPolicy');
        const binding = one<
          KubeObject & { spec: { policyName: string; validationActions: string[]; matchResources?: unknown } }
        >(objs, 'ValidatingAdmissionPolicyBinding');
        assert.equal(binding.spec.policyName, policy.metadata.name);
        assert.deepEqual(binding.spec.validationActions, ['Warn', 'Audit']);
        assert.equal(binding.spec.matchResources, undefined, "the policy's own constraints apply");
        assert.equal(
          policy.spec.failurePolicy,
          'Ignore',
          'an evaluation error never stands in the way of a pod',
        );
        assert.deepEqual(policy.spec.matchConstraints.resourceRules, [
          {
            apiGroups: [''],
            apiVersions: ['v1'],
            operations: ['CREATE'],
            resources: ['pods'],
            scope: 'Namespaced',
          },
        ]);
        // Every namespace the webhooks never see, and only those, is left out (labelled or not).
        for (const name of ['kube-system', 'kube-public', 'kube-node-lease', ns, 'shop', 'default'])
          for (const enabled of [true, false]) {
            const labels = {
              'kubernetes.io/metadata.name': name,
              ...(enabled ? { 'config-reloader.io/injection': 'enabled' } : {}),
            };
            const webhooks = mwc.webhooks?.some((w) => selects(w.namespaceSelector as LabelSelector, labels));
            assert.equal(
              selects(policy.spec.matchConstraints.namespaceSelector, labels),
              webhooks,
              `namespace ${name}${enabled ? ' (labelled)' : ''}`,
            );
          }
        for (const labels of [podLabels, { app: 'shop' }, {}])
          assert.equal(
            selects(policy.spec.matchConstraints.objectSelector, labels),
            mwc.webhooks?.some((w) => selects(w.objectSelector as LabelSelector, labels)),
            `pod labels ${JSON.stringify(labels)}`,
          );
        const message = policy.spec.validations[0]?.messageExpression ?? '';
        assert.match(message, /recreate the pod: kubectl rollout restart/, 'the warning names the fix');
        assert.match(message, new RegExp(`kubectl -n ${ns} get pods`), "it names the webhook's namespace");
      });

      const MISSED = 'config-reloader-injector-missed-injections';
      const missedRbac = objs.filter((o) => o.metadata.name === MISSED);
      // The RBAC of the certificate mode; the missed-injection scan's is checked on its own below.
      const certObjs = objs.filter((o) => o.metadata.name !== MISSED);
      const roles = certObjs.filter((o) => o.kind === 'Role' || o.kind === 'ClusterRole') as unknown as Array<
        IRole | IClusterRole
      >;
      if (target.startsWith('overlays/')) {
        it('missed injections: the flag, a token, a ClusterRole that lists pods and namespaces and creates events, and a Role for its one Lease, nothing more', () => {
          assert.ok(container.args?.includes('--watch-missed-injections'));
          assert.equal(podSpec?.automountServiceAccountToken, true);
          // The Deployment says which namespace the Lease is in (POD_NAMESPACE, from the downward API).
          assert.equal(
            container.env?.find((e) => e.name === 'POD_NAMESPACE')?.valueFrom?.fieldRef?.fieldPath,
            'metadata.namespace',
          );
          const clusterRole = one<IClusterRole>(missedRbac, 'ClusterRole');
          // No get and no watch: the scan keeps no copy of the cluster (a candidate pod is read by a list by name).
          assert.deepEqual(clusterRole.rules, [
            { apiGroups: [''], resources: ['pods', 'namespaces'], verbs: ['list'] },
            { apiGroups: [''], resources: ['events'], verbs: ['create'] },
          ]);
          const role = one<IRole>(missedRbac, 'Role');
          assert.equal(role.metadata?.namespace, ns);
          assert.deepEqual(role.rules, [
            {
              apiGroups: ['coordination.k8s.io'],
              resources: ['leases'],
              resourceNames: ['config-reloader-injector-missed-injections'],
              verbs: ['get', 'update'],
            },
            { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['create'] },
          ]);
          const sa = { kind: 'ServiceAccount', name: podSpec?.serviceAccountName, namespace: ns };
          const crb = one<IClusterRoleBinding>(missedRbac, 'ClusterRoleBinding');
          assert.deepEqual(crb.subjects, [sa]);
          assert.equal(crb.roleRef.name, MISSED);
          const rb = one<IRoleBinding>(missedRbac, 'RoleBinding');
          assert.deepEqual(rb.subjects, [sa]);
          assert.deepEqual(rb.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: MISSED });
        });
      }
      if (target.startsWith('overlays/self-managed')) {
        it('self-managed: a token, and RBAC limited by resourceNames to its Secret and its webhook configuration', () => {
          assert.equal(podSpec?.automountServiceAccountToken, true);
          assert.ok(container.args?.includes('--self-managed-certs'));
          assert.equal(
            container.env?.find((e) => e.name === 'POD_NAMESPACE')?.valueFrom?.fieldRef?.fieldPath,
            'metadata.namespace',
          );
          assert.equal(
            container.env?.find((e) => e.name === 'POD_NAME')?.valueFrom?.fieldRef?.fieldPath,
            'metadata.name',
          );
          assert.equal(argValue(container, 'service'), service.metadata?.name);
          assert.equal(argValue(container, 'webhook-config'), mwc.metadata?.name);
          const secret = argValue(container, 'cert-secret') as string;
          const role = one<IRole>(certObjs, 'Role');
          assert.equal(role.metadata?.namespace, ns);
          assert.deepEqual(role.rules, [
            {
              apiGroups: [''],
              resources: ['secrets'],
              resourceNames: [secret],
              verbs: ['get', 'update', 'patch'],
            },
            { apiGroups: [''], resources: ['secrets'], verbs: ['create'] },
          ]);
          const clusterRole = one<IClusterRole>(certObjs, 'ClusterRole');
          assert.deepEqual(clusterRole.rules, [
            {
              apiGroups: ['admissionregistration.k8s.io'],
              resources: ['mutatingwebhookconfigurations'],
              resourceNames: [mwc.metadata?.name as string],
              verbs: ['get', 'patch'],
            },
          ]);
          const sa = { kind: 'ServiceAccount', name: podSpec?.serviceAccountName, namespace: ns };
          const rb = one<IRoleBinding>(certObjs, 'RoleBinding');
          assert.deepEqual(rb.subjects, [sa]);
          assert.equal(rb.roleRef.name, role.metadata?.name);
          const crb = one<IClusterRoleBinding>(certObjs, 'ClusterRoleBinding');
          assert.deepEqual(crb.subjects, [sa]);
          assert.equal(crb.roleRef.name, clusterRole.metadata?.name);
        });
      } else {
        it("no API access for certificates: no RBAC but the missed-injection scan's", () => {
          if (!target.startsWith('overlays/')) assert.equal(podSpec?.automountServiceAccountToken, false);
          assert.deepEqual(roles, []);
          assert.equal(container.args?.includes('--self-managed-certs'), false);
        });
      }

      if (target.startsWith('overlays/cert-manager')) {
        it('cert-manager: a private CA, a serving certificate for the Service names, mounted and re-read, and its CA injected', () => {
          const certs = objs.filter((o) => o.kind === 'Certificate') as Array<
            KubeObject & {
              spec: {
                secretName: string;
                isCA?: boolean;
                dnsNames?: string[];
                issuerRef: { name: string; kind: string };
              };
            }
          >;
          const issuers = objs.filter((o) => o.kind === 'Issuer') as Array<
            KubeObject & { spec: { selfSigned?: object; ca?: { secretName: string } } }
          >;
          const ca = certs.find((c) => c.spec.isCA) as (typeof certs)[number];
          const serving = certs.find((c) => !c.spec.isCA) as (typeof certs)[number];
          assert.ok(
            issuers.find((i) => i.metadata.name === ca.spec.issuerRef.name)?.spec.selfSigned,
            'the CA is issued by a self-signed Issuer',
          );
          assert.equal(
            issuers.find((i) => i.metadata.name === serving.spec.issuerRef.name)?.spec.ca?.secretName,
            ca.spec.secretName,
            'the serving certificate by the CA Issuer',
          );
          assert.deepEqual(serving.spec.dnsNames, serviceHosts(service.metadata?.name as string, ns));
          assert.equal(
            mwc.metadata?.annotations?.['cert-manager.io/inject-ca-from'],
            `${ns}/${serving.metadata.name}`,
          );
          const volume = podSpec?.volumes?.find((v) => v.secret?.secretName === serving.spec.secretName);
          assert.ok(volume, 'the serving Secret is mounted');
          const mount = container.volumeMounts?.find((m) => m.name === volume.name);
          assert.equal(mount?.readOnly, true);
          assert.equal(argValue(container, 'tls-cert-file'), `${mount?.mountPath}/tls.crt`);
          assert.equal(argValue(container, 'tls-key-file'), `${mount?.mountPath}/tls.key`);
        });
      }
    });
  }
});

describe("the ValidatingAdmissionPolicy's CEL agrees with the webhook's own decision (missedInjection)", () => {
  // @bufbuild/cel with its strings extension (trim, lowerAscii, split), as Kubernetes' CEL has them; the real
  // API server evaluates the same policy in test/e2e/missed-injections.test.ts.
  const policy = render('base').find((o) => o.kind === 'ValidatingAdmissionPolicy') as KubeObject & {
    spec: VapSpec;
  };
  /** true: the API server would warn (the validation fails); false: it would not; a string: a CEL error. */
  const warns = (pod: object, namespaceLabels: Record<string, string>): boolean | string => {
    const bindings: Record<string, CelInput> = {
      object: pod as CelInput,
      namespaceObject: { metadata: { name: 'shop', labels: namespaceLabels } } as CelInput,
    };
    const env = { funcs: celStrings };
    for (const c of policy.spec.matchConditions) {
      const r = runCel(c.expression, bindings, env);
      if (isCelError(r)) return `matchCondition ${c.name}: ${String(r)}`;
      if (r === false) return false;
    }
    const variables: Record<string, unknown> = {};
    for (const v of policy.spec.variables) {
      const r = runCel(v.expression, { ...bindings, variables: variables as CelInput }, env);
      if (isCelError(r)) return `variable ${v.name}: ${String(r)}`;
      variables[v.name] = r;
    }
    for (const v of policy.spec.validations) {
      const r = runCel(v.expression, { ...bindings, variables: variables as CelInput }, env);
      if (isCelError(r)) return `validation: ${String(r)}`;
      if (r === false) return true;
    }
    return false;
  };
  const LABELLED = { 'config-reloader.io/injection': 'enabled' };
  const compare = (name: string, pod: Record<string, unknown>, labels: Record<string, string>): void => {
    const missed = missedInjection(pod, labels, DEFAULT_INJECTOR_CONFIG);
    assert.equal(
      warns(pod, labels),
      missed !== undefined,
      `${name}: the webhook ${missed ? `would ${missed.outcome.action} it` : 'would skip it'}`,
    );
  };

  it('on every real-world pod of test/fixtures, opted in by annotation, by namespace label, or not at all', () => {
    const dir = fileURLToPath(new URL('../fixtures/real-world/pods/', import.meta.url));
    const files = readdirSync(dir).filter((f) => f.endsWith('.json'));
    assert.ok(files.length > 50);
    for (const f of files) {
      const base = JSON.parse(readFileSync(join(dir, f), 'utf8')) as { metadata: Record<string, unknown> };
      const annotated = structuredClone(base);
      annotated.metadata.annotations = {
        ...(annotated.metadata.annotations as object),
        'config-reloader.io/inject': 'true',
      };
      compare(`${f}, annotation`, annotated, {});
      compare(`${f}, labelled namespace`, base, LABELLED);
      compare(`${f}, not opted in`, base, {});
    }
  });

  it('on the shapes that decide it: subPath, explicit mode, config-reloader.io/volumes, the token, opting out, injected', () => {
    const mount = (name: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
      name,
      mountPath: `/etc/${name}`,
      ...extra,
    });
    const pod = (
      annotations: Record<string, string>,
      mounts: Array<Record<string, unknown>>,
      volumes: Array<Record<string, unknown>>,
      initMounts?: Array<Record<string, unknown>>,
    ): Record<string, unknown> => ({
      metadata: { name: 'p', namespace: 'shop', annotations },
      spec: {
        ...(initMounts ? { initContainers: [{ name: 'init', image: 'x', volumeMounts: initMounts }] } : {}),
        containers: [{ name: 'app', image: 'x', volumeMounts: mounts }],
        volumes,
      },
    });
    const cm = { name: 'cm', configMap: { name: 'settings' } };
    const secret = { name: 'sec', secret: { secretName: 'creds' } };
    const inject = { 'config-reloader.io/inject': 'true' };
    const cases: Array<[string, Record<string, unknown>, Record<string, string>]> = [
      ['a configMap volume', pod(inject, [mount('cm')], [cm]), {}],
      ['" TRUE " is true', pod({ 'config-reloader.io/inject': ' TRUE ' }, [mount('cm')], [cm]), {}],
      ['a volume nobody mounts', pod(inject, [], [cm]), {}],
      ['mounted only through subPath', pod(inject, [mount('cm', { subPath: 'a' })], [cm]), LABELLED],
      ['mounted only through subPathExpr', pod(inject, [mount('cm', { subPathExpr: '$(X)' })], [cm]), {}],
      ['subPath and a whole mount', pod(inject, [mount('cm', { subPath: 'a' }), mount('cm')], [cm]), {}],
      ['whole in an init container', pod(inject, [mount('cm', { subPath: 'a' })], [cm], [mount('cm')]), {}],
      ['no secret or configMap volume', pod(inject, [mount('e')], [{ name: 'e', emptyDir: {} }]), {}],
      ['explicit mode, no volume', pod({ 'config-reloader.io/secrets': 'a, b' }, [], []), LABELLED],
      ['explicit mode, an empty list', pod({ ...inject, 'config-reloader.io/secrets': ' , ' }, [], []), {}],
      [
        'explicit mode, configmaps',
        pod({ ...inject, 'config-reloader.io/configmaps': 'x' }, [mount('cm')], [cm]),
        {},
      ],
      [
        'config-reloader.io/volumes names a volume',
        pod({ ...inject, 'config-reloader.io/volumes': ' sec ' }, [mount('cm'), mount('sec')], [cm, secret]),
        {},
      ],
      [
        'config-reloader.io/volumes names a subPath-only volume',
        pod(
          { ...inject, 'config-reloader.io/volumes': 'sec' },
          [mount('cm'), mount('sec', { subPath: 'x' })],
          [cm, secret],
        ),
        {},
      ],
      [
        'a Secret holding the token, at the standard path',
        pod(inject, [{ name: 'sec', mountPath: '/var/run/secrets/kubernetes.io/serviceaccount/' }], [secret]),
        {},
      ],
      [
        'opted out in a labelled namespace',
        pod({ 'config-reloader.io/inject': 'false' }, [mount('cm')], [cm]),
        LABELLED,
      ],
      [
        'a typo in a labelled namespace (denied)',
        pod({ 'config-reloader.io/inject': 'ture' }, [mount('cm')], [cm]),
        LABELLED,
      ],
      ['a typo elsewhere (not sent)', pod({ 'config-reloader.io/inject': 'ture' }, [mount('cm')], [cm]), {}],
      ['injected', pod({ ...inject, 'config-reloader.io/status': 'injected' }, [mount('cm')], [cm]), {}],
      ['a mirror pod', pod({ ...inject, 'kubernetes.io/config.mirror': 'x' }, [mount('cm')], [cm]), {}],
      [
        'no annotations at all',
        { metadata: { name: 'p' }, spec: { containers: [{ name: 'a', image: 'x' }] } },
        LABELLED,
      ],
    ];
    for (const [name, p, labels] of cases) compare(name, p, labels);
  });
});

describe('deploy/example', () => {
  const objs = render('example');
  const deployment = one<IDeployment>(objs, 'Deployment');
  const template = deployment.spec?.template;
  const ns = deployment.metadata?.namespace as string;

  it("opts its pod in by annotation with the prometheus preset, whose reload needs Prometheus' lifecycle flag", () => {
    assert.equal(template?.metadata?.annotations?.['config-reloader.io/inject'], 'true');
    assert.equal(template?.metadata?.annotations?.['config-reloader.io/preset'], 'prometheus');
    const prometheus = template?.spec?.containers?.find((c) => c.name === 'prometheus');
    assert.ok(prometheus?.args?.includes('--web.enable-lifecycle'));
  });

  it("gives the pod's service account get, list and watch on its Secret only, by resourceNames", () => {
    const secrets = (template?.spec?.volumes ?? []).flatMap((v) =>
      v.secret?.secretName ? [v.secret.secretName] : [],
    );
    assert.ok(secrets.length > 0);
    for (const name of secrets)
      assert.ok(
        objs.some((o) => o.kind === 'Secret' && o.metadata.name === name),
        `Secret ${name} is part of the example`,
      );
    const role = one<IRole>(objs, 'Role');
    assert.deepEqual(role.rules, [
      { apiGroups: [''], resources: ['secrets'], resourceNames: secrets, verbs: ['get', 'list', 'watch'] },
    ]);
    const rb = one<IRoleBinding>(objs, 'RoleBinding');
    assert.equal(rb.roleRef.name, role.metadata?.name);
    assert.deepEqual(rb.subjects, [
      { kind: 'ServiceAccount', name: template?.spec?.serviceAccountName, namespace: ns },
    ]);
    assert.ok(
      objs.some((o) => o.kind === 'ServiceAccount' && o.metadata.name === template?.spec?.serviceAccountName),
    );
  });

  it('passes the restricted Pod Security Standard in a namespace that enforces it', () => {
    const pod = template?.spec?.securityContext;
    assert.equal(pod?.runAsNonRoot, true);
    assert.equal(pod?.seccompProfile?.type, 'RuntimeDefault');
    for (const c of template?.spec?.containers ?? []) {
      assert.equal(c.securityContext?.allowPrivilegeEscalation, false);
      assert.deepEqual(c.securityContext?.capabilities?.drop, ['ALL']);
    }
    assert.equal(
      objs.find((o) => o.kind === 'Namespace')?.metadata.labels?.['pod-security.kubernetes.io/enforce'],
      'restricted',
    );
  });
});

describe("a user's own overlay, as the README's install steps write it", () => {
  const renderUserOverlay = (image: Record<string, string>): KubeObject[] => {
    const dir = mkdtempSync(join(tmpdir(), 'my-install-'));
    try {
      writeFileSync(
        join(dir, 'kustomization.yaml'),
        stringify({
          resources: [relative(dir, join(DEPLOY, 'overlays/self-managed'))],
          images: [{ name: 'config-reloader-injector', ...image }],
        }),
      );
      const yaml = execFileSync('kubectl', ['kustomize', dir], { encoding: 'utf8' });
      return parseAllDocuments(yaml).map((d) => d.toJS() as KubeObject);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
  const webhookContainer = (objs: KubeObject[]): IContainer =>
    (one<IDeployment>(objs, 'Deployment').spec?.template.spec?.containers ?? [])[0] as IContainer;

  for (const [what, image, expected] of [
    [
      'a tag',
      { newName: 'registry.example.com/config-reloader-injector', newTag: '0.1.0' },
      'registry.example.com/config-reloader-injector:0.1.0',
    ],
    [
      'a digest',
      { newName: 'registry.example.com/cri', digest: `sha256:${'ab'.repeat(32)}` },
      `registry.example.com/cri@sha256:${'ab'.repeat(32)}`,
    ],
  ] as const)
    it(`setting the image by ${what} changes the webhook's image and the sidecar image it injects together`, () => {
      const container = webhookContainer(renderUserOverlay(image));
      assert.equal(container.image, expected);
      assert.equal(container.env?.find((e) => e.name === 'RELOADER_IMAGE')?.value, expected);
      assert.equal(argValue(container, 'reloader-image'), '$(RELOADER_IMAGE)');
    });
});
