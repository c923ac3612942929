/**
 * A stand-in for the kubelet and the container runtime, just enough to run the injected reloader container as
 * a real process from the stored Pod: its volumes become temp dirs (one per volume, shared by every container
 * that mounts it), its env is resolved from the Pod, and the image's entrypoint (this project's CLI) runs its
 * args. What differs from a node is translated explicitly, in `containerArgs`: paths inside the container map
 * to the temp dirs, the pod's loopback ports to the host's.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { V1Container, V1Pod, V1Volume } from '@kubernetes/client-node';
import { formatSourceSpec, parseSourceSpec } from '../../src/shared/source-spec.ts';
import { CLI, REPO_ROOT } from '../support/cli.ts';
import type { Kube } from './kube.ts';

const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface RunningContainer {
  readonly child: ChildProcess;
  /** JSON log lines so far. */
  logs(): Array<Record<string, unknown>>;
  stderr(): string;
  waitForLog(
    match: (line: Record<string, unknown>) => boolean,
    timeoutMs?: number,
  ): Promise<Record<string, unknown>>;
  /** SIGTERM, as the kubelet does, then wait for the exit. */
  stop(): Promise<void>;
}

export interface PodSandbox {
  /** Where a path inside a container is on this machine: under one of its mounts, or in its own empty root. */
  hostPath(containerName: string, path: string): string;
  /**
   * Starts a container of the pod whose image is this project's (the CLI is the entrypoint). `ports` maps a
   * port on the pod's loopback to the host port that stands in for it (the reload URL's app port).
   */
  start(containerName: string, opts?: { ports?: Record<number, number> }): RunningContainer;
  /**
   * A container's environment as the kubelet resolves it from the pod (`value` and `fieldRef`), for an app this
   * machine runs in that container's place.
   */
  env(containerName: string): Record<string, string>;
  /**
   * The same, also resolving what the kubelet reads from the API when it starts the container: `envFrom`
   * (secretRef, configMapRef) and `valueFrom` secretKeyRef and configMapKeyRef, as they are now (a restarted
   * container gets the objects' current data).
   */
  envFromApi(containerName: string): Promise<Record<string, string>>;
  close(): Promise<void>;
}

function containerOf(pod: V1Pod, name: string): V1Container {
  const all = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])];
  const found = all.find((c) => c.name === name);
  if (!found)
    throw new Error(
      `pod ${pod.metadata?.name} has no container "${name}" (has ${all.map((c) => c.name).join(', ')})`,
    );
  return found;
}

/** A downward-API field of the pod, as the kubelet resolves `fieldRef`. */
function fieldOf(pod: V1Pod, fieldPath: string): string {
  const fields: Record<string, string | undefined> = {
    'metadata.name': pod.metadata?.name,
    'metadata.namespace': pod.metadata?.namespace,
    'metadata.uid': pod.metadata?.uid,
    'spec.serviceAccountName': pod.spec?.serviceAccountName,
    'spec.nodeName': pod.spec?.nodeName ?? 'e2e-node',
    'status.podIP': '127.0.0.1',
    'status.hostIP': '127.0.0.1',
  };
  const label = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(fieldPath);
  if (label) return (pod.metadata?.[label[1] as 'labels' | 'annotations'] ?? {})[label[2] as string] ?? '';
  const value = fields[fieldPath];
  if (value === undefined) throw new Error(`the e2e kubelet cannot resolve fieldRef ${fieldPath}`);
  return value;
}

/** Writes one volume's content as the kubelet would (plain files; the atomic layout is not the point here). */
async function populateVolume(
  kube: Kube,
  pod: V1Pod,
  volume: V1Volume,
  dir: string,
  token: string,
): Promise<void> {
  const namespace = pod.metadata?.namespace as string;
  const write = async (path: string, content: string | Buffer): Promise<void> => {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), content);
  };
  const keys = (
    data: Record<string, string> | undefined,
    items: Array<{ key: string; path: string }> | undefined,
    decode: boolean,
  ) =>
    (items ?? Object.keys(data ?? {}).map((key) => ({ key, path: key }))).map((i) => ({
      path: i.path,
      content: decode ? Buffer.from(data?.[i.key] ?? '', 'base64') : (data?.[i.key] ?? ''),
    }));
  const fromConfigMap = async (name: string, items?: Array<{ key: string; path: string }>) => {
    const cm = await kube.core.readNamespacedConfigMap({ namespace, name });
    for (const f of keys(cm.data, items, false)) await write(f.path, f.content);
  };
  const fromSecret = async (name: string, items?: Array<{ key: string; path: string }>) => {
    const secret = await kube.core.readNamespacedSecret({ namespace, name });
    for (const f of keys(secret.data, items, true)) await write(f.path, f.content);
  };
  if (volume.emptyDir) return;
  if (volume.secret) return fromSecret(volume.secret.secretName as string, volume.secret.items);
  if (volume.configMap) return fromConfigMap(volume.configMap.name as string, volume.configMap.items);
  if (volume.projected) {
    for (const source of volume.projected.sources ?? []) {
      if (source.serviceAccountToken) await write(source.serviceAccountToken.path, token);
      else if (source.configMap) await fromConfigMap(source.configMap.name as string, source.configMap.items);
      else if (source.secret) await fromSecret(source.secret.name as string, source.secret.items);
      else if (source.downwardAPI)
        for (const item of source.downwardAPI.items ?? [])
          await write(item.path, fieldOf(pod, item.fieldRef?.fieldPath ?? ''));
      else throw new Error(`the e2e kubelet cannot populate projected source ${JSON.stringify(source)}`);
    }
    return;
  }
  throw new Error(
    `the e2e kubelet cannot populate volume "${volume.name}" (${Object.keys(volume).join(', ')})`,
  );
}

