import { DEFAULT_INJECTOR_CONFIG, type InjectorConfig } from './config.ts';
import { KNOB_LIST, KNOBS } from './knob-table.ts';
import {
  flagValue,
  InvalidSetting,
  requestsAboveLimits,
  RESOURCE_KNOBS,
  type ResourceKey,
  type ResourceValue,
} from './knobs.ts';
import type { FlagSpec } from '../shared/cli.ts';

type FlagOfKnob = Extract<(typeof KNOBS)[keyof typeof KNOBS], { flag: unknown }>['flag'];

/** The flags that set the cluster defaults of injection, from the knob table; shared by `webhook` and `inject`. */
export type InjectorFlags = {
  [F in FlagOfKnob as F['name']]: { type: F extends { boolean: true } ? 'boolean' : 'string' };
};

const FLAG_KNOBS = KNOB_LIST.filter((knob) => knob.flag !== undefined);

export const injectorFlags = Object.fromEntries(
  FLAG_KNOBS.map(({ flag }) => [
    flag?.name,
    { type: flag !== undefined && 'boolean' in flag ? 'boolean' : 'string' },
  ]),
) as InjectorFlags satisfies FlagSpec;

/** A knob's flag as --help and the docs show it: `--name ARG`. */
export function flagUsage(flag: NonNullable<(typeof KNOB_LIST)[number]['flag']>): string {
  return 'arg' in flag ? `--${flag.name} ${flag.arg}` : `--${flag.name}`;
}

/** Help text lines for the flags above, for a command's --help. */
export const INJECTOR_FLAGS_HELP = `Sidecar defaults (pod annotations override most of them, see docs/annotations.md):
${FLAG_KNOBS.map((knob) => {
  const help = knob.help ?? '';
  const suffix =
    knob.default !== undefined
      ? `(default ${knob.default})`
      : help.includes('(default')
        ? ''
        : `(default: ${knob.unset ?? 'not set'})`;
  return `  ${flagUsage(knob.flag as NonNullable<typeof knob.flag>).padEnd(29)}${[help, suffix].filter((s) => s !== '').join(' ')}\n`;
}).join('')}`;

export type InjectorFlagValues = {
  [K in keyof InjectorFlags]?: InjectorFlags[K]['type'] extends 'boolean' ? boolean : string;
};

/** The injector configuration from parsed flag values; a bad value is an InvalidSetting naming the flag. */
export function injectorConfigFromFlags(values: InjectorFlagValues): InjectorConfig {
  const given = values as Record<string, string | boolean | undefined>;
  const config: InjectorConfig = {
    ...DEFAULT_INJECTOR_CONFIG,
    resources: { ...DEFAULT_INJECTOR_CONFIG.resources },
  };
  for (const { flag, check, toConfig } of FLAG_KNOBS) {
    const value = given[flag?.name as string];
    if (toConfig === undefined) continue;
    if (check === undefined) toConfig(config, value);
    else if (typeof value === 'string')
      toConfig(config, flagValue(flag?.name as string, check(value, config)));
  }
  const resources: Partial<Record<ResourceKey, ResourceValue>> = {};
  for (const { key, flag } of RESOURCE_KNOBS) {
    const text = values[flag] ?? config.resources[key];
    if (text === undefined) continue;
    resources[key] = {
      ...flagValue(flag, KNOBS[key].check(text)),
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
  return config;
}
