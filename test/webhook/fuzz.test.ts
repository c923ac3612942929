import assert from 'node:assert/strict';
import { Agent, request } from 'node:https';
import { after, before, describe, it } from 'node:test';
import { connect } from 'node:tls';
import fc from 'fast-check';
import { applyPatch } from 'rfc6902';
import { ANNOTATIONS } from '../../src/injection/annotations.ts';
import { DEFAULT_INJECTOR_CONFIG, type InjectorConfig } from '../../src/injection/config.ts';
import type { OptIn } from '../../src/injection/inject.ts';
import { parseSourceSpec } from '../../src/shared/source-spec.ts';
import { review } from '../../src/webhook/admission.ts';
import type { RunningServer } from '../../src/webhook/server.ts';
import { apiAccessVolume, TOKEN_MOUNT_PATH } from '../support/kube-apiserver/service-account-admission.ts';
import { startTestWebhook } from '../support/webhook-server.ts';
import { validatePod } from '../support/pod-validation.ts';

/**
 * Property-based fuzzing of the webhook. Generated pods (every volume source type, init, native-sidecar and
 * ephemeral containers, odd and huge annotation values, `/` and `~` in keys) go through `review()` in-process, and a
 * sample of them plus mutated and truncated bodies goes over HTTPS to a started server. Every answer must be a valid
 * AdmissionReview or a 4xx with a message; every patch must apply with rfc6902 (not the library that made it) and
 * yield a valid Pod; a second pass must not patch again; the server must keep answering.
 *
 * The seed is fixed so the suite is deterministic; FUZZ_SEED=<n> explores others. fast-check prints the seed and
 * the counterexample path on failure.
 */

const SEED = Number(process.env.FUZZ_SEED ?? 20_240_601);
const IN_PROCESS_RUNS = 10_000;
const HTTPS_SAMPLE = 500;

type Obj = Record<string, unknown>;

// ---------- generators ----------

/**
 * Names come from pools drawn once (fc.stringMatching per value would dominate the run time); the pools hold the
 * edge cases: one character, 63 characters, digits and dashes inside.
 */
function pool(pattern: RegExp, size: number, extra: string[] = []): fc.Arbitrary<string> {
  const drawn = fc.sample(fc.stringMatching(pattern), { seed: 7, numRuns: size });
  return fc.constantFrom(...new Set([...extra, ...drawn]));
}
const dns = pool(/^[a-z]([a-z0-9-]{0,10}[a-z0-9])?$/, 300, [
  'a',
  'app-config',
  `x${'-y'.repeat(30)}z`,
  'kube-root-ca.crt'.replace(/\./g, '-'),
]);
const ianaName = pool(/^[a-z]([a-z0-9-]{0,11}[a-z0-9])?$/, 100, ['http', 'metrics', 'a', 'web-8080']);
const dataKey = pool(/^[-._a-zA-Z0-9]{1,12}$/, 100, ['config.yaml', '.hidden', 'a_b-c.d', 'tls.crt']).filter(
  (k) => k !== '.' && k !== '..',
);
const relPath = pool(/^[a-z0-9_][a-z0-9._-]{0,6}(\/[a-z0-9_][a-z0-9._-]{0,6}){0,2}$/, 200, [
  'a',
  'conf/app.yaml',
  '..data-like',
  'x/.y',
]).filter((p) => !p.split('/').includes('..'));
const mode = fc.integer({ min: 0, max: 0o777 });
const quantity = fc.constantFrom('1Gi', '512Mi', '100M', '1', '0');

/** Strings that are awkward to carry through JSON, JSON Pointer, URLs and the --source grammar. */
/** Characters from every corner: controls, Latin-1, combining marks, RTL, zero-width, CJK, astral emoji, lone surrogates. */
const oddChar = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...'abcXYZ019-_.,;:=?&%~/\\"\' {}[]#@!*+$') },
  {
    weight: 4,
    arbitrary: fc.constantFrom(
      '\u0000',
      '\u0007',
      '\t',
      '\n',
      '\r',
      '\u007f',
      'é',
      'ß',
      '\u0301',
      '\u200b',
      '\u200f',
      '\u202e',
      '\ufeff',
      '中',
      '文',
      'ｔ',
      '💥',
      '👩‍👩‍👧',
      '\ud800',
      '\udfff',
      '\uffff',
    ),
  },
);
const oddString = fc.oneof(
  { weight: 6, arbitrary: fc.string({ unit: oddChar, maxLength: 24 }) },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      '~',
      '/',
      '~0',
      '~1',
      '/~1/',
      '..',
      '',
      ' ',
      '\u0000',
      '\ud800',
      '💥',
      'ｔｒｕｅ',
      'true ',
      ' true',
      '%2F',
      '${HOME}',
      '$(rm -rf /)',
      'a,b,,c',
      'a=b?c&d',
      '<script>',
      '\n--source=secret/x=/tmp',
    ),
  },
);

/** Huge values, where an annotation can carry one: the API server lets annotations total 256 KiB. */
const hugeString = fc
  .integer({ min: 1_000, max: 64_000 })
  .map((n) => 'ẍ/~'.repeat(Math.ceil(n / 3)).slice(0, n));
