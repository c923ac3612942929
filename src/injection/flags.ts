import { DEFAULT_INJECTOR_CONFIG, LOG_LEVELS, type InjectorConfig } from './config.ts';
import { parseQuantity, quantityProblem } from './quantity.ts';
import { parsePort, UsageError, type FlagSpec } from '../shared/cli.ts';

/** The flags that set the cluster defaults of injection; shared by `webhook` and `inject` so both parse them the same way. */
export const injectorFlags = {
  'reloader-image': { type: 'string' },
  'image-pull-policy': { type: 'string' },
  'sidecar-mode': { type: 'string' },
  'reloader-port': { type: 'string' },
  'cpu-request': { type: 'string' },
  'cpu-limit': { type: 'string' },
  'memory-request': { type: 'string' },
  'memory-limit': { type: 'string' },
  'allow-any-reload-host': { type: 'boolean' },
  'reloader-log-level': { type: 'string' },
} as const satisfies FlagSpec;

const d = DEFAULT_INJECTOR_CONFIG;

/** Help text lines for the flags above, for a command's --help. */
export const INJECTOR_FLAGS_HELP = `Sidecar defaults (pod annotations override most of them, see docs/annotations.md):
  --reloader-image IMAGE       the sidecar's image (default ${d.reloaderImage})
  --image-pull-policy POLICY   Always, IfNotPresent or Never (default: unset, the cluster's default)
  --sidecar-mode MODE          native (restartable init container, Kubernetes >= 1.29) or legacy (default ${d.sidecarMode})
  --reloader-port PORT         the sidecar's health/metrics port; the next free one is used on a clash (default ${d.port})
  --cpu-request QUANTITY       (default ${d.resources.cpuRequest})
  --cpu-limit QUANTITY         (default: none)
  --memory-request QUANTITY    (default ${d.resources.memoryRequest})
  --memory-limit QUANTITY      (default ${d.resources.memoryLimit})
  --allow-any-reload-host      allow reload URLs to any host (default: loopback only, 127.0.0.0/8, ::1, localhost)
  --reloader-log-level LEVEL   ${LOG_LEVELS.join(', ')} (default: the reloader's own)
`;

export type InjectorFlagValues = {
  [K in keyof typeof injectorFlags]?: (typeof injectorFlags)[K]['type'] extends 'boolean' ? boolean : string;
};

const PULL_POLICIES = ['Always', 'IfNotPresent', 'Never'] as const;

/** The injector configuration from parsed flag values; a bad value is a UsageError naming the flag. */
export function injectorConfigFromFlags(values: InjectorFlagValues): InjectorConfig {
  const config: InjectorConfig = {
    ...DEFAULT_INJECTOR_CONFIG,
    resources: { ...DEFAULT_INJECTOR_CONFIG.resources },
    allowedReloadHosts: values['allow-any-reload-host'] === true ? 'any' : 'loopback',
  };
  const image = values['reloader-image'];
  if (image !== undefined) {
    if (!/^[^\s]+$/.test(image))
      throw new UsageError(`--reloader-image "${image}" is not an image reference`);
    config.reloaderImage = image;
  }
  const policy = values['image-pull-policy'];
  if (policy !== undefined) {
    const match = PULL_POLICIES.find((p) => p.toLowerCase() === policy.toLowerCase());
    if (match === undefined)
      throw new UsageError(`--image-pull-policy "${policy}" is not one of ${PULL_POLICIES.join(', ')}`);
    config.imagePullPolicy = match;
  }
  const mode = values['sidecar-mode'];
  if (mode !== undefined) {
    if (mode !== 'native' && mode !== 'legacy')
      throw new UsageError(`--sidecar-mode "${mode}" is neither native nor legacy`);
    config.sidecarMode = mode;
  }
  if (values['reloader-port'] !== undefined)
    config.port = parsePort('reloader-port', values['reloader-port']);
  for (const [flag, key] of [
    ['cpu-request', 'cpuRequest'],
    ['cpu-limit', 'cpuLimit'],
    ['memory-request', 'memoryRequest'],
    ['memory-limit', 'memoryLimit'],
  ] as const) {
    const value = values[flag];
    if (value === undefined) continue;
    const problem = quantityProblem(value);
    if (problem !== undefined) throw new UsageError(`--${flag} ${problem}`);
    config.resources[key] = value;
  }
  for (const [request, limit] of [
    ['cpuRequest', 'cpuLimit'],
    ['memoryRequest', 'memoryLimit'],
  ] as const) {
    const r = config.resources[request];
    const l = config.resources[limit];
    if (r !== undefined && l !== undefined && (parseQuantity(r) as number) > (parseQuantity(l) as number)) {
      throw new UsageError(
        `the ${request.replace('Request', '')} request ${r} is greater than the limit ${l}; set --${request.replace('Request', '')}-request and --${request.replace('Request', '')}-limit consistently`,
      );
    }
  }
  const level = values['reloader-log-level'];
  if (level !== undefined) {
    if (!(LOG_LEVELS as readonly string[]).includes(level))
      throw new UsageError(`--reloader-log-level "${level}" is not one of ${LOG_LEVELS.join(', ')}`);
    config.reloaderLogLevel = level;
  }
  return config;
}
