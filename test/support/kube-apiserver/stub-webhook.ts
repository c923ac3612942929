import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import type { Socket } from 'node:net';
import { generateCertBundle } from '../../../src/certs/generate.ts';

type Obj = Record<string, unknown>;

/** The `response` of an AdmissionReview without its uid (added by the stub), or 'hang' to never answer. */
export type StubAnswer = Obj | 'hang';

export interface StubWebhook {
  /** https://127.0.0.1:PORT */
  url: string;
  port: number;
  /** base64 PEM of the CA, for clientConfig.caBundle. */
  caBundle: string;
  /** Every AdmissionReview received, with the path and query it came on. */
  calls: Array<{ path: string; review: Obj }>;
  close(): Promise<void>;
}

/**
 * A minimal admission webhook for testing the server's admission chain: HTTPS with its own CA for `hosts`,
 * answering each review with `answer(request, path)` (a JSON patch is given as operations and encoded here).
 */
export async function startStubWebhook(
  answer: (request: Obj, path: string) => StubAnswer,
  hosts: string[] = ['127.0.0.1'],
): Promise<StubWebhook> {
  const certs = await generateCertBundle({ hosts, caName: 'stub-webhook-ca' });
  const calls: StubWebhook['calls'] = [];
  const sockets = new Set<Socket>();
  const server = createServer(
    { cert: certs.cert, key: certs.key },
    (req: IncomingMessage, res: ServerResponse) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const review = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Obj;
        const url = req.url ?? '/';
        calls.push({ path: url, review });
        const request = review.request as Obj;
        const result = answer(request, url.split('?')[0] as string);
        if (result === 'hang') return;
        const response: Obj = { uid: request.uid, ...result };
        if (Array.isArray(response.patch)) {
          response.patch = Buffer.from(JSON.stringify(response.patch)).toString('base64');
          response.patchType = 'JSONPatch';
        }
        const body = JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response });
        res.writeHead(200, { 'Content-Type': 'application/json' }).end(body);
      });
    },
  );
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('tlsClientError', () => {});
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    url: `https://127.0.0.1:${port}`,
    port,
    caBundle: Buffer.from(certs.caCert).toString('base64'),
    calls,
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}