const annotationOdd = fc.oneof({ weight: 20, arbitrary: oddString }, { weight: 1, arbitrary: hugeString });

/** Keys other tools put on pods, including `/` and `~`, which need escaping in a JSON Pointer. */
const foreignKey = fc.oneof(
  fc.constantFrom(
    'app',
    'example.com/team',
    'a~b',
    'x/y~z',
    '~1',
    '~0~1/',
    'config-reloader.io/unknown',
    'config-reloader.io~1status',
  ),
  fc.tuple(dns, fc.constantFrom('/', '~', '~1', '/~0'), dns).map(([a, s, b]) => `${a}${s}${b}`),
  fc.string({ unit: oddChar, minLength: 1, maxLength: 12 }),
);

const keyToPath = fc.uniqueArray(
  fc.record({ key: dataKey, path: relPath, mode }, { requiredKeys: ['key', 'path'] }),
  {
    selector: (i) => i.path,
    maxLength: 3,
  },
);
const oddItems = fc.array(fc.record({ key: oddString, path: oddString }), { minLength: 1, maxLength: 2 });
const items = fc.oneof({ weight: 5, arbitrary: keyToPath }, { weight: 1, arbitrary: oddItems });

const downwardItems = fc.uniqueArray(
  fc.record({
    path: relPath,
    fieldRef: fc.record({
      fieldPath: fc.constantFrom('metadata.name', 'metadata.labels', 'metadata.namespace'),
    }),
  }),
  { selector: (i) => i.path, minLength: 1, maxLength: 2 },
);

const projectedSource = fc.oneof(
  fc.record({
    secret: fc.record({ name: dns, items: keyToPath, optional: fc.boolean() }, { requiredKeys: ['name'] }),
  }),
  fc.record({
    configMap: fc.record({ name: dns, items: keyToPath, optional: fc.boolean() }, { requiredKeys: ['name'] }),
  }),
  fc.record({
    serviceAccountToken: fc.record(
      { path: relPath, expirationSeconds: fc.integer({ min: 600, max: 86_400 }), audience: dns },
      { requiredKeys: ['path'] },
    ),
  }),
  fc.record({ downwardAPI: fc.record({ items: downwardItems }) }),
  fc.record({
    clusterTrustBundle: fc.record({ path: relPath, signerName: fc.constant('example.com/signer') }),
  }),
);

/** One generator per volume source type of core/v1 Volume, with the fields the schema requires. */
const volumeSource: fc.Arbitrary<Obj> = fc.oneof(
  {
    weight: 12,
    arbitrary: fc.record({
      secret: fc.record(
        {
          secretName: fc.oneof({ weight: 9, arbitrary: dns }, { weight: 1, arbitrary: oddString }),
          items,
          defaultMode: mode,
          optional: fc.boolean(),
        },
        { requiredKeys: ['secretName'] },
      ),
    }),
  },
  {
    weight: 12,
    arbitrary: fc.record({
      configMap: fc.record(
        {
          name: fc.oneof({ weight: 9, arbitrary: dns }, { weight: 1, arbitrary: oddString }),
          items,
          defaultMode: mode,
          optional: fc.boolean(),
        },
        { requiredKeys: [] },
      ),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      emptyDir: fc.record(
        { medium: fc.constantFrom('', 'Memory'), sizeLimit: quantity },
        { requiredKeys: [] },
      ),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      projected: fc.record(
        { sources: fc.array(projectedSource, { maxLength: 4 }), defaultMode: mode },
        { requiredKeys: ['sources'] },
      ),
    }),
  },
  fc.record({
    hostPath: fc.record(
      { path: relPath.map((p) => `/${p}`), type: fc.constantFrom('', 'Directory', 'File', 'Socket') },
      { requiredKeys: ['path'] },
    ),
  }),
  fc.record({ downwardAPI: fc.record({ items: downwardItems, defaultMode: mode }, { requiredKeys: [] }) }),
  fc.record({
    persistentVolumeClaim: fc.record(
      { claimName: dns, readOnly: fc.boolean() },
      { requiredKeys: ['claimName'] },
    ),
  }),
  fc.record({ nfs: fc.record({ server: dns, path: relPath.map((p) => `/${p}`) }) }),
  fc.record({
    csi: fc.record(
      { driver: dns, readOnly: fc.boolean(), volumeAttributes: fc.dictionary(dns, dns, { maxKeys: 2 }) },
      { requiredKeys: ['driver'] },
    ),
  }),
  fc.constant({
    ephemeral: {
      volumeClaimTemplate: {
        spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
      },
    },
  }),
  fc.record({
    image: fc.record(
      {
        reference: fc.constantFrom('example/data:1', 'registry.example.com/a/b@sha256:00'),
        pullPolicy: fc.constantFrom('Always', 'IfNotPresent'),
      },
      { requiredKeys: ['reference'] },
    ),
  }),
  fc.record({
    iscsi: fc.record({
      targetPortal: fc.constant('10.0.0.1:3260'),
      iqn: fc.constant('iqn.2001-04.com.example:storage'),
      lun: fc.integer({ min: 0, max: 7 }),
    }),
  }),
  fc.record({ awsElasticBlockStore: fc.record({ volumeID: dns }) }),
  fc.record({ gcePersistentDisk: fc.record({ pdName: dns }) }),
  fc.record({ azureDisk: fc.record({ diskName: dns, diskURI: dns }) }),
  fc.record({ azureFile: fc.record({ secretName: dns, shareName: dns }) }),
  fc.record({ cephfs: fc.record({ monitors: fc.array(dns, { minLength: 1, maxLength: 2 }) }) }),
  fc.record({ cinder: fc.record({ volumeID: dns }) }),
  fc.record({ fc: fc.record({ wwids: fc.array(dns, { maxLength: 1 }) }) }),
  fc.record({ flexVolume: fc.record({ driver: dns }) }),
  fc.record({ flocker: fc.record({ datasetName: dns }) }),
  fc.record({ gitRepo: fc.record({ repository: fc.constant('https://example.com/repo.git') }) }),
  fc.record({ glusterfs: fc.record({ endpoints: dns, path: dns }) }),
  fc.record({ photonPersistentDisk: fc.record({ pdID: dns }) }),
  fc.record({ portworxVolume: fc.record({ volumeID: dns }) }),
  fc.record({ quobyte: fc.record({ registry: dns, volume: dns }) }),
  fc.record({ rbd: fc.record({ monitors: fc.array(dns, { minLength: 1, maxLength: 2 }), image: dns }) }),
  fc.record({ scaleIO: fc.record({ gateway: dns, system: dns, secretRef: fc.record({ name: dns }) }) }),
  fc.record({ storageos: fc.record({ volumeName: dns }) }),
  fc.record({ vsphereVolume: fc.record({ volumePath: dns }) }),
);

