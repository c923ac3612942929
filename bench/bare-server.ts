/**
 * The baseline of the admission section: a bare Fastify HTTPS server with the webhook's TLS and server options
 * that parses the AdmissionReview (Fastify's JSON parser, as any webhook must) and answers with a fixed,
 * precomputed response for the pod's size: what framework, TLS and JSON cost before any injection work.
 *
 *   node bench/bare-server.ts CERT_FILE KEY_FILE RESPONSES_JSON   (prints {"url": ...} once listening)
 */
import { readFileSync } from 'node:fs';
import Fastify from 'fastify';
// The webhook's own TLS settings, so that both sides pay for the same handshake and ciphers.
import { TLS_OPTIONS } from '../src/certs/tls-options.ts';
import { SERVER_TIMEOUTS } from '../src/webhook/server.ts';

const [certFile, keyFile, responsesFile] = process.argv.slice(2);
if (!certFile || !keyFile || !responsesFile) throw new Error('usage: bare-server.ts CERT KEY RESPONSES_JSON');

/** Size label (the pod's `bench-size` label) -> the serialized AdmissionReview response. */
const responses = JSON.parse(readFileSync(responsesFile, 'utf8')) as Record<string, string>;

const app = Fastify({
  https: { ...TLS_OPTIONS, cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8') },
  logger: false,
  bodyLimit: 8 * 1024 * 1024,
  // The webhook's own server timeouts, so the two servers differ only in what they do per request.
  connectionTimeout: SERVER_TIMEOUTS.socketIdle,
  requestTimeout: SERVER_TIMEOUTS.request,
  keepAliveTimeout: SERVER_TIMEOUTS.keepAlive,
});

app.post('/mutate', async (req, reply) => {
  const body = req.body as { request?: { object?: { metadata?: { labels?: Record<string, string> } } } };
  const answer = responses[body.request?.object?.metadata?.labels?.['bench-size'] ?? ''];
  if (answer === undefined) return reply.code(400).send({ message: 'unknown bench-size' });
  return reply.code(200).type('application/json; charset=utf-8').send(answer);
});

await app.listen({ host: '127.0.0.1', port: 0 });
const address = app.server.address();
if (typeof address !== 'object' || !address) throw new Error('no address');
process.stdout.write(`${JSON.stringify({ url: `https://127.0.0.1:${address.port}` })}\n`);
const stop = (): void => void app.close().then(() => process.exit(0));
process.once('SIGTERM', stop).once('SIGINT', stop);
