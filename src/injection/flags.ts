import { DEFAULT_INJECTOR_CONFIG, LOG_LEVELS, type InjectorConfig } from './config.ts';
import {
  checkImage,
  checkLogLevel,
  checkPort,
  checkPullPolicy,
  checkQuantity,
  checkSidecarMode,
  flagValue,
  InvalidSetting,
  requestsAboveLimits,
  RESOURCE_KNOBS,
  type ResourceKey,
  type ResourceValue,
} from './knobs.ts';
import type { FlagSpec } from '../shared/cli.ts';

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

/** The injector configuration from parsed flag values; a bad value is an InvalidSetting naming the flag. */
export function injectorConfigFromFlags(values: InjectorFlagValues): InjectorConfig {
  const config: InjectorConfig = {
    ...DEFAULT_INJECTOR_CONFIG,
    resources: { ...DEFAULT_INJECTOR_CONFIG.resources },
    allowedReloadHosts: values['allow-any-reload-host'] === true ? 'any' : 'loopback',
  };
  const image = values['reloader-image'];
  if (image !== undefined) config.reloaderImage = flagValue('reloader-image', checkImage(image));
  const policy = values['image-pull-policy'];
  if (policy !== undefined) config.imagePullPolicy = flagValue('image-pull-policy', checkPullPolicy(policy));
  const mode = values['sidecar-mode'];
  if (mode !== undefined) config.sidecarMode = flagValue('sidecar-mode', checkSidecarMode(mode));
  const port = values['reloader-port'];
  if (port !== undefined) config.port = flagValue('reloader-port', checkPort(port));
  const resources: Partial<Record<ResourceKey, ResourceValue>> = {};
  for (const { key, flag } of RESOURCE_KNOBS) {
    const text = values[flag] ?? config.resources[key];
    if (text === undefined) continue;
    resources[key] = {
      ...flagValue(flag, checkQuantity(text)),
      origin: values[flag] !== undefined ? `--${flag}` : `the default of --${flag}`,
    };
    config.resources[key] = text;
  }
  const [above] = requestsAboveLimits(resources);
  if (above !== undefined) {
    const flag =
      values[`${above.resource}-limit`] !== undefined
        ? `${above.resource}-limit`
        : `${above.resource}-request`;
    throw new InvalidSetting(
      flag,
      `${above.problem}; set --${above.resource}-request and --${above.resource}-limit so that the request is not above the limit`,
    );
  }
  const level = values['reloader-log-level'];
  if (level !== undefined) config.reloaderLogLevel = flagValue('reloader-log-level', checkLogLevel(level));
  return config;
}