// The names injection adds, rarely: a pod that already has one is denied.
const containerName = fc.oneof(
  { weight: 300, arbitrary: dns },
  { weight: 1, arbitrary: fc.constantFrom('config-reloader', 'config-reloader-init') },
);
const volumeName = fc.oneof(
  { weight: 300, arbitrary: dns },
  { weight: 1, arbitrary: fc.constant('config-reloader') },
);

const ports = fc.uniqueArray(
  fc.record(
    {
      containerPort: fc.oneof(fc.integer({ min: 1, max: 65_535 }), fc.integer({ min: 9530, max: 9540 })),
      name: fc.oneof(ianaName, fc.constant('reloader-http')),
      protocol: fc.constantFrom('TCP', 'UDP'),
    },
    { requiredKeys: ['containerPort'] },
  ),
  { selector: (p) => p.name ?? `#${p.containerPort}`, maxLength: 3 },
);

/**
 * Mounts name volumes by index; the index is resolved against the pod's volumes once they are known. One mount in
 * five uses subPath: a volume mounted only that way is left to the kubelet, so a pod whose every mount did would
 * never reach the injection branch.
 */
const mounts = fc.uniqueArray(
  fc
    .record(
      {
        volume: fc.nat(),
        mountPath: relPath.map((p) => `/mnt/${p}`),
        subPath: fc.oneof({ weight: 1, arbitrary: relPath }, { weight: 4, arbitrary: fc.constant(null) }),
        readOnly: fc.boolean(),
      },
      { requiredKeys: ['volume', 'mountPath', 'subPath'] },
    )
    .map(({ subPath, ...m }) => (subPath === null ? m : { ...m, subPath })),
  { selector: (m) => m.mountPath, maxLength: 3 },
);

const env = fc.array(fc.record({ name: pool(/^[A-Z_][A-Z0-9_]{0,8}$/, 50), value: oddString }), {
  maxLength: 2,
});
const resources = fc.record(
  {
    requests: fc.record(
      { cpu: fc.constantFrom('10m', '1'), memory: fc.constantFrom('64Mi', '1Gi') },
      { requiredKeys: [] },
    ),
  },
  { requiredKeys: [] },
);
const probe = fc.record({
  httpGet: fc.record({ path: fc.constant('/healthz'), port: fc.integer({ min: 1, max: 65_535 }) }),
});

const common = {
  image: fc.constantFrom('nginx:1.27', 'example/app:1', 'registry.example.com/x@sha256:abc'),
  volumeMounts: mounts,
  env,
  args: fc.array(oddString, { maxLength: 2 }),
};
const ephemeralContainer = fc.record(common, { requiredKeys: ['image'] });
const initContainer = fc.oneof(
  fc.record({ ...common, ports, resources }, { requiredKeys: ['image'] }),
  // A native sidecar of the app's own.
  fc
    .record(
      { ...common, ports, resources, startupProbe: probe, readinessProbe: probe },
      { requiredKeys: ['image'] },
    )
    .map((c) => ({ ...c, restartPolicy: 'Always' })),
);
const appContainer = fc.record(
  { ...common, ports, resources, livenessProbe: probe, readinessProbe: probe },
  { requiredKeys: ['image'] },
);

