import { existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';

/** A bad command line or configuration value: printed as `error: MESSAGE` with exit code 2, no stack. */
export class UsageError extends Error {}

export type FlagSpec = NonNullable<ParseArgsConfig['options']>;

/** Parses flags strictly; unknown flags and missing values become a UsageError that names the command. */
export function parseFlags<T extends FlagSpec>(command: string, argv: string[], options: T) {
  try {
    return parseArgs({
      args: argv,
      options: { ...options, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: true,
    });
  } catch (err) {
    throw new UsageError(`${(err as Error).message} (see: config-reloader-injector ${command} --help)`);
  }
}

const DURATION_RE = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** `250ms`, `5s`, `2m`, `1h`, or a bare number of seconds, to milliseconds. */
export function parseDuration(flag: string, value: string): number {
  const m = DURATION_RE.exec(value.trim());
  if (!m) throw new UsageError(`--${flag} "${value}" is not a duration such as 500ms, 5s, 2m or 1h`);
  return Math.round(Number(m[1]) * (UNIT_MS[m[2] ?? 's'] as number));
}

/** A TCP port; `allowZero` lets the OS pick one (tests, and servers that log the port they bound). */
export function parsePort(flag: string, value: string, opts: { allowZero?: boolean } = {}): number {
  const n = Number(value);
  const min = opts.allowZero ? 0 : 1;
  if (!/^\d+$/.test(value) || n < min || n > 65535)
    throw new UsageError(`--${flag} "${value}" is not a port number from ${min} to 65535`);
  return n;
}

/** Where the Kubernetes API and its credentials come from, as found by findKubeconfig. */
export type KubeconfigSource =
  | { kind: 'file'; path: string; from: '--kubeconfig' | 'KUBECONFIG' | '~/.kube/config' }
  | { kind: 'in-cluster'; host: string; port: string };

/**
 * The one kubeconfig lookup of the webhook and the reloader: the --kubeconfig flag, then $KUBECONFIG (its first
 * non-empty entry when it lists several; files are not merged), then the in-cluster service account when
 * KUBERNETES_SERVICE_HOST is set, then $HOME/.kube/config when it exists. Explicit choices first; in a pod the
 * pod's own identity before a stray home file; outside a cluster kubectl's default file. Nothing found is a
 * UsageError (exit 2), never a silent default such as client-node's http://localhost:8080.
 *
 * Here and not in either command, with no client library, so the reloader stays lean.
 */
export function findKubeconfig(flag: string | undefined, env: NodeJS.ProcessEnv): KubeconfigSource {
  if (flag) return { kind: 'file', path: flag, from: '--kubeconfig' };
  const fromEnv = env.KUBECONFIG?.split(delimiter).find((p) => p !== '');
  if (fromEnv) return { kind: 'file', path: fromEnv, from: 'KUBECONFIG' };
  const host = env.KUBERNETES_SERVICE_HOST;
  if (host) return { kind: 'in-cluster', host, port: env.KUBERNETES_SERVICE_PORT || '443' };
  // Only $HOME, never os.homedir(): what a test passes as the environment is the whole environment.
  const home = env.HOME ? join(env.HOME, '.kube', 'config') : undefined;
  if (home && existsSync(home)) return { kind: 'file', path: home, from: '~/.kube/config' };
  throw new UsageError(
    'no --kubeconfig, no KUBECONFIG and not running in a cluster (KUBERNETES_SERVICE_HOST is unset), ' +
      `and no ${home ?? '~/.kube/config'}: there is no Kubernetes API to talk to; give --kubeconfig FILE`,
  );
}
