import { createLogger } from '../shared/log.ts';
import { parseReloaderConfig, RELOADER_HELP } from './config.ts';
import { runReloader } from './main.ts';

/** `config-reloader-injector reloader ...`: parse the flags once, then run until SIGTERM/SIGINT (or once). */
export async function run(argv: string[]): Promise<number> {
  const config = parseReloaderConfig(argv, process.env);
  if (!config) {
    process.stdout.write(RELOADER_HELP);
    return 0;
  }
  const log = createLogger({ name: 'reloader', level: config.logLevel });
  let onSignal: (signal: NodeJS.Signals) => void = () => {};
  const stopped = new Promise<NodeJS.Signals>((resolve) => {
    onSignal = (signal) => {
      log.info({ signal }, 'signal received');
      resolve(signal);
    };
    process.once('SIGTERM', onSignal).once('SIGINT', onSignal);
  });
  try {
    return await runReloader(config, {
      log,
      stopped,
      reportError: (message) => process.stderr.write(`error: ${message}\n`),
    });
  } finally {
    process.off('SIGTERM', onSignal).off('SIGINT', onSignal);
    log.flush();
  }
}