/** An annotation list that names things of the pod (by index, resolved later) or other names. */
type Ref = { ref: number } | { name: string };
const refList = fc.array(
  fc.oneof(
    { weight: 3, arbitrary: fc.nat(20).map((ref): Ref => ({ ref })) },
    { weight: 1, arbitrary: dns.map((name): Ref => ({ name })) },
  ),
  { minLength: 1, maxLength: 3 },
);
type AnnotationValue = string | { of: 'volumes' | 'containers'; list: Ref[] };

// Built once: fc.webUrl() is costly to construct.
const reloadUrls = fc.oneof(
  fc.constantFrom(
    'http://127.0.0.1:8429/-/reload',
    'http://localhost:9090/-/reload',
    'https://[::1]:8443/r',
    'http://10.0.0.1/x',
    'file:///etc/passwd',
  ),
  fc.webUrl({ withQueryParameters: true, withFragments: true }),
  fc.webUrl().map((u) => u.replace(/^https?:\/\/[^/]+/, 'http://127.0.0.1:8080')),
);

const mix = (...good: Array<fc.Arbitrary<AnnotationValue>>): fc.Arbitrary<AnnotationValue> =>
  fc.oneof({ weight: 12, arbitrary: fc.oneof(...good) }, { weight: 1, arbitrary: annotationOdd });
const names = fc.uniqueArray(dns, { minLength: 1, maxLength: 3 }).map((l) => l.join(','));

/** Values for each config-reloader.io/* annotation: mostly plausible, sometimes wrong, sometimes odd. */
const ANNOTATION_VALUES: Record<string, fc.Arbitrary<AnnotationValue>> = {
  [ANNOTATIONS.inject]: fc.oneof(
    { weight: 24, arbitrary: fc.constant('true') },
    { weight: 1, arbitrary: fc.constantFrom('false', 'True', 'yes', '') },
    { weight: 1, arbitrary: annotationOdd },
  ),
  [ANNOTATIONS.status]: fc.oneof(fc.constant('injected'), annotationOdd),
  [ANNOTATIONS.volumes]: mix(refList.map((list) => ({ of: 'volumes' as const, list }))),
  [ANNOTATIONS.secrets]: mix(names),
  [ANNOTATIONS.configmaps]: mix(names),
  [ANNOTATIONS.mountPath]: mix(
    fc.constantFrom('/etc/config-reloader', '/config', '/etc/app/'),
    relPath.map((p) => `/x/${p}`),
  ),
  [ANNOTATIONS.containers]: mix(refList.map((list) => ({ of: 'containers' as const, list }))),
  [ANNOTATIONS.reloadUrl]: mix(reloadUrls),
  [ANNOTATIONS.reloadMethod]: mix(fc.constantFrom('GET', 'POST', 'put', 'DELETE')),
  [ANNOTATIONS.sidecarMode]: mix(fc.constantFrom('native', 'legacy', 'LEGACY', 'sidecar')),
  [ANNOTATIONS.port]: mix(
    fc.integer({ min: -1, max: 70_000 }).map(String),
    fc.constantFrom('9533', '8080', '0', '1e3', '0x10'),
  ),
  [ANNOTATIONS.cpuRequest]: mix(fc.constantFrom('10m', '1', '0.5', '1.5Gi', '-1', 'lots')),
  [ANNOTATIONS.cpuLimit]: mix(fc.constantFrom('100m', '2', '1e3', '')),
  [ANNOTATIONS.memoryRequest]: mix(fc.constantFrom('48Mi', '1Gi', '64M', '1e9', '12ki')),
  [ANNOTATIONS.memoryLimit]: mix(fc.constantFrom('96Mi', '128Mi', '1Ti', 'x')),
  [ANNOTATIONS.gunzip]: mix(fc.constantFrom('true', 'false', 'TRUE')),
  [ANNOTATIONS.logLevel]: mix(fc.constantFrom('debug', 'info', 'trace', 'loud')),
};
const OPTIONAL_ANNOTATIONS = Object.keys(ANNOTATION_VALUES).filter(
  (k) => k !== ANNOTATIONS.inject && k !== ANNOTATIONS.status,
);

interface Case {
  body: Obj;
  optIn: OptIn;
  config: InjectorConfig;
}

const CONFIGS: InjectorConfig[] = [
  DEFAULT_INJECTOR_CONFIG,
  { ...DEFAULT_INJECTOR_CONFIG, sidecarMode: 'legacy' },
  {
    ...DEFAULT_INJECTOR_CONFIG,
    allowedReloadHosts: 'any',
    port: 8080,
    resources: {},
    imagePullPolicy: 'IfNotPresent',
    reloaderLogLevel: 'debug',
  },
];

/**
 * One generated case. Everything is drawn at once (no fc.chain, which builds new arbitraries per value and would
 * dominate the run time); references between parts (mounts to volumes, annotations to volumes and containers) are
 * indices resolved when the pod is assembled.
 */
