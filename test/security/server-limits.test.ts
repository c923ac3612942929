import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import type { Server } from 'node:https';
import { after, before, describe, it } from 'node:test';
import { connect, type TLSSocket } from 'node:tls';
import { BODY_LIMIT } from '../../src/webhook/app.ts';
import type { RunningServer } from '../../src/webhook/server.ts';
import { startTestWebhook } from '../support/webhook-server.ts';
import { httpsRequest } from '../support/https.ts';

/** Resource limits of the webhook's HTTPS server: request size and the timeouts that cut slow or stalled clients. */

const MiB = 1024 * 1024;

/** A raw TLS connection that writes `head` and then does nothing; resolves with what the server sent once it closed. */
function stalledClient(
  port: number,
  ca: string,
  head: string,
): { socket: TLSSocket; closed: Promise<string> } {
  const socket = connect({ host: '127.0.0.1', port, ca, servername: 'localhost' });
  const chunks: Buffer[] = [];
  socket.on('secureConnect', () => socket.write(head));
  socket.on('data', (c: Buffer) => chunks.push(c));
  const closed = new Promise<string>((resolve) => {
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    socket.on('error', () => {});
  });
  return { socket, closed };
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
    }),
  ]);
}

void describe('webhook server limits', () => {
  let server: RunningServer;
  let http: Server;
  let ca: string;
  let port: number;

  before(async () => {
    ({ server, ca } = await startTestWebhook());
    port = Number(new URL(server.url).port);
    // The server object is not part of RunningServer; node's own diagnostics channel hands it over.
    const seen: Server[] = [];
    const onRequest = (message: unknown): void => void seen.push((message as { server: Server }).server);
    subscribe('http.server.request.start', onRequest);
    try {
      await httpsRequest(`${server.url}/healthz`, { ca });
    } finally {
      unsubscribe('http.server.request.start', onRequest);
    }
    assert.ok(seen[0], 'saw the webhook server');
    http = seen[0];
  });

  after(async () => {
    await server.close();
  });

  void it('takes the largest object the API server allows (3 MiB) but caps bodies at a few MiB', () => {
    assert.ok(BODY_LIMIT > 3 * MiB, 'room for a 3 MiB object in its AdmissionReview');
    assert.ok(BODY_LIMIT <= 16 * MiB, 'no unbounded buffering');
  });

  void it('answers 413 to a declared over-limit body without waiting for it', async () => {
    const { socket, closed } = stalledClient(
      port,
      ca,
      `POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${100 * MiB}\r\n\r\n{"a":`,
    );
    const answer = await withTimeout(closed, 20_000, 'the 413 and close');
    socket.destroy();
    assert.match(answer, /^HTTP\/1\.1 413 /);
    assert.match(answer, /larger than the webhook's limit/);
    assert.equal((await httpsRequest(`${server.url}/healthz`, { ca })).status, 200);
  });

  void it('cuts a chunked body that grows past the limit, and keeps serving', async () => {
    const socket = connect({ host: '127.0.0.1', port, ca, servername: 'localhost' });
    socket.on('error', () => {});
    const chunks: Buffer[] = [];
    let wake: () => void = () => {};
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      wake();
    });
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    void closed.then(() => wake());
    await new Promise<void>((resolve) => socket.on('secureConnect', () => resolve()));
    socket.write(
      'POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n',
    );
    const piece = 'x'.repeat(MiB);
    let sent = 0;
    // Write until the server answers or closes, at most twice the limit.
    while (!socket.destroyed && chunks.length === 0 && sent < 2 * BODY_LIMIT) {
      const ok = socket.write(`${piece.length.toString(16)}\r\n${piece}\r\n`);
      sent += piece.length;
      if (!ok) {
        await withTimeout(
          new Promise<void>((resolve) => {
            wake = resolve;
            socket.once('drain', resolve);
          }),
          20_000,
          'the server to read, answer or close',
        );
      }
    }
    const answered = await withTimeout(
      chunks.length > 0 || socket.destroyed
        ? Promise.resolve()
        : new Promise<void>((resolve) => (wake = resolve)),
      20_000,
      'an answer or a close',
    ).then(() => Buffer.concat(chunks).toString('latin1'));
    socket.destroy();
    await closed;
    if (answered) assert.match(answered, /^HTTP\/1\.1 413 /);
    assert.ok(sent <= 2 * BODY_LIMIT);
    assert.equal((await httpsRequest(`${server.url}/healthz`, { ca })).status, 200);
  });

  void it('is configured with request, idle and keep-alive timeouts within the API server webhook timeout range', () => {
    // The API server waits for a webhook at most 30 s (timeoutSeconds); nothing legitimate takes longer.
    assert.equal(http.requestTimeout, 30_000);
    assert.equal(http.timeout, 30_000, 'idle socket timeout (Fastify connectionTimeout)');
    assert.ok(
      http.headersTimeout > 0 && http.headersTimeout <= 60_000,
      `headersTimeout ${http.headersTimeout}`,
    );
    assert.ok(
      http.keepAliveTimeout > 0 && http.keepAliveTimeout <= 120_000,
      `keepAliveTimeout ${http.keepAliveTimeout}`,
    );
    assert.ok(http.maxHeadersCount === null || http.maxHeadersCount <= 2000);
  });

  void it('cuts off a client that sends part of its headers and stalls (idle timeout shortened for the test)', async () => {
    const configured = http.timeout;
    http.timeout = 300; // applies to connections accepted from now on, as the configured 30 s does
    try {
      const { closed } = stalledClient(port, ca, 'POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Ty');
      await withTimeout(closed, 20_000, 'the stalled connection to be closed');
      const midBody = stalledClient(
        port,
        ca,
        'POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"kind":',
      );
      await withTimeout(midBody.closed, 20_000, 'the connection stalled mid-body to be closed');
    } finally {
      http.timeout = configured;
    }
    assert.equal((await httpsRequest(`${server.url}/healthz`, { ca })).status, 200);
  });

  void it('answers 431 to oversized headers', async () => {
    const res = await httpsRequest(`${server.url}/healthz`, {
      ca,
      headers: { 'x-big': 'y'.repeat(64 * 1024) },
    }).catch((err: Error) => err);
    if (!(res instanceof Error)) assert.equal(res.status, 431);
    assert.equal((await httpsRequest(`${server.url}/healthz`, { ca })).status, 200);
  });
});
