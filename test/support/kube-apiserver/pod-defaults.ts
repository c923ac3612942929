/**
 * What the real server fills in on a Pod before anyone else sees it (the v1 defaulting functions, the Priority
 * and DefaultTolerationSeconds admission plugins, and the pod strategy's PrepareForCreate), for the fields an
 * injector can trip over. Idempotent: it runs again after every webhook patch, as the real one re-decodes.
 */

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const objs = (v: unknown): Obj[] => (Array.isArray(v) ? v.filter(isObj) : []);

const CONTAINER_LISTS = ['initContainers', 'containers', 'ephemeralContainers'] as const;
const PROBES = ['livenessProbe', 'readinessProbe', 'startupProbe'] as const;
const FILE_MODE = 0o644;

export function defaultPod(pod: Obj): void {
  const spec = isObj(pod.spec) ? pod.spec : (pod.spec = {});
  spec.restartPolicy ??= 'Always';
  spec.terminationGracePeriodSeconds ??= 30;
  spec.dnsPolicy ??= 'ClusterFirst';
  spec.securityContext ??= {};
  spec.schedulerName ??= 'default-scheduler';
  spec.enableServiceLinks ??= true;
  spec.priority ??= 0;
  spec.preemptionPolicy ??= 'PreemptLowerPriority';
  // The v1 API keeps the deprecated field in step with serviceAccountName.
  if (typeof spec.serviceAccountName === 'string' && spec.serviceAccountName !== '')
    spec.serviceAccount = spec.serviceAccountName;
  spec.tolerations = withDefaultTolerations(objs(spec.tolerations));
  for (const volume of objs(spec.volumes)) defaultVolume(volume);
  for (const list of CONTAINER_LISTS)
    for (const container of objs(spec[list])) defaultContainer(container, list === 'ephemeralContainers');
  const status = isObj(pod.status) ? pod.status : (pod.status = {});
  status.phase ??= 'Pending';
  status.qosClass = qosClass(spec);
}

function defaultContainer(c: Obj, ephemeral: boolean): void {
  c.terminationMessagePath ??= '/dev/termination-log';
  c.terminationMessagePolicy ??= 'File';
  c.imagePullPolicy ??= defaultPullPolicy(typeof c.image === 'string' ? c.image : '');
  if (!ephemeral) c.resources ??= {};
  for (const port of objs(c.ports)) port.protocol ??= 'TCP';
  for (const env of objs(c.env)) {
    const from = isObj(env.valueFrom) ? env.valueFrom : undefined;
    if (from && isObj(from.fieldRef)) from.fieldRef.apiVersion ??= 'v1';
  }
  for (const key of PROBES) {
    const probe = c[key];
    if (!isObj(probe)) continue;
    probe.timeoutSeconds ??= 1;
    probe.periodSeconds ??= 10;
    probe.successThreshold ??= 1;
    probe.failureThreshold ??= 3;
    if (isObj(probe.httpGet)) probe.httpGet.scheme ??= 'HTTP';
  }
}

/** Always for `:latest` or no tag (unless pinned by digest), else IfNotPresent: the real rule. */
export function defaultPullPolicy(image: string): string {
  if (image.includes('@')) return 'IfNotPresent';
  const lastPart = image.slice(image.lastIndexOf('/') + 1);
  const colon = lastPart.lastIndexOf(':');
  if (colon < 0) return 'Always';
  return lastPart.slice(colon + 1) === 'latest' ? 'Always' : 'IfNotPresent';
}

function defaultVolume(volume: Obj): void {
  for (const key of ['secret', 'configMap', 'downwardAPI', 'projected'] as const) {
    const source = volume[key];
    if (isObj(source)) source.defaultMode ??= FILE_MODE;
  }
  if (isObj(volume.projected))
    for (const s of objs(volume.projected.sources)) {
      if (isObj(s.serviceAccountToken)) s.serviceAccountToken.expirationSeconds ??= 3600;
      if (isObj(s.downwardAPI))
        for (const item of objs(s.downwardAPI.items))
          if (isObj(item.fieldRef)) item.fieldRef.apiVersion ??= 'v1';
    }
  if (isObj(volume.downwardAPI))
    for (const item of objs(volume.downwardAPI.items))
      if (isObj(item.fieldRef)) item.fieldRef.apiVersion ??= 'v1';
}

/** The DefaultTolerationSeconds admission plugin: 300 s for not-ready and unreachable nodes, unless set. */
function withDefaultTolerations(tolerations: Obj[]): Obj[] {
  const result = [...tolerations];
  for (const key of ['node.kubernetes.io/not-ready', 'node.kubernetes.io/unreachable']) {
    const present = result.some(
      (t) =>
        (t.key === key || ((t.key ?? '') === '' && t.operator === 'Exists')) &&
        (t.effect === undefined || t.effect === '' || t.effect === 'NoExecute'),
    );
    if (!present) result.push({ key, operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 });
  }
  return result;
}

function qosClass(spec: Obj): string {
  const containers = [...objs(spec.initContainers), ...objs(spec.containers)];
  let any = false;
  let guaranteed = containers.length > 0;
  for (const c of containers) {
    const res = isObj(c.resources) ? c.resources : {};
    const requests = isObj(res.requests) ? res.requests : {};
    const limits = isObj(res.limits) ? res.limits : {};
    if (Object.keys(requests).length > 0 || Object.keys(limits).length > 0) any = true;
    for (const r of ['cpu', 'memory']) {
      if (limits[r] === undefined || (requests[r] !== undefined && requests[r] !== limits[r]))
        guaranteed = false;
    }
  }
  if (!any) return 'BestEffort';
  return guaranteed ? 'Guaranteed' : 'Burstable';
}