const caseArb: fc.Arbitrary<Case> = fc
  .record({
    volumes: fc.uniqueArray(fc.tuple(volumeName, volumeSource), { selector: ([n]) => n, maxLength: 6 }),
    tokenVolume: fc.constantFrom('kube-api-access-x7k2p', 'custom-token', undefined),
    initContainers: fc.array(initContainer, { maxLength: 2 }),
    containers: fc.array(appContainer, { minLength: 1, maxLength: 3 }),
    ephemeralContainers: fc.array(ephemeralContainer, { maxLength: 1 }),
    containerNames: fc.uniqueArray(containerName, { minLength: 6, maxLength: 6 }),
    metadata: fc.record(
      {
        name: dns,
        generateName: dns.map((n) => `${n}-`),
        namespace: fc.constantFrom('shop', 'default'),
        labels: fc.dictionary(foreignKey, fc.oneof(dns, oddString), { maxKeys: 3 }),
        uid: fc.uuid(),
        ownerReferences: fc.constant([
          {
            apiVersion: 'apps/v1',
            kind: 'ReplicaSet',
            name: 'rs',
            uid: '0b9f2a55-1d6f-4f0c-9d1b-2f0e6f1c3e11',
            controller: true,
          },
        ]),
      },
      { requiredKeys: [] },
    ),
    spec: fc.record(
      {
        serviceAccountName: dns,
        automountServiceAccountToken: fc.boolean(),
        hostNetwork: fc.boolean(),
        restartPolicy: fc.constantFrom('Always', 'OnFailure', 'Never'),
        nodeSelector: fc.dictionary(foreignKey, dns, { maxKeys: 2 }),
        // A field this code does not model; it must survive untouched.
        futureField: fc.jsonValue({ maxDepth: 2 }),
      },
      { requiredKeys: [] },
    ),
    ours: fc.subarray(OPTIONAL_ANNOTATIONS, { maxLength: 4 }),
    values: fc.record(ANNOTATION_VALUES),
    status: fc.oneof(
      { weight: 15, arbitrary: fc.constant(false) },
      { weight: 1, arbitrary: fc.constant(true) },
    ),
    inject: fc.oneof(
      { weight: 8, arbitrary: fc.constant(true) },
      { weight: 1, arbitrary: fc.constant(false) },
    ),
    foreign: fc.dictionary(foreignKey, annotationOdd, { maxKeys: 3 }),
    envelope: fc.record({
      uid: fc.oneof(
        { weight: 9, arbitrary: fc.uuid() },
        { weight: 1, arbitrary: oddString.filter((x) => x !== '') },
      ),
      kind: fc.oneof(
        { weight: 20, arbitrary: fc.constant({ group: '', version: 'v1', kind: 'Pod' }) },
        { weight: 1, arbitrary: fc.constant({ group: 'apps', version: 'v1', kind: 'Deployment' }) },
      ),
      operation: fc.oneof(
        { weight: 20, arbitrary: fc.constant('CREATE') },
        { weight: 1, arbitrary: fc.constantFrom('UPDATE', 'DELETE', 'CONNECT') },
      ),
      subResource: fc.oneof(
        { weight: 30, arbitrary: fc.constant(undefined) },
        { weight: 1, arbitrary: fc.constantFrom('status', 'ephemeralcontainers') },
      ),
      namespace: fc.option(fc.constantFrom('shop', 'default'), { nil: undefined }),
      dryRun: fc.boolean(),
    }),
    optIn: fc.constantFrom<OptIn>('annotation', 'namespace'),
    config: fc.constantFrom(...CONFIGS),
  })
  .map((g): Case => {
    const volumes = g.volumes
      .filter(([n]) => n !== g.tokenVolume)
      .map(([name, source]) => ({ name, ...source }));
    const appVolumes = volumes.map((v) => v.name);
    if (g.tokenVolume) volumes.push(apiAccessVolume(g.tokenVolume));
    let nameIndex = 0;
    // Names, mounts resolved; what the ServiceAccount admission step adds before webhooks run (the token mount).
    const build = (c: Obj, withToken: boolean): Obj => {
      const resolved: Obj[] = ((c.volumeMounts as Array<Obj & { volume: number }>) ?? []).flatMap(
        ({ volume, ...m }) =>
          appVolumes.length ? [{ ...m, name: appVolumes[volume % appVolumes.length] }] : [],
      );
      if (withToken && g.tokenVolume)
        resolved.push({ name: g.tokenVolume, mountPath: TOKEN_MOUNT_PATH, readOnly: true });
      const { volumeMounts: _, ...rest } = c;
      return {
        name: g.containerNames[nameIndex++],
        ...rest,
        ...(resolved.length ? { volumeMounts: resolved } : {}),
      };
    };
    const initContainers = g.initContainers.map((c) => build(c, true));
    const containers = g.containers.map((c) => build(c, true));
    const ephemeralContainers = g.ephemeralContainers.map((c) => build(c, false));
    const converted = volumes.filter((v) => 'secret' in v || 'configMap' in v).map((v) => v.name);
    const podContainers = [...initContainers, ...containers].map((c) => c.name as string);
    const resolve = (v: AnnotationValue): string => {
      if (typeof v === 'string') return v;
      const pool = v.of === 'volumes' ? converted : podContainers;
      return v.list
        .map((r) => ('name' in r ? r.name : pool.length ? pool[r.ref % pool.length] : 'none'))
        .join(',');
    };
    const chosen = [
      ...(g.inject ? [ANNOTATIONS.inject] : []),
      ...(g.status ? [ANNOTATIONS.status] : []),
      ...g.ours,
    ];
    const annotations: Record<string, string> = { ...g.foreign };
    for (const key of chosen) annotations[key] = resolve(g.values[key]!);
    const pod: Obj = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { ...g.metadata, ...(Object.keys(annotations).length ? { annotations } : {}) },
      spec: {
        ...g.spec,
        containers,
        ...(initContainers.length ? { initContainers } : {}),
        ...(ephemeralContainers.length ? { ephemeralContainers } : {}),
        ...(volumes.length ? { volumes } : {}),
      },
    };
    const request: Obj = {
      uid: g.envelope.uid,
      kind: g.envelope.kind,
      resource: { group: '', version: 'v1', resource: 'pods' },
      operation: g.envelope.operation,
      userInfo: { username: 'system:serviceaccount:kube-system:replicaset-controller' },
      object: pod,
      oldObject: null,
      dryRun: g.envelope.dryRun,
    };
    if (g.envelope.namespace !== undefined) request.namespace = g.envelope.namespace;
    if (g.envelope.subResource !== undefined) request.subResource = g.envelope.subResource;
    return {
      body: { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request },
      optIn: g.optIn,
      config: g.config,
    };
  });

