import { injectorConfigFromFlags, injectorFlags, INJECTOR_FLAGS_HELP } from '../injection/flags.ts';
import { parseDuration, parseFlags, parsePort, UsageError } from '../shared/cli.ts';
import { createLogger, isLogLevel } from '../shared/log.ts';
import {
  SELF_MANAGED_FLAGS_HELP,
  selfManagedCertFlags,
  selfManagedSettingsFromFlags,
  startSelfManagedFromSettings,
} from '../certs/self-managed/flags.ts';
import type { KubeConfig } from '@kubernetes/client-node';
import { KUBECONFIG_FLAG_HELP, kubeConfigFlags, loadKubeConfig } from './kube-config.ts';
import { startWebhookServer, type RunningServer } from './server.ts';
import { fileTlsSource } from '../certs/file-source.ts';
import { selfSignedTlsSource } from '../certs/self-signed.ts';
import type { TlsSource } from '../certs/source.ts';

const HELP = `Usage: config-reloader-injector webhook [flags]

Serves the mutating admission webhook over HTTPS:
  POST /mutate            pods that opt in with the annotation config-reloader.io/inject: "true"
  POST /mutate/namespace  every pod (namespaces labelled config-reloader.io/injection=enabled) unless it says "false"
  GET  /healthz, /readyz, /metrics

Server flags:
  --host HOST               address to listen on (default 0.0.0.0)
  --port PORT               HTTPS port; 0 picks a free one, logged as url (default 8443)
  --tls-cert-file FILE      serving certificate (PEM); re-read when the file changes
  --tls-key-file FILE       its private key (PEM)
                            with neither: a self-signed CA and certificate are made at start
  --ca-out FILE             where the self-signed CA is written (default certs/webhook-ca.crt, else the temp dir)
  --shutdown-delay DURATION on SIGTERM, keep serving this long with /readyz failing before closing (default 0s)
  --log-level LEVEL         fatal, error, warn, info, debug, trace or silent (default info)

${SELF_MANAGED_FLAGS_HELP}
Missed injections (pods that opted in but started without the sidecar, e.g. while the webhook was down; new
ones are also caught at admission by the ValidatingAdmissionPolicy of deploy/base):
  --watch-missed-injections    scan the pods' metadata now and then, on one replica at a time (a Lease in
                               $POD_NAMESPACE), count such pods in config_reloader_webhook_missed_injections and
                               record a Warning Event on each that names the fix (RBAC: list pods and namespaces,
                               create events, get/update the Lease ${'config-reloader-injector-missed-injections'},
                               create Leases)
  --missed-injections-interval DURATION
                               how often the scan runs (default 5m); the other replicas read its result as often
${KUBECONFIG_FLAG_HELP}
${INJECTOR_FLAGS_HELP}
`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseFlags('webhook', argv, {
    host: { type: 'string', default: '0.0.0.0' },
    port: { type: 'string', default: '8443' },
    'tls-cert-file': { type: 'string' },
    'tls-key-file': { type: 'string' },
    'ca-out': { type: 'string' },
    'shutdown-delay': { type: 'string', default: '0s' },
    'log-level': { type: 'string', default: 'info' },
    ...selfManagedCertFlags,
    ...kubeConfigFlags,
    'watch-missed-injections': { type: 'boolean' },
    'missed-injections-interval': { type: 'string' },
    ...injectorFlags,
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const level = values['log-level'] as string;
  if (!isLogLevel(level))
    throw new UsageError(
      `--log-level "${level}" is not one of fatal, error, warn, info, debug, trace, silent`,
    );
  const port = parsePort('port', values.port as string, { allowZero: true });
  const shutdownDelay = parseDuration('shutdown-delay', values['shutdown-delay'] as string);
  const config = injectorConfigFromFlags(values);
  const certFile = values['tls-cert-file'] as string | undefined;
  const keyFile = values['tls-key-file'] as string | undefined;
  if (Boolean(certFile) !== Boolean(keyFile))
    throw new UsageError(
      '--tls-cert-file and --tls-key-file go together: give both, or neither for a self-signed certificate',
    );
  const selfManaged = selfManagedSettingsFromFlags(values, process.env);
  if (selfManaged && certFile)
    throw new UsageError(
      '--self-managed-certs and --tls-cert-file/--tls-key-file are two certificate sources: choose one',
    );

  const watchMissed = values['watch-missed-injections'] === true;
  const intervalFlag = values['missed-injections-interval'] as string | undefined;
  if (intervalFlag !== undefined && !watchMissed)
    throw new UsageError('--missed-injections-interval applies only with --watch-missed-injections');
  const scanIntervalMs =
    intervalFlag === undefined ? undefined : parseDuration('missed-injections-interval', intervalFlag);
  if (scanIntervalMs !== undefined && scanIntervalMs < 1000)
    throw new UsageError(`--missed-injections-interval "${intervalFlag}" is shorter than 1s`);
  const kubeconfigPath = values.kubeconfig as string | undefined;
  if (kubeconfigPath && !selfManaged && !watchMissed)
    throw new UsageError('--kubeconfig applies only with --self-managed-certs or --watch-missed-injections');
  const log = createLogger({ name: 'webhook', level });
  let loaded: KubeConfig | undefined;
  const kubeConfig = async (): Promise<KubeConfig> => {
    if (!loaded) {
      const { kubeConfig, origin } = await loadKubeConfig(kubeconfigPath, process.env);
      log.info({ apiServer: kubeConfig.getCurrentCluster()?.server, via: origin }, 'Kubernetes API access');
      loaded = kubeConfig;
    }
    return loaded;
  };

  const host = values.host as string;
  // Credentials are loaded before anything listens, so a bad kubeconfig ends the process with its message.
  const watchKubeConfig = watchMissed ? await kubeConfig() : undefined;
  let tls: TlsSource;
  try {
    if (selfManaged) tls = await startSelfManagedFromSettings(selfManaged, await kubeConfig(), log);
    else if (certFile && keyFile) tls = await fileTlsSource(certFile, keyFile, log);
    else tls = await selfSignedTlsSource([host], values['ca-out'] as string | undefined, log);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  let server: RunningServer;
  try {
    server = await startWebhookServer({ host, port, tls, config, log });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    tls.close();
    if (code === 'EADDRINUSE')
      throw new UsageError(
        `${host}:${port} is already in use: stop the process that holds it, or pass another --port`,
      );
    if (code === 'EADDRNOTAVAIL' || code === 'EACCES')
      throw new UsageError(`cannot listen on ${host}:${port} (${code}): check --host and --port`);
    throw err;
  }
  let missed: { stop(): Promise<void> } | undefined;
  if (watchKubeConfig) {
    const { startMissedInjectionScanner } = await import('./missed-injections.ts');
    // The webhook's own namespace holds the Lease: the Deployment's POD_NAMESPACE; outside a cluster, the
    // kubeconfig context's namespace, as kubectl would use.
    const ownNamespace =
      selfManaged?.namespace ??
      (process.env.POD_NAMESPACE ||
        watchKubeConfig.getContextObject(watchKubeConfig.getCurrentContext())?.namespace ||
        'default');
    missed = startMissedInjectionScanner({
      kubeConfig: watchKubeConfig,
      registry: server.metrics.registry,
      log,
      config,
      namespace: ownNamespace,
      ...(scanIntervalMs === undefined ? {} : { intervalMs: scanIntervalMs }),
      // The MutatingWebhookConfiguration excludes these too: their pods are never injected.
      excludeNamespaces: [
        'kube-system',
        'kube-public',
        'kube-node-lease',
        ...(process.env.POD_NAMESPACE ? [process.env.POD_NAMESPACE] : []),
        ...(selfManaged ? [selfManaged.namespace] : []),
      ],
    });
  }
  log.info(
    { url: server.url, reloaderImage: config.reloaderImage, sidecarMode: config.sidecarMode },
    'webhook listening',
  );

  await new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      process.off('SIGTERM', stop).off('SIGINT', stop);
      log.info({ signal, shutdownDelayMs: shutdownDelay }, 'shutting down: finishing in-flight reviews');
      server.drain();
      setTimeout(() => {
        Promise.all([server.close(), missed?.stop()])
          .catch((err: unknown) => log.error({ err }, 'error while closing'))
          .finally(resolve);
      }, shutdownDelay);
    };
    process.on('SIGTERM', stop).on('SIGINT', stop);
  });
  log.info('stopped');
  log.flush();
  return 0;
}
