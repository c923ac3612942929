import { hostname } from 'node:os';
import { hostProblem, serviceHosts } from '../generate.ts';
import { parseDuration, UsageError, type FlagSpec } from '../../shared/cli.ts';
import type { Logger } from '../../shared/log.ts';
import { isValidObjectName } from '../../shared/source-spec.ts';
import type { KubeConfig } from '@kubernetes/client-node';
import type { SelfManagedCerts } from './rotation.ts';

/** The webhook's flags for self-managed certificates (see rotation.ts). */
export const selfManagedCertFlags = {
  'self-managed-certs': { type: 'boolean' },
  'cert-secret': { type: 'string' },
  'webhook-config': { type: 'string' },
  service: { type: 'string' },
  'cert-host': { type: 'string', multiple: true },
  namespace: { type: 'string' },
  'cert-validity': { type: 'string' },
  'ca-validity': { type: 'string' },
  'cert-sync-interval': { type: 'string' },
  'ca-propagation-delay': { type: 'string' },
} as const satisfies FlagSpec;

export const SELF_MANAGED_DEFAULTS = {
  secret: 'config-reloader-injector-certs',
  webhookConfig: 'config-reloader-injector',
  service: 'config-reloader-injector',
  certValidity: '8760h',
  caValidity: '87600h',
  syncInterval: '30s',
  propagationDelay: '60s',
} as const;

const d = SELF_MANAGED_DEFAULTS;

export const SELF_MANAGED_FLAGS_HELP = `Self-managed certificates (in a cluster, instead of --tls-cert-file/--tls-key-file):
  --self-managed-certs         make a CA and a serving certificate, keep them in a Secret that every replica
                               shares, write the CA into the MutatingWebhookConfiguration's caBundle, renew
                               them before expiry (a CA rotation trusts both CAs until every replica moved)
  --cert-secret NAME           that Secret, in --namespace (default ${d.secret})
  --webhook-config NAME        the MutatingWebhookConfiguration whose webhooks get the caBundle (default ${d.webhookConfig})
  --service NAME               the webhook's Service: the certificate's DNS names are NAME, NAME.NS, NAME.NS.svc
                               and NAME.NS.svc.cluster.local (default ${d.service})
  --cert-host HOST             one more DNS name or IP address in the serving certificate, for a webhook
                               configuration that calls a url: instead of the Service (a webhook on the host
                               network or outside the cluster); repeatable. A certificate in the Secret that
                               lacks it is reissued (same CA)
  --namespace NS               namespace of the Secret and the Service (default: $POD_NAMESPACE)
  --cert-validity DURATION     serving certificate lifetime, renewed with a third left (default ${d.certValidity})
  --ca-validity DURATION       CA lifetime, rotated with a third left (default ${d.caValidity})
  --cert-sync-interval DURATION how often each replica re-reads the Secret (default ${d.syncInterval})
  --ca-propagation-delay DURATION during a CA rotation or reissue, how long the API servers get to load the new
                               caBundle before a certificate of the new CA is served (default ${d.propagationDelay})
`;

export type SelfManagedFlagValues = {
  [K in keyof typeof selfManagedCertFlags]?: (typeof selfManagedCertFlags)[K] extends { multiple: true }
    ? string[]
    : (typeof selfManagedCertFlags)[K]['type'] extends 'boolean'
      ? boolean
      : string;
};

export interface SelfManagedSettings {
  namespace: string;
  secretName: string;
  webhookConfigName: string;
  service: string;
  /** --cert-host: SANs beyond the Service's DNS names, as given (validated). */
  extraHosts: string[];
  replica: string;
  certValidityMs: number;
  caValidityMs: number;
  syncIntervalMs: number;
  propagationDelayMs: number;
}