// ---------- checks ----------

interface Checked {
  decision: 'injected' | 'allowed' | 'denied' | 'rejected';
}

/** The answer is a valid AdmissionReview (for the request's uid) or a 400 with a message. */
function checkEnvelope(status: number, answer: unknown, uid: unknown): Obj | undefined {
  if (status !== 200) {
    assert.ok(status >= 400 && status < 500, `status ${status}`);
    assert.equal(typeof (answer as Obj).message, 'string');
    assert.notEqual((answer as { message: string }).message, '');
    return undefined;
  }
  const body = answer as Obj;
  assert.equal(body.apiVersion, 'admission.k8s.io/v1');
  assert.equal(body.kind, 'AdmissionReview');
  const response = body.response as Obj;
  assert.equal(response.uid, uid);
  assert.equal(typeof response.allowed, 'boolean');
  if (response.warnings !== undefined) {
    assert.ok(
      Array.isArray(response.warnings) &&
        response.warnings.every((w) => typeof w === 'string' && w.length > 0),
    );
  }
  if (!response.allowed) {
    const st = response.status as { code: number; message: string };
    assert.ok(st.code >= 400 && st.code < 500);
    assert.ok(typeof st.message === 'string' && st.message.length > 0);
    assert.equal(response.patch, undefined);
  }
  assert.equal(response.patchType === 'JSONPatch', response.patch !== undefined);
  return response;
}

function checkCase(c: Case, status: number, answer: unknown): Checked {
  const request = c.body.request as Obj;
  const response = checkEnvelope(status, answer, request.uid);
  if (!response) return { decision: 'rejected' };
  if (!response.allowed) return { decision: 'denied' };
  if (response.patch === undefined) return { decision: 'allowed' };

  const input = request.object as Obj;
  assert.deepEqual(validatePod(input), [], 'the generator made a valid pod');
  const ops = JSON.parse(Buffer.from(response.patch as string, 'base64').toString('utf8')) as unknown;
  assert.ok(Array.isArray(ops) && ops.length > 0);
  const pod = structuredClone(input);
  const errors = applyPatch(pod, ops as never).filter((e) => e !== null);
  assert.deepEqual(errors.map(String), [], 'the patch applies with rfc6902');
  assert.deepEqual(validatePod(pod), [], 'the patched pod is valid');
  assert.deepEqual(
    (pod.spec as Obj).futureField,
    (input.spec as Obj).futureField,
    'unmodelled fields survive',
  );
  assert.deepEqual(
    Object.entries(((input.metadata as Obj).annotations ?? {}) as Obj).filter(
      ([k]) => !k.startsWith('config-reloader.io/'),
    ),
    Object.entries(((pod.metadata as Obj).annotations ?? {}) as Obj).filter(
      ([k]) => !k.startsWith('config-reloader.io/'),
    ),
    'other annotations survive, `/` and `~` in their keys included',
  );
  // The sidecar's command line is the reloader's contract: every --source parses.
  const spec = pod.spec as { initContainers?: Obj[]; containers: Obj[] };
  const sidecars = [...(spec.initContainers ?? []), ...spec.containers].filter((x) =>
    String(x.name).startsWith('config-reloader'),
  );
  assert.ok(sidecars.length > 0, 'a sidecar was added');
  for (const sidecar of sidecars) {
    for (const arg of sidecar.args as string[]) {
      if (arg.startsWith('--source='))
        assert.doesNotThrow(() => parseSourceSpec(arg.slice('--source='.length)), arg);
    }
  }
  // A second pass (the other route, or a re-run of inject) never patches again.
  for (const optIn of ['annotation', 'namespace'] as const) {
    const again = review(
      { ...c.body, request: { ...request, uid: 'second-pass', object: pod } },
      optIn,
      c.config,
    );
    assert.equal(again.statusCode, 200);
    if (again.statusCode === 200) {
      assert.equal(again.body.response.allowed, true);
      assert.equal(again.body.response.patch, undefined, 'a second pass patched again');
    }
  }
  return { decision: 'injected' };
}

