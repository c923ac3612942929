import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { createServer, type Server } from 'node:https';
import type { Socket } from 'node:net';
import { generateCertBundle } from '../../src/certs/generate.ts';
import { after, before, describe, it } from 'node:test';
import { connect, type TLSSocket } from 'node:tls';
import { BODY_LIMIT } from '../../src/webhook/app.ts';
import { SERVER_TIMEOUTS, type RunningServer } from '../../src/webhook/server.ts';
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
  let tlsPair: { cert: string; key: string; ca: string };

  before(async () => {
    const bundle = await generateCertBundle({ hosts: ['localhost', '127.0.0.1'] });
    tlsPair = { cert: bundle.cert, key: bundle.key, ca: bundle.caCert };
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

  void it('keeps idle connections open longer than the API server client does (Go: IdleConnTimeout 90 s), with a margin', () => {
    // Go's http.DefaultTransport, whose IdleConnTimeout client-go's transports inherit.
    const GO_IDLE_CONN_TIMEOUT = 90_000;
    assert.equal(SERVER_TIMEOUTS.clientIdle, GO_IDLE_CONN_TIMEOUT);
    // Node closes an idle keep-alive connection keepAliveTimeout + keepAliveTimeoutBuffer after the answer.
    const serverIdle = http.keepAliveTimeout + (http.keepAliveTimeoutBuffer ?? 0);
    assert.ok(
      serverIdle >= GO_IDLE_CONN_TIMEOUT + 10_000,
      `an idle connection closes after ${serverIdle} ms: the API server may still send a review on it until ${GO_IDLE_CONN_TIMEOUT} ms`,
    );
    assert.ok(
      http.keepAliveTimeout <= 300_000,
      `keepAliveTimeout ${http.keepAliveTimeout}: idle sockets are not kept forever`,
    );
  });

  void it('gives a kept-alive connection its keep-alive timeout between requests, not the 30 s of a request', async () => {
    // The server's own socket, as it stands once the answer has been sent on a keep-alive connection.
    const sockets: Socket[] = [];
    const onConnection = (socket: Socket): void => void sockets.push(socket);
    http.on('secureConnection', onConnection);
    const client = connect({ host: '127.0.0.1', port, ca, servername: 'localhost' });
    client.on('error', () => {});
    let received = '';
    try {
      await new Promise<void>((resolve) => client.on('secureConnect', () => resolve()));
      client.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n');
      await withTimeout(
        new Promise<void>((resolve) =>
          client.on('data', (c: Buffer) => {
            received += c.toString('latin1');
            if (received.includes('{"status":"ok"}')) resolve();
          }),
        ),
        5_000,
        'the answer',
      );
      assert.match(received, /^HTTP\/1\.1 200 /);
      assert.match(received, /\r\nkeep-alive: timeout=\d+/i);
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(sockets.length, 1);
      const socket = sockets[0]!;
      assert.equal(socket.destroyed, false, 'the connection stays open after the answer');
      assert.equal(socket.timeout, http.keepAliveTimeout + (http.keepAliveTimeoutBuffer ?? 0));
      assert.ok(
        socket.timeout >= SERVER_TIMEOUTS.clientIdle + 10_000,
        `idle timeout ${socket.timeout} ms on the open connection`,
      );
    } finally {
      http.off('secureConnection', onConnection);
      client.destroy();
    }
  });

  void it('has consistent request timeouts within the API server webhook timeout range', () => {
    // The API server waits for a webhook at most 30 s (timeoutSeconds); nothing legitimate takes longer.
    assert.equal(http.requestTimeout, 30_000);
    assert.equal(http.timeout, 30_000, 'socket inactivity during a request (Fastify connectionTimeout)');
    // Headers come first, and count from the request's first byte (an idle keep-alive connection is not on
    // that clock since Node 18): no longer than the whole request, shorter than the slowest API server timeout.
    assert.ok(
      http.headersTimeout > 0 && http.headersTimeout <= http.requestTimeout,
      `headersTimeout ${http.headersTimeout} within requestTimeout ${http.requestTimeout}`,
    );
    assert.equal(http.headersTimeout, SERVER_TIMEOUTS.headers);
    assert.ok(http.timeout <= http.requestTimeout, 'a stalled request is cut no later than a slow one');
    assert.ok(
      http.requestTimeout < http.keepAliveTimeout,
      'a request is bounded by the request timeout, not the keep-alive',
    );
    assert.ok(http.maxHeadersCount === null || http.maxHeadersCount <= 2000);
  });

  void it('serves a request on a connection left idle longer than the headers and socket timeouts', async () => {
    // Scaled down: a second server with this one's options but millisecond timeouts, so the Node rules the
    // values above rely on are checked in a second: between requests only the keep-alive clock runs.
    const small = createServer(
      {
        cert: tlsPair.cert,
        key: tlsPair.key,
        headersTimeout: 150,
        requestTimeout: 300,
        connectionsCheckingInterval: 20,
      },
      (req, res) => {
        req.resume();
        req.on('end', () => res.end('ok'));
      },
    );
    small.timeout = 150;
    small.keepAliveTimeout = 2_000;
    await new Promise<void>((resolve) => small.listen(0, '127.0.0.1', resolve));
    const smallPort = (small.address() as { port: number }).port;
    const socket = connect({ host: '127.0.0.1', port: smallPort, ca: tlsPair.ca, servername: 'localhost' });
    socket.on('error', () => {});
    let received = '';
    socket.on('data', (c: Buffer) => (received += c.toString('latin1')));
    try {
      await new Promise<void>((resolve) => socket.on('secureConnect', () => resolve()));
      socket.write('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n');
      await new Promise((resolve) => setTimeout(resolve, 800));
      assert.equal(
        socket.destroyed,
        false,
        'the idle connection is still open after 5 headers and socket timeouts',
      );
      socket.write('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n');
      await withTimeout(
        new Promise<void>((resolve) => {
          const check = (): void => {
            if ((received.match(/HTTP\/1\.1 200 /g) ?? []).length >= 2) resolve();
            else setTimeout(check, 10);
          };
          check();
        }),
        5_000,
        'the second answer',
      );
      assert.doesNotMatch(received, /HTTP\/1\.1 408 /);
    } finally {
      socket.destroy();
      small.closeAllConnections();
      await new Promise((resolve) => small.close(resolve));
    }
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
