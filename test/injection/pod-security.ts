/**
 * The Pod Security Standard "restricted" (latest), as the API server's PodSecurity admission checks a pod
 * (k8s.io/pod-security-admission/policy: the baseline checks plus the restricted ones), for pods built in unit
 * tests. shareProcessNamespace is in neither level: no check reads it.
 */

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const objs = (v: unknown): Obj[] => (Array.isArray(v) ? v.filter(isObj) : []);
const ctx = (o: Obj): Obj => (isObj(o.securityContext) ? o.securityContext : {});

const BASELINE_CAPABILITIES = new Set([
  'AUDIT_WRITE',
  'CHOWN',
  'DAC_OVERRIDE',
  'FOWNER',
  'FSETID',
  'KILL',
  'MKNOD',
  'NET_BIND_SERVICE',
  'SETFCAP',
  'SETGID',
  'SETPCAP',
  'SETUID',
  'SYS_CHROOT',
]);
const RESTRICTED_VOLUMES = new Set([
  'configMap',
  'csi',
  'downwardAPI',
  'emptyDir',
  'ephemeral',
  'persistentVolumeClaim',
  'projected',
  'secret',
]);
const SAFE_SYSCTLS = new Set([
  'kernel.shm_rmid_forced',
  'net.ipv4.ip_local_port_range',
  'net.ipv4.ip_unprivileged_port_start',
  'net.ipv4.tcp_syncookies',
  'net.ipv4.ping_group_range',
  'net.ipv4.ip_local_reserved_ports',
  'net.ipv4.tcp_keepalive_time',
  'net.ipv4.tcp_fin_timeout',
  'net.ipv4.tcp_keepalive_intvl',
  'net.ipv4.tcp_keepalive_probes',
]);
const SELINUX_TYPES = new Set([
  '',
  'container_t',
  'container_init_t',
  'container_kvm_t',
  'container_engine_t',
]);

/** What breaks the restricted level, one line per finding; empty when the pod passes. */
export function restrictedViolations(pod: Obj): string[] {
  const spec = isObj(pod.spec) ? pod.spec : {};
  const podCtx = ctx(spec);
  const found: string[] = [];
  for (const key of ['hostNetwork', 'hostPID', 'hostIPC'] as const)
    if (spec[key] === true) found.push(`host namespaces: ${key}`);
  for (const volume of objs(spec.volumes)) {
    const kind = Object.keys(volume).find((key) => key !== 'name') ?? '';
    if (kind === 'hostPath') found.push(`hostPath volume "${String(volume.name)}"`);
    if (!RESTRICTED_VOLUMES.has(kind))
      found.push(`restricted volume types: "${String(volume.name)}" is ${kind}`);
  }
  for (const sysctl of objs(podCtx.sysctls))
    if (!SAFE_SYSCTLS.has(String(sysctl.name))) found.push(`sysctl ${String(sysctl.name)}`);
  if (podCtx.runAsUser === 0) found.push('runAsUser 0 (pod)');
  const podSeccomp = isObj(podCtx.seccompProfile) ? podCtx.seccompProfile.type : undefined;
  if (podSeccomp === 'Unconfined') found.push('seccomp Unconfined (pod)');
  const seLinux = (c: Obj, where: string): void => {
    const options = isObj(c.seLinuxOptions) ? c.seLinuxOptions : undefined;
    if (options === undefined) return;
    if (!SELINUX_TYPES.has(String(options.type ?? ''))) found.push(`${where}: seLinuxOptions.type`);
    if (options.user !== undefined || options.role !== undefined)
      found.push(`${where}: seLinuxOptions user/role`);
  };
  seLinux(podCtx, 'pod');
  const containers = ['initContainers', 'containers', 'ephemeralContainers'].flatMap((list) =>
    objs(spec[list]).map((c) => ({ c, where: `${list} "${String(c.name)}"` })),
  );
  const nonRootByPod = podCtx.runAsNonRoot === true;
  for (const { c, where } of containers) {
    const sc = ctx(c);
    if (sc.privileged === true) found.push(`${where}: privileged`);
    if (sc.allowPrivilegeEscalation !== false) found.push(`${where}: allowPrivilegeEscalation is not false`);
    if (sc.procMount !== undefined && sc.procMount !== 'Default') found.push(`${where}: procMount`);
    seLinux(sc, where);
    const runAsNonRoot = sc.runAsNonRoot ?? (nonRootByPod ? true : undefined);
    if (runAsNonRoot !== true) found.push(`${where}: runAsNonRoot is not true`);
    if (sc.runAsUser === 0) found.push(`${where}: runAsUser 0`);
    const seccomp = isObj(sc.seccompProfile) ? sc.seccompProfile.type : podSeccomp;
    if (seccomp !== 'RuntimeDefault' && seccomp !== 'Localhost')
      found.push(`${where}: seccompProfile is not RuntimeDefault or Localhost`);
    const caps = isObj(sc.capabilities) ? sc.capabilities : {};
    const add = (Array.isArray(caps.add) ? caps.add : []).map(String);
    const drop = (Array.isArray(caps.drop) ? caps.drop : []).map(String);
    if (!drop.includes('ALL')) found.push(`${where}: capabilities do not drop ALL`);
    for (const cap of add) {
      if (!BASELINE_CAPABILITIES.has(cap)) found.push(`${where}: adds capability ${cap} (baseline)`);
      if (cap !== 'NET_BIND_SERVICE') found.push(`${where}: adds capability ${cap} (restricted)`);
    }
    for (const port of objs(c.ports))
      if (port.hostPort !== undefined && port.hostPort !== 0) found.push(`${where}: hostPort`);
  }
  return found;
}