/** Whether any string in the value is not well-formed UTF-16 (a lone surrogate). */
function hasLoneSurrogate(value: unknown): boolean {
  if (typeof value === 'string') return !value.isWellFormed();
  if (typeof value !== 'object' || value === null) return false;
  return Object.entries(value).some(([k, v]) => !k.isWellFormed() || hasLoneSurrogate(v));
}

/** No generated input, lone surrogates included, may make the webhook fail internally. */
function inProcess(c: Case, internalErrors: { count: number }): Checked {
  const answer = review(c.body, c.optIn, c.config);
  if (answer.statusCode === 200 && answer.summary.decision === 'error') {
    internalErrors.count++;
    assert.fail(
      `internal error (surrogates in input: ${hasLoneSurrogate(c.body)}): ${String(answer.summary.error)}`,
    );
  }
  return checkCase(
    c,
    answer.statusCode,
    answer.statusCode === 200 ? answer.body : { message: answer.message },
  );
}

// ---------- bodies that are not well-formed reviews ----------

const mangled: fc.Arbitrary<{ body: Buffer; contentType: string }> = fc.oneof(
  // Truncated at any point.
  fc.tuple(caseArb, fc.double({ min: 0, max: 1, noNaN: true })).map(([c, at]) => {
    const text = JSON.stringify(c.body);
    return {
      body: Buffer.from(text.slice(0, Math.floor(text.length * at))),
      contentType: 'application/json',
    };
  }),
  // Bytes flipped.
  fc
    .tuple(
      caseArb,
      fc.array(fc.tuple(fc.double({ min: 0, max: 1, noNaN: true }), fc.integer({ min: 0, max: 255 })), {
        minLength: 1,
        maxLength: 4,
      }),
    )
    .map(([c, flips]) => {
      const buf = Buffer.from(JSON.stringify(c.body));
      for (const [at, byte] of flips) buf[Math.floor(at * (buf.length - 1))] = byte;
      return { body: buf, contentType: 'application/json' };
    }),
  // Any JSON at all, and envelopes with a wrong part.
  fc
    .jsonValue({ maxDepth: 4 })
    .map((v) => ({ body: Buffer.from(JSON.stringify(v) ?? 'null'), contentType: 'application/json' })),
  fc
    .record(
      {
        apiVersion: fc.constantFrom('admission.k8s.io/v1', 'admission.k8s.io/v1beta1', 'v1'),
        kind: fc.constantFrom('AdmissionReview', 'Pod'),
        request: fc.jsonValue({ maxDepth: 3 }),
      },
      { requiredKeys: [] },
    )
    .map((v) => ({
      body: Buffer.from(JSON.stringify(v)),
      contentType: 'application/json',
    })),
  fc
    .constantFrom(
      '',
      'null',
      '[]',
      '{"__proto__":{"polluted":true},"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u"}}',
      '{"constructor":{"prototype":{"polluted":true}}}',
      `${'['.repeat(50_000)}${']'.repeat(50_000)}`,
      `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":${'{"a":'.repeat(20_000)}1${'}'.repeat(20_000)}}`,
      '\uFEFF{}',
    )
    .map((s) => ({ body: Buffer.from(s), contentType: 'application/json' })),
  // Wrong or odd content types.
  fc
    .tuple(
      fc.constantFrom(
        'text/plain',
        'application/x-www-form-urlencoded',
        'application/json; charset=latin1',
        'application/yaml',
        '',
      ),
      fc.string(),
    )
    .map(([contentType, s]) => ({ body: Buffer.from(s), contentType })),
  // Not UTF-8.
  fc
    .uint8Array({ minLength: 1, maxLength: 64 })
    .map((b) => ({ body: Buffer.from(b), contentType: 'application/json' })),
);

// ---------- HTTPS ----------

interface Reply {
  status: number;
  body: string;
}

function post(agent: Agent, url: string, body: Buffer, contentType: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = contentType ? { 'content-type': contentType } : {};
    const req = request(url, { method: 'POST', agent, headers, timeout: 30_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
      );
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end(body);
  });
}

/** Runs `work` over `items` with at most `limit` in flight. */
async function inParallel<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: limit }, async () => {
      while (next < items.length) await work(items[next++]!);
    }),
  );
}

