import { generateCertBundle } from '../../src/certs/generate.ts';
import { DEFAULT_INJECTOR_CONFIG, type InjectorConfig } from '../../src/injection/config.ts';
import { createLogger, type Logger } from '../../src/shared/log.ts';
import { startWebhookServer, type RunningServer } from '../../src/webhook/server.ts';

export interface TestWebhook {
  server: RunningServer;
  /** The PEM CA that signed the serving certificate (SANs localhost and 127.0.0.1). */
  ca: string;
  port: number;
}

/** The webhook in-process on 127.0.0.1, a free port and a certificate made for the test; close with `server.close()`. */
export async function startTestWebhook(
  opts: { config?: InjectorConfig; log?: Logger } = {},
): Promise<TestWebhook> {
  const bundle = await generateCertBundle({ hosts: ['localhost', '127.0.0.1'] });
  const server = await startWebhookServer({
    host: '127.0.0.1',
    port: 0,
    tls: { material: { cert: bundle.cert, key: bundle.key }, onChange: () => {}, close: () => {} },
    config: opts.config ?? DEFAULT_INJECTOR_CONFIG,
    log: opts.log ?? createLogger({ name: 'webhook-test', level: 'silent' }),
  });
  return { server, ca: bundle.caCert, port: Number(new URL(server.url).port) };
}
