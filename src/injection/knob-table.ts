import type { InjectorConfig } from './config.ts';
import {
  checkBoolean,
  checkContainerName,
  checkDuration,
  checkImage,
  checkLogLevel,
  checkMetricName,
  checkMetricsEndpoint,
  checkMountPath,
  checkObjectName,
  checkPort,
  checkPullPolicy,
  checkQuantity,
  checkReloadEndpoint,
  checkReloadMethod,
  checkReloadSignal,
  checkSidecarMode,
  LOG_LEVELS,
  type Checked,
} from './knobs.ts';
import { checkPreset, PRESET_NAMES } from './presets.ts';
import type { PodSettings } from './settings.ts';

/**
 * Every knob of the injector, declared once: the pod annotation that sets it, the injector flag (the cluster
 * default, on `webhook` and `inject`), the default, the rule (knobs.ts), the help and doc text, and the reloader
 * argument it becomes. flags.ts (flag spec, --help, InjectorConfig), annotations.ts (ANNOTATIONS), settings.ts
 * (annotation parsing), config.ts (defaults), build.ts (reloader arguments) and scripts/knob-docs.ts (the tables
 * of docs/annotations.md and README.md) read it.
 *
 * To add a knob: one entry here, then its use in decide.ts or build.ts (a knob with `reloaderArg` needs none in
 * build.ts); run `npm run docs:knobs` to regenerate the doc tables.
 */
export interface Knob {
  /** The pod annotation, `config-reloader.io/<annotation>`, when a pod can set it. */
  annotation?: string;
  /** The injector flag, when the cluster default can be set; `arg` names its value in --help and the docs. */
  flag?: { name: string; arg: string } | { name: string; boolean: true };
  /** The default, when there is one (flag and annotation absent). */
  default?: string | number;
  /** What the docs and --help say when there is no default (`not set`, `none`). */
  unset?: string;
  /**
   * The rule a flag or annotation value goes through; `config` is the injector's configuration (the flags), for a
   * rule that depends on one (reload-url on --allow-any-reload-host).
   */
  check?: (text: string, config: InjectorConfig) => Checked<unknown>;
  /**
   * The value is a comma-separated list (parseList in knobs.ts), and `check`, when given, is the rule of each
   * item. Every item is kept: one that breaks the rule is reported (the pod is denied).
   */
  list?: true;
  /** What an annotation's problem says to do, when the rule gives no fix of its own. */
  fix?: string;
  /** Where a flag's value goes in the injector configuration. */
  toConfig?(config: InjectorConfig, value: unknown): void;
  /** The reloader argument `--<name>=<value of settings[setting]>`, given only when `requires` is set too. */
  reloaderArg?: { name: string; setting: keyof PodSettings; requires?: keyof PodSettings };
  /** --help, after the flag; the default (or `unset`) is appended. */
  help?: string;
  /** docs/annotations.md: the annotation table's cells, and the flag table's meaning. */
  docs: { default?: string; meaning: string; example?: string; flagMeaning?: string };
  /**
   * README.md's shorter rows: `annotation`/`flag` is a row of its own, or `grouped` when an earlier knob's row
   * covers this one (that row's `name` and `default` then list both).
   */
  readme: { annotation?: ReadmeRow | 'grouped'; flag?: ReadmeRow | 'grouped' };
}

export interface ReadmeRow {
  /** The first cell, when it is not just this knob's annotation or flag. */
  name?: string;
  default?: string;
  meaning: string;
}

const code = (text: string | number): string => `\`${text}\``;

export const DEFAULT_RELOADER_IMAGE = 'config-reloader-injector:0.1.0';
export const DEFAULT_RELOADER_PORT = 9533;
export const DEFAULT_MOUNT_PATH = '/etc/config-reloader';
const OBJECT_NAMES_FIX =
  'use the names of the objects as comma-separated lowercase DNS names, for example "app-config,app-tls"';