void describe('webhook fuzzing', () => {
  void it(`${IN_PROCESS_RUNS} generated AdmissionReviews through review(): valid answers, valid patches, idempotent (seed ${SEED})`, (t) => {
    const counts = { injected: 0, allowed: 0, denied: 0, rejected: 0 };
    const internalErrors = { count: 0 };
    fc.assert(
      fc.property(caseArb, (c) => {
        counts[inProcess(c, internalErrors).decision]++;
      }),
      { seed: SEED, numRuns: IN_PROCESS_RUNS },
    );
    t.diagnostic(`decisions: ${JSON.stringify(counts)}; internal errors: ${internalErrors.count}`);
    // The generator must reach every branch in good measure, or the fuzzing proves little.
    assert.ok(counts.injected >= IN_PROCESS_RUNS / 5, `only ${counts.injected} injected`);
    assert.ok(counts.denied >= IN_PROCESS_RUNS / 20, `only ${counts.denied} denied`);
    assert.ok(counts.allowed >= IN_PROCESS_RUNS / 20, `only ${counts.allowed} allowed unpatched`);
  });

  void describe('over HTTPS', () => {
    let server: RunningServer;
    let ca: string;
    let agent: Agent;

    before(async () => {
      ({ server, ca } = await startTestWebhook());
      agent = new Agent({ ca, keepAlive: true, maxSockets: 8 });
    });

    after(async () => {
      agent.destroy();
      await server.close();
    });

    void it(`${HTTPS_SAMPLE} generated reviews: the same answers as in-process, all checks hold`, async () => {
      const cases = fc.sample(
        caseArb.map((c) => ({ ...c, config: DEFAULT_INJECTOR_CONFIG })),
        { seed: SEED + 1, numRuns: HTTPS_SAMPLE },
      );
      const decisions = new Set<string>();
      await inParallel(cases, 8, async (c) => {
        const path = c.optIn === 'annotation' ? '/mutate' : '/mutate/namespace';
        const text = JSON.stringify(c.body);
        const reply = await post(agent, `${server.url}${path}`, Buffer.from(text), 'application/json');
        const answer = JSON.parse(reply.body) as unknown;
        decisions.add(checkCase(c, reply.status, answer).decision);
        // Fastify refuses any "__proto__" key (prototype poisoning) with a 400 before the review. A real review
        // never has one: every map of a Pod has validated keys, and the API server drops unknown fields.
        if (/"__proto__"\s*:/.test(text)) {
          assert.equal(reply.status, 400);
          return;
        }
        const local = review(structuredClone(c.body), c.optIn, c.config);
        assert.deepEqual(
          answer,
          local.statusCode === 200 ? local.body : { message: local.message },
          'same answer over HTTPS',
        );
      });
      assert.ok(
        decisions.has('injected') && decisions.has('denied') && decisions.has('allowed'),
        [...decisions].join(),
      );
    });

    void it('mutated, truncated and malformed bodies: a 4xx with a message or a valid review, and the server keeps answering', async () => {
      const bodies = fc.sample(mangled, { seed: SEED + 2, numRuns: HTTPS_SAMPLE });
      const statuses = new Map<number, number>();
      await inParallel(bodies, 8, async ({ body, contentType }) => {
        const reply = await post(agent, `${server.url}/mutate`, body, contentType);
        statuses.set(reply.status, (statuses.get(reply.status) ?? 0) + 1);
        let answer: unknown;
        assert.doesNotThrow(
          () => (answer = JSON.parse(reply.body)),
          `status ${reply.status}: the answer is JSON`,
        );
        const uid = (() => {
          try {
            return (JSON.parse(body.toString('utf8')) as { request: { uid: unknown } }).request.uid;
          } catch {
            return undefined;
          }
        })();
        checkEnvelope(reply.status, answer, uid);
      });
      t_assertNoServerErrors(statuses);
      assert.equal(
        (await post(agent, `${server.url}/mutate`, Buffer.from('{}'), 'application/json')).status,
        400,
      );
    });

    void it('garbage on the TLS connection and in the HTTP framing does not stop the server', async () => {
      const port = Number(new URL(server.url).port);
      const garbage = [
        'GARBAGE\r\n\r\n',
        'POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n',
        'POST /mutate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n',
        'POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n{}',
        `GET /${'a'.repeat(100_000)} HTTP/1.1\r\nHost: x\r\n\r\n`,
        '\u0000\u0001\u0002\u00ff',
      ];
      for (const bytes of garbage) {
        await new Promise<void>((resolve) => {
          const socket = connect({ host: '127.0.0.1', port, ca, servername: 'localhost' }, () =>
            socket.end(bytes, 'latin1'),
          );
          socket.on('data', () => {});
          socket.on('error', () => resolve());
          socket.on('close', () => resolve());
        });
      }
      // And plain text where TLS is expected.
      const { connect: tcp } = await import('node:net');
      await new Promise<void>((resolve) => {
        const socket = tcp(port, '127.0.0.1', () => socket.end('POST /mutate HTTP/1.1\r\n\r\n'));
        socket.on('data', () => {});
        socket.on('error', () => resolve());
        socket.on('close', () => resolve());
      });
      const ok = await post(
        agent,
        `${server.url}/mutate`,
        Buffer.from(JSON.stringify(fc.sample(caseArb, { seed: SEED, numRuns: 1 })[0]!.body)),
        'application/json',
      );
      assert.equal(ok.status, 200);
    });
  });
});

/** A 5xx is never a valid answer to a bad body. */
function t_assertNoServerErrors(statuses: Map<number, number>): void {
  for (const status of statuses.keys()) assert.ok(status < 500, `status ${status} for a malformed body`);
}