/** $(VAR) references in args, expanded from the container's env as the kubelet does; $$ escapes. */
function expand(text: string, env: Record<string, string>): string {
  return text.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, name: string | undefined) =>
    m === '$$' ? '$' : name !== undefined && name in env ? (env[name] as string) : m,
  );
}

/**
 * Prepares the pod's volumes. `token` is what the kubelet would get from the TokenRequest API for the pod's
 * ServiceAccount; everything else (ConfigMaps, Secrets) is read through the API with `kube`.
 */
export async function preparePod(kube: Kube, pod: V1Pod, token: string): Promise<PodSandbox> {
  const root = await mkdtemp(join(tmpdir(), `e2e-pod-${pod.metadata?.name}-`));
  const volumeDirs = new Map<string, string>();
  for (const volume of pod.spec?.volumes ?? []) {
    const dir = join(root, 'volumes', volume.name);
    await mkdir(dir, { recursive: true });
    await populateVolume(kube, pod, volume, dir, token);
    volumeDirs.set(volume.name, dir);
  }
  const running = new Set<RunningContainer>();

  const hostPath = (containerName: string, path: string): string => {
    const mounts = [...(containerOf(pod, containerName).volumeMounts ?? [])].sort(
      (a, b) => b.mountPath.length - a.mountPath.length,
    );
    for (const m of mounts) {
      const mountPath = m.mountPath.replace(/\/+$/, '');
      if (path !== mountPath && !path.startsWith(`${mountPath}/`)) continue;
      const dir = volumeDirs.get(m.name);
      if (!dir)
        throw new Error(`container ${containerName} mounts "${m.name}", which is no volume of the pod`);
      return join(dir, m.subPath ?? '', path.slice(mountPath.length));
    }
    return join(root, 'rootfs', containerName, path);
  };

  const containerEnv = (container: V1Container): Record<string, string> => {
    const server = new URL(kube.server);
    // The kubelet gives every container the `kubernetes` Service's address.
    const env: Record<string, string> = {
      KUBERNETES_SERVICE_HOST: server.hostname,
      KUBERNETES_SERVICE_PORT: server.port || '443',
    };
    for (const e of container.env ?? []) {
      if (e.value !== undefined) env[e.name] = expand(e.value, env);
      else if (e.valueFrom?.fieldRef) env[e.name] = fieldOf(pod, e.valueFrom.fieldRef.fieldPath);
      else throw new Error(`the e2e kubelet cannot resolve env ${e.name}`);
    }
    return env;
  };

  /** The container's args, translated from the pod's filesystem and network to this machine's. */
  const containerArgs = (
    container: V1Container,
    env: Record<string, string>,
    ports: Record<number, number>,
  ): string[] => {
    const args = (container.args ?? [])
      .map((a) => expand(a, env))
      .map((arg) => {
        const [flag, value] = arg.split(/=(.*)/s, 2) as [string, string | undefined];
        if (value === undefined) return arg;
        if (flag === '--source') {
          const spec = parseSourceSpec(value);
          return `--source=${formatSourceSpec({ ...spec, dir: hostPath(container.name, spec.dir) })}`;
        }
        // Every pod has its own network namespace; on this machine the port must be a free one.
        if (flag === '--listen') return '--listen=127.0.0.1:0';
        // The app's URLs on the pod's loopback: its reload endpoint and the metrics that confirm a reload.
        if (flag === '--reload-url' || flag === '--confirm-metrics-url') {
          const url = new URL(value);
          const hostPort = ports[Number(url.port || (url.protocol === 'https:' ? 443 : 80))];
          if (hostPort !== undefined) url.port = String(hostPort);
          return `${flag}=${url.href}`;
        }
        return arg;
      });
    // The in-cluster credentials are read from the standard path, which is somewhere else on this machine.
    return [...args, `--serviceaccount-dir=${hostPath(container.name, SERVICE_ACCOUNT_DIR)}`];
  };

  const namespace = pod.metadata?.namespace as string;
  const objectData = async (kind: 'secret' | 'configmap', name: string): Promise<Record<string, string>> => {
    if (kind === 'configmap')
      return (await kube.core.readNamespacedConfigMap({ namespace, name })).data ?? {};
    const data = (await kube.core.readNamespacedSecret({ namespace, name })).data ?? {};
    return Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v, 'base64').toString()]));
  };
  const envFromApi = async (container: V1Container): Promise<Record<string, string>> => {
    const env: Record<string, string> = {};
    for (const from of container.envFrom ?? []) {
      const ref = from.secretRef ?? from.configMapRef;
      if (!ref?.name) throw new Error(`the e2e kubelet cannot resolve envFrom ${JSON.stringify(from)}`);
      const data = await objectData(from.secretRef ? 'secret' : 'configmap', ref.name);
      for (const [k, v] of Object.entries(data)) env[`${from.prefix ?? ''}${k}`] = v;
    }
    const plain = {
      ...container,
      env: (container.env ?? []).filter((e) => !e.valueFrom?.secretKeyRef && !e.valueFrom?.configMapKeyRef),
    };
    Object.assign(env, containerEnv(plain));
    for (const e of container.env ?? []) {
      const ref = e.valueFrom?.secretKeyRef ?? e.valueFrom?.configMapKeyRef;
      if (!ref) continue;
      const value = (
        await objectData(e.valueFrom?.secretKeyRef ? 'secret' : 'configmap', ref.name as string)
      )[ref.key];
      if (value === undefined) throw new Error(`env ${e.name}: ${ref.name} has no key ${ref.key}`);
      env[e.name] = value;
    }
    return env;
  };

  return {
    hostPath,
    env: (containerName) => containerEnv(containerOf(pod, containerName)),
    envFromApi: (containerName) => envFromApi(containerOf(pod, containerName)),
    start: (containerName, opts = {}) => {
      const container = containerOf(pod, containerName);
      if (container.command)
        throw new Error(
          `container ${containerName} overrides the entrypoint; the e2e kubelet runs only the CLI`,
        );
      const env = containerEnv(container);
      const child = spawn(process.execPath, [CLI, ...containerArgs(container, env, opts.ports ?? {})], {
        cwd: REPO_ROOT,
        env: { PATH: process.env.PATH ?? '/usr/bin', ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      const waiters = new Set<() => void>();
      child.stdout.on('data', (c: Buffer) => {
        out += c.toString();
        for (const w of waiters) w();
      });
      child.stderr.on('data', (c: Buffer) => (err += c.toString()));
      const exited = new Promise<void>((resolve) =>
        child.on('exit', () => {
          for (const w of waiters) w();
          resolve();
        }),
      );
      const logs = (): Array<Record<string, unknown>> =>
        out
          .split('\n')
          .filter((l) => l.startsWith('{'))
          .map((l) => JSON.parse(l) as Record<string, unknown>);
      const handle: RunningContainer = {
        child,
        logs,
        stderr: () => err,
        waitForLog: (match, timeoutMs = 20_000) =>
          new Promise((resolve, reject) => {
            const check = (): void => {
              const found = logs().find(match);
              if (found) done(() => resolve(found));
              else if (child.exitCode !== null || child.signalCode !== null)
                done(() =>
                  reject(
                    new Error(
                      `${containerName} exited before the log line; stderr: ${err}; stdout: ${out.slice(-2000)}`,
                    ),
                  ),
                );
            };
            const done = (then: () => void): void => {
              clearTimeout(timer);
              waiters.delete(check);
              then();
            };
            const timer = setTimeout(
              () =>
                done(() =>
                  reject(
                    new Error(
                      `timed out waiting for a log line of ${containerName}; stdout: ${out.slice(-2000)}; stderr: ${err}`,
                    ),
                  ),
                ),
              timeoutMs,
            );
            waiters.add(check);
            check();
          }),
        stop: async () => {
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
          await exited;
          running.delete(handle);
        },
      };
      running.add(handle);
      return handle;
    },
    close: async () => {
      for (const c of [...running]) await c.stop();
      await rm(root, { recursive: true, force: true });
    },
  };
}