export const KNOBS = {
  inject: {
    annotation: 'inject',
    docs: {
      default: 'not set',
      meaning:
        '`"true"`: inject the sidecar (needed on `/mutate`). `"false"`: never inject (also in namespaces labelled `config-reloader.io/injection=enabled`, served by `/mutate/namespace`, where every other pod is injected). Any other value is denied.',
      example: '`"true"`',
    },
    readme: {
      annotation: {
        default: 'not set',
        meaning: '`"true"` injects (on `/mutate`); `"false"` opts out (also in labelled namespaces)',
      },
    },
  },
  status: {
    annotation: 'status',
    docs: {
      default: 'set by the injector',
      meaning:
        '`injected` once the sidecar is in the pod (set by the webhook or by `inject`). A pod that carries it is never patched again, so `reinvocationPolicy: IfNeeded` and re-running `inject` are safe. Do not set it by hand unless the pod already has the sidecar.',
      example: '`injected`',
    },
    readme: {
      annotation: { default: 'set by the injector', meaning: '`injected`: the pod is never patched again' },
    },
  },
  volumes: {
    annotation: 'volumes',
    list: true,
    docs: {
      default: 'all secret/configMap volumes',
      meaning:
        'Transparent mode: only these `secret`/`configMap` volumes of the pod are converted (comma-separated volume names). A name that is not a secret/configMap volume of the pod is denied; a named volume mounted only through `subPath` is left to the kubelet, with a warning (see below).',
      example: '`"app-config,app-tls"`',
    },
    readme: {
      annotation: {
        default: 'every secret/configMap volume',
        meaning: 'transparent mode: only these volumes (comma-separated)',
      },
    },
  },
  secrets: {
    annotation: 'secrets',
    list: true,
    check: checkObjectName,
    fix: OBJECT_NAMES_FIX,
    docs: {
      default: 'none',
      meaning: 'Explicit mode: Secrets to sync, comma-separated object names.',
      example: '`"db-credentials"`',
    },
    readme: {
      annotation: {
        name: '`config-reloader.io/secrets`, `config-reloader.io/configmaps`',
        default: 'none',
        meaning: 'explicit mode: objects to sync (comma-separated names)',
      },
    },
  },
  configmaps: {
    annotation: 'configmaps',
    list: true,
    check: checkObjectName,
    fix: OBJECT_NAMES_FIX,
    docs: {
      default: 'none',
      meaning:
        'Explicit mode: ConfigMaps to sync. A name may not appear in both lists (both would be `<mount-path>/<name>`).',
      example: '`"rules,alerts"`',
    },
    readme: { annotation: 'grouped' },
  },
  mountPath: {
    annotation: 'mount-path',
    default: DEFAULT_MOUNT_PATH,
    check: checkMountPath,
    fix: `use a path such as ${DEFAULT_MOUNT_PATH} (no "..", no ":", not "/")`,
    docs: {
      meaning:
        'Explicit mode: where the app containers see the objects, one directory per object: `<mount-path>/<object-name>/<key>`. Must be absolute and not already a mount of a target container.',
      example: '`/etc/vmalert/rules`',
    },
    readme: { annotation: { meaning: 'explicit mode: where app containers see `<object-name>/<key>`' } },
  },
  containers: {
    annotation: 'containers',
    list: true,
    docs: {
      default: 'every app container',
      meaning: 'Explicit mode: the containers (app or init) that get the read-only mount.',
      example: '`"vmalert"`',
    },
    readme: {
      annotation: {
        default: 'every app container',
        meaning: 'explicit mode: containers that get the read-only mount',
      },
    },
  },
  reloadUrl: {
    annotation: 'reload-url',
    check: checkReloadEndpoint,
    fix: "set it to the http(s) URL of the app's reload endpoint inside the pod, for example http://127.0.0.1:8429/-/reload",
    reloaderArg: { name: 'reload-url', setting: 'reloadUrl' },
    docs: {
      default: 'none (files only)',
      meaning:
        "The app's reload endpoint, called after every change. `http` or `https`; no credentials; by default the host must be loopback (`127.0.0.0/8`, `::1`, `localhost`), see `--allow-any-reload-host`. Its port counts as taken when the sidecar port is chosen.",
      example: '`http://127.0.0.1:8429/-/reload`',
    },
    readme: {
      annotation: {
        default: 'none: files only',
        meaning: "the app's reload endpoint; `http(s)`, loopback hosts only unless `--allow-any-reload-host`",
      },
    },
  },
  reloadMethod: {
    annotation: 'reload-method',
    default: 'POST',
    check: checkReloadMethod,
    reloaderArg: { name: 'reload-method', setting: 'reloadMethod', requires: 'reloadUrl' },
    docs: {
      meaning: '`GET`, `POST` or `PUT` (any case). Ignored, with a warning, without a reload URL.',
      example: '`GET`',
    },
    readme: { annotation: { meaning: '`GET`, `POST` or `PUT`' } },
  },
  preset: {
    annotation: 'preset',
    check: checkPreset,
    docs: {
      default: 'none',
      meaning: `The app's defaults for the reload URL and method and for the confirmation (metrics URL, success and timestamp metric): ${PRESET_NAMES.map(code).join(', ')}; see [Presets](#presets). Each explicit annotation overrides its part. With \`reload-signal\` the preset's HTTP reload is not used, its confirmation is. An unknown name is denied.`,
      example: '`vmagent`',
    },
    readme: {
      annotation: {
        default: 'none',
        meaning: `reload URL, method and confirmation of a known app: ${PRESET_NAMES.map(code).join(', ')}; explicit annotations override each part`,
      },
    },
  },
  reloadSignal: {
    annotation: 'reload-signal',
    check: checkReloadSignal,
    reloaderArg: { name: 'reload-signal', setting: 'reloadSignal' },
    docs: {
      default: 'none',
      meaning:
        'Reload by signal instead of HTTP: `SIGHUP`, `SIGUSR1` or `SIGUSR2` (`HUP`, any case) goes to the main process of `signal-container`. Sets `shareProcessNamespace: true`, mounts a marker in that container and runs the sidecar as its user; see [Reload by signal](#reload-by-signal). Denied together with `reload-url`.',
      example: '`SIGHUP`',
    },
    readme: {
      annotation: {
        default: 'none',
        meaning:
          "reload by signal (`SIGHUP`, `SIGUSR1`, `SIGUSR2`) instead of HTTP: shared process namespace, sidecar as the target's user",
      },
    },
  },
  signalContainer: {
    annotation: 'signal-container',
    check: checkContainerName,
    fix: 'name the app container whose main process reloads on the signal',
    reloaderArg: { name: 'signal-container', setting: 'signalContainer', requires: 'reloadSignal' },
    docs: {
      default: 'the only app container',
      meaning:
        'The container whose main process gets `reload-signal`: an app container or a native sidecar (an init container with `restartPolicy: Always`). Needed when the pod has several app containers. Ignored, with a warning, without `reload-signal`.',
      example: '`nginx`',
    },
    readme: { annotation: { default: 'the only app container', meaning: 'the target of `reload-signal`' } },
  },
  metricsUrl: {
    annotation: 'metrics-url',
    check: checkMetricsEndpoint,
    fix: "set it to the http(s) URL of the app's Prometheus metrics inside the pod, for example http://127.0.0.1:8429/metrics",
    reloaderArg: { name: 'confirm-metrics-url', setting: 'metricsUrl' },
    docs: {
      default: "the preset's, else none",
      meaning:
        "Confirmation: the app's Prometheus-text metrics, read after each reload; needs `success-metric`. Same rule as `reload-url`: `http(s)`, no credentials, loopback unless `--allow-any-reload-host`. See [Confirmation](#confirmation).",
      example: '`http://127.0.0.1:8429/metrics`',
    },
    readme: {
      annotation: {
        name: '`config-reloader.io/metrics-url`, `success-metric`, `timestamp-metric`',
        default: "the preset's, else none",
        meaning:
          "confirmation: the app's metrics URL, the metric that is 1 after a good reload, and (optional) the time of the last good reload",
      },
    },
  },
  successMetric: {
    annotation: 'success-metric',
    check: checkMetricName,
    fix: 'use the name of the metric that is 1 when the last reload succeeded, for example prometheus_config_last_reload_successful',
    reloaderArg: { name: 'confirm-success-metric', setting: 'successMetric' },
    docs: {
      default: "the preset's, else none",
      meaning:
        "Confirmation: the metric that is `1` when the app's last reload succeeded and `0` when it failed. Needs `metrics-url`.",
      example: '`prometheus_config_last_reload_successful`',
    },
    readme: { annotation: 'grouped' },
  },
  timestampMetric: {
    annotation: 'timestamp-metric',
    check: checkMetricName,
    fix: 'use the name of the metric that holds the Unix time of the last successful reload, for example prometheus_config_last_reload_success_timestamp_seconds',
    reloaderArg: { name: 'confirm-timestamp-metric', setting: 'timestampMetric' },
    docs: {
      default: "the preset's, else none",
      meaning:
        "Confirmation, optional: the metric holding the Unix time in seconds of the app's last successful reload; applied then also means newer than the reload. Needs `metrics-url` and `success-metric`.",
      example: '`prometheus_config_last_reload_success_timestamp_seconds`',
    },
    readme: { annotation: 'grouped' },
  },
  confirmTimeout: {
    annotation: 'confirm-timeout',
    default: '30s',
    check: checkDuration,
    fix: 'use a duration such as 10s, 2m or 500ms',
    reloaderArg: { name: 'confirm-timeout', setting: 'confirmTimeout', requires: 'successMetric' },
    docs: {
      meaning:
        'Confirmation: how long the sidecar polls the metrics for the verdict after a reload. Ignored, with a warning, without confirmation.',
      example: '`1m`',
    },
    readme: { annotation: { meaning: 'how long to wait for the confirmation' } },
  },
  events: {
    annotation: 'events',
    check: checkBoolean,
    docs: {
      default: '`"false"`',
      meaning:
        '`"true"`: the sidecar records Kubernetes Events on its pod: `ConfigApplied`, `ConfigRejected` (confirmation), `ContainerRestarted` (`restart-on-env-change`). The pod\'s ServiceAccount needs `create` on `events`; see [Events](#events). Ignored, with a warning, without confirmation or `restart-on-env-change`: there is nothing to record.',
      example: '`"true"`',
    },
    readme: {
      annotation: {
        default: '`"false"`',
        meaning:
          '`"true"`: Events `ConfigApplied`/`ConfigRejected`/`ContainerRestarted` on the pod (needs RBAC: create events)',
      },
    },
  },
  restartOnEnvChange: {
    annotation: 'restart-on-env-change',
    list: true,
    check: checkContainerName,
    fix: 'list container names of the pod, comma-separated',
    docs: {
      default: 'none',
      meaning:
        'Containers (app containers or native sidecars, comma-separated) to restart in place when a Secret or ConfigMap they read through `env`/`envFrom` changes: the sidecar sends their main process SIGTERM and the kubelet starts the container again with the new values. Shared process namespace, marker and user rules as for `reload-signal`; see [Env-var consumers](#env-var-consumers).',
      example: '`"app"`',
    },
    readme: {
      annotation: {
        default: 'none',
        meaning:
          'containers to restart in place (not the pod) when a Secret/ConfigMap they read through `env`/`envFrom` changes',
      },
    },
  },
  reloaderImage: {
    flag: { name: 'reloader-image', arg: 'IMAGE' },
    default: DEFAULT_RELOADER_IMAGE,
    check: checkImage,
    toConfig: (config: InjectorConfig, value: unknown) => (config.reloaderImage = value as string),
    help: "the sidecar's image",
    docs: { meaning: '', flagMeaning: "The sidecar's image (this project's own image)." },
    readme: { flag: { meaning: "the sidecar's image" } },
  },
  imagePullPolicy: {
    flag: { name: 'image-pull-policy', arg: 'POLICY' },
    unset: 'not set',
    check: checkPullPolicy,
    toConfig: (config: InjectorConfig, value: unknown) =>
      (config.imagePullPolicy = value as InjectorConfig['imagePullPolicy']),
    help: "Always, IfNotPresent or Never (default: unset, the cluster's default)",
    docs: { meaning: '', flagMeaning: '`Always`, `IfNotPresent` or `Never` for the sidecar.' },
    readme: { flag: { default: 'unset', meaning: '' } },
  },
  sidecarMode: {
    annotation: 'sidecar-mode',
    flag: { name: 'sidecar-mode', arg: 'MODE' },
    default: 'native',
    check: checkSidecarMode,
    toConfig: (config: InjectorConfig, value: unknown) =>
      (config.sidecarMode = value as InjectorConfig['sidecarMode']),
    help: 'native (restartable init container, Kubernetes >= 1.29) or legacy',
    docs: {
      default: '`--sidecar-mode`',
      meaning:
        '`native` or `legacy`, see below. `legacy` is denied for a pod that runs to completion (`restartPolicy: Never` or `OnFailure`: Jobs, CronJobs).',
      example: '`legacy`',
      flagMeaning:
        '`native` or `legacy` (clusters older than 1.29; pods of Jobs and CronJobs are denied in legacy mode).',
    },
    readme: {
      annotation: {
        meaning:
          '`native`, or `legacy` for clusters before 1.29 (an init container that syncs once plus a regular container; denied for Jobs and CronJobs, `restartPolicy` Never/OnFailure, whose pods it would keep running)',
      },
      flag: {
        meaning:
          '`native` or `legacy` (legacy denies pods with `restartPolicy` Never/OnFailure: Jobs and CronJobs would never finish)',
      },
    },
  },
  port: {
    annotation: 'port',
    flag: { name: 'reloader-port', arg: 'PORT' },
    default: DEFAULT_RELOADER_PORT,
    check: checkPort,
    fix: 'set a port that no container of the pod uses, or remove the annotation to let the injector pick one',
    toConfig: (config: InjectorConfig, value: unknown) => (config.port = value as number),
    help: "the sidecar's health/metrics port; the next free one is used on a clash",
    docs: {
      default: `\`--reloader-port\` (${DEFAULT_RELOADER_PORT})`,
      meaning:
        "The sidecar's port for `/readyz`, `/healthz` and `/metrics`. Without the annotation the injector takes the next free port when a container declares the default one; with it, a clash is denied.",
      example: '`"9600"`',
      flagMeaning: "The sidecar's preferred port.",
    },
    readme: {
      annotation: {
        meaning:
          "the sidecar's health/metrics port; without the annotation a clash picks the next free port, with it a clash is denied",
      },
      flag: { meaning: '' },
    },
  },
  cpuRequest: {
    annotation: 'cpu-request',
    flag: { name: 'cpu-request', arg: 'QUANTITY' },
    default: '10m',
    check: checkQuantity,
    help: '',
    docs: { meaning: "The sidecar's CPU request (a Kubernetes quantity).", example: '`5m`' },
    readme: {
      annotation: {
        name: '`config-reloader.io/cpu-request`, `cpu-limit`',
        default: '`10m`, none',
        meaning: 'sidecar CPU (Kubernetes quantities)',
      },
      flag: {
        name: '`--cpu-request`, `--cpu-limit`, `--memory-request`, `--memory-limit`',
        default: '`10m`, none, `48Mi`, `128Mi`',
        meaning: '',
      },
    },
  },
  cpuLimit: {
    annotation: 'cpu-limit',
    flag: { name: 'cpu-limit', arg: 'QUANTITY' },
    unset: 'none',
    check: checkQuantity,
    help: '',
    docs: { meaning: "The sidecar's CPU limit; must not be below the request.", example: '`100m`' },
    readme: { annotation: 'grouped', flag: 'grouped' },
  },
  memoryRequest: {
    annotation: 'memory-request',
    flag: { name: 'memory-request', arg: 'QUANTITY' },
    default: '48Mi',
    check: checkQuantity,
    help: '',
    docs: { meaning: "The sidecar's memory request.", example: '`64Mi`' },
    readme: {
      annotation: {
        name: '`config-reloader.io/memory-request`, `memory-limit`',
        default: '`48Mi`, `128Mi`',
        meaning: 'sidecar memory',
      },
      flag: 'grouped',
    },
  },
  memoryLimit: {
    annotation: 'memory-limit',
    flag: { name: 'memory-limit', arg: 'QUANTITY' },
    // 128Mi holds the idle reloader (about 17 MiB anonymous, 64 MiB RSS), the peak of the largest object (22 MiB
    // more) and the files of memory-backed sources twice during a swap: Secrets up to 1 MiB and 1,000 keys, or one
    // gunzip source expanding to 40 MiB (the reloader derives its gunzip cap from this limit; docs/reloader.md#memory).
    default: '128Mi',
    check: checkQuantity,
    help: '',
    docs: {
      meaning:
        "The sidecar's memory limit; must not be below the request. It also caps what gunzip keys may expand to (40 MiB at 128Mi; [sizing](reloader.md#memory)): raise it for larger configs.",
      example: '`128Mi`',
    },
    readme: { annotation: 'grouped', flag: 'grouped' },
  },
  allowAnyReloadHost: {
    flag: { name: 'allow-any-reload-host', boolean: true },
    unset: 'off',
    toConfig: (config: InjectorConfig, value: unknown) =>
      (config.allowedReloadHosts = value === true ? 'any' : 'loopback'),
    help: 'allow reload URLs to any host (default: loopback only, 127.0.0.0/8, ::1, localhost)',
    docs: {
      meaning: '',
      flagMeaning:
        'Allow reload URLs to any host. Off, only loopback hosts are accepted, so an annotation cannot make the sidecar send requests to other services.',
    },
    readme: { flag: { meaning: 'accept reload URLs to non-loopback hosts' } },
  },
  gunzip: {
    annotation: 'gunzip',
    check: checkBoolean,
    docs: {
      default: '`"false"`',
      meaning:
        '`"true"`: keys ending in `.gz` are decompressed and written without the suffix (as the VictoriaMetrics operator stores large configs).',
      example: '`"true"`',
    },
    readme: {
      annotation: {
        default: '`"false"`',
        meaning: '`"true"`: keys ending in `.gz` are written decompressed, without the suffix',
      },
    },
  },
  logLevel: {
    annotation: 'log-level',
    flag: { name: 'reloader-log-level', arg: 'LEVEL' },
    unset: 'not set',
    check: checkLogLevel,
    toConfig: (config: InjectorConfig, value: unknown) => (config.reloaderLogLevel = value as string),
    reloaderArg: { name: 'log-level', setting: 'logLevel' },
    help: `${LOG_LEVELS.join(', ')} (default: the reloader's own)`,
    docs: {
      default: '`--reloader-log-level`',
      meaning: `The reloader's log level: ${LOG_LEVELS.slice(0, -1).map(code).join(', ')} or ${code(LOG_LEVELS.at(-1) as string)}.`,
      example: '`debug`',
      flagMeaning: 'Default log level of the reloader.',
    },
    readme: {
      annotation: { meaning: "the reloader's log level" },
      flag: { default: 'unset', meaning: '' },
    },
  },
} as const satisfies Record<string, Knob>;

export type KnobName = keyof typeof KNOBS;

/** Every knob, in the table's order (the order of the doc tables and of --help). */
export const KNOB_LIST: readonly (Knob & { key: KnobName })[] = Object.entries(KNOBS).map(([key, knob]) => ({
  ...(knob as Knob),
  key: key as KnobName,
}));