/** Undefined without --self-managed-certs (then none of its flags may be given); a bad value is a UsageError. */
export function selfManagedSettingsFromFlags(
  values: SelfManagedFlagValues,
  env: NodeJS.ProcessEnv,
): SelfManagedSettings | undefined {
  if (values['self-managed-certs'] !== true) {
    const stray = Object.keys(selfManagedCertFlags).find(
      (f) => f !== 'self-managed-certs' && values[f as keyof SelfManagedFlagValues] !== undefined,
    );
    if (stray) throw new UsageError(`--${stray} applies only with --self-managed-certs`);
    return undefined;
  }
  const namespace = values.namespace ?? env.POD_NAMESPACE;
  if (!namespace)
    throw new UsageError(
      '--self-managed-certs needs --namespace, or the POD_NAMESPACE environment variable (the downward API)',
    );
  const settings: SelfManagedSettings = {
    namespace,
    secretName: values['cert-secret'] ?? d.secret,
    webhookConfigName: values['webhook-config'] ?? d.webhookConfig,
    service: values.service ?? d.service,
    extraHosts: [...new Set(values['cert-host'] ?? [])],
    replica: env.POD_NAME || hostname(),
    certValidityMs: parseDuration('cert-validity', values['cert-validity'] ?? d.certValidity),
    caValidityMs: parseDuration('ca-validity', values['ca-validity'] ?? d.caValidity),
    syncIntervalMs: parseDuration('cert-sync-interval', values['cert-sync-interval'] ?? d.syncInterval),
    propagationDelayMs: parseDuration(
      'ca-propagation-delay',
      values['ca-propagation-delay'] ?? d.propagationDelay,
    ),
  };
  for (const [flag, v] of [
    ['namespace', settings.namespace],
    ['service', settings.service],
  ] as const) {
    if (!isValidObjectName(v) || v.includes('.') || v.length > 63)
      throw new UsageError(`--${flag} "${v}" is not a valid DNS label (lowercase letters, digits and '-')`);
  }
  for (const [flag, v] of [
    ['cert-secret', settings.secretName],
    ['webhook-config', settings.webhookConfigName],
  ] as const) {
    if (!isValidObjectName(v)) throw new UsageError(`--${flag} "${v}" is not a valid object name`);
  }
  for (const host of settings.extraHosts) {
    const problem = hostProblem(host);
    if (problem)
      throw new UsageError(
        `--cert-host "${host}" ${problem}: give the host name or IP address of the url the webhook ` +
          'configuration calls, e.g. --cert-host 10.0.0.5 or --cert-host webhook.example.com',
      );
  }
  const hour = 3_600_000;
  if (settings.certValidityMs < hour) throw new UsageError('--cert-validity must be at least 1h');
  if (settings.caValidityMs < 2 * settings.certValidityMs)
    throw new UsageError('--ca-validity must be at least twice --cert-validity');
  if (settings.syncIntervalMs < 1000) throw new UsageError('--cert-sync-interval must be at least 1s');
  return settings;
}

/** The serving certificate's SANs: the Service's DNS names, then the --cert-host values not among them. */
export function selfManagedHosts(s: SelfManagedSettings): string[] {
  const hosts = serviceHosts(s.service, s.namespace);
  return [...hosts, ...s.extraHosts.filter((h) => !hosts.includes(h))];
}

/** Starts the self-managed certificates with the webhook's API credentials. */
export async function startSelfManagedFromSettings(
  s: SelfManagedSettings,
  kc: KubeConfig,
  log: Logger,
): Promise<SelfManagedCerts> {
  const { createCertApi } = await import('./api.ts');
  const { startSelfManagedCerts } = await import('./rotation.ts');
  log.info(
    {
      namespace: s.namespace,
      secret: s.secretName,
      webhookConfig: s.webhookConfigName,
      extraHosts: s.extraHosts.length > 0 ? s.extraHosts : undefined,
      server: kc.getCurrentCluster()?.server,
    },
    'self-managed certificates: setting up',
  );
  return startSelfManagedCerts({
    api: createCertApi(kc, {
      namespace: s.namespace,
      secretName: s.secretName,
      webhookConfigName: s.webhookConfigName,
    }),
    hosts: selfManagedHosts(s),
    replica: s.replica,
    log,
    certValidityMs: s.certValidityMs,
    caValidityMs: s.caValidityMs,
    syncIntervalMs: s.syncIntervalMs,
    propagationDelayMs: s.propagationDelayMs,
  });
}
