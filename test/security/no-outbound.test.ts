import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { readFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import Fastify from 'fastify';
import { DEFAULT_INJECTOR_CONFIG, type InjectorConfig } from '../../src/injection/config.ts';
import { ANNOTATIONS } from '../../src/injection/annotations.ts';
import { createLogger } from '../../src/shared/log.ts';
import { webhookApp } from '../../src/webhook/app.ts';
import { createWebhookMetrics } from '../../src/webhook/metrics.ts';
import type { RunningServer } from '../../src/webhook/server.ts';
import { startTestWebhook } from '../support/webhook-server.ts';
import { httpsRequest } from '../support/https.ts';

/**
 * The webhook never fetches anything named by its input: a reload URL (or any annotation holding a URL) pointing
 * at a listener this test runs gets no connection while reviews are answered, over HTTPS and in-process.
 */

const SAMPLE = JSON.parse(
  await readFile(new URL('../fixtures/admission-review.json', import.meta.url), 'utf8'),
) as {
  request: { uid: string; object: { metadata: { annotations: Record<string, string> } } };
};

/** Reviews whose annotations point at `target` in every way an annotation can hold a URL. */
function reviews(target: string): unknown[] {
  const urls = [
    `http://${target}/-/reload`,
    `https://${target}/reload`,
    `http://localhost:${target.split(':')[1]}/x`,
  ];
  const out: unknown[] = [];
  for (const [i, url] of urls.entries()) {
    for (const key of Object.values(ANNOTATIONS)) {
      const body = structuredClone(SAMPLE);
      body.request.uid = `uid-${i}-${key}`;
      body.request.object.metadata.annotations[ANNOTATIONS.reloadUrl] = url;
      body.request.object.metadata.annotations[key] = url;
      out.push(body);
    }
    // Pods that are skipped: opted out, and already injected.
    for (const [key, value] of [
      [ANNOTATIONS.inject, 'false'],
      [ANNOTATIONS.status, 'injected'],
    ] as const) {
      const body = structuredClone(SAMPLE);
      body.request.uid = `uid-${i}-skip-${key}`;
      Object.assign(body.request.object.metadata.annotations, { [ANNOTATIONS.reloadUrl]: url, [key]: value });
      out.push(body);
    }
  }
  return out;
}

void describe('the webhook makes no outbound connection from pod input', () => {
  let listener: Server;
  let target: string;
  const connections: Socket[] = [];
  let server: RunningServer;
  let ca: string;

  before(async () => {
    listener = createServer((socket) => {
      connections.push(socket);
      socket.destroy();
    });
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    target = `127.0.0.1:${(listener.address() as { port: number }).port}`;
    ({ server, ca } = await startTestWebhook());
  });

  after(async () => {
    await server.close();
    await new Promise((resolve) => listener.close(resolve));
  });

  void it('over HTTPS: injected, denied and skipped reviews alike leave the target untouched', async () => {
    const decisions = new Set<string>();
    for (const path of ['/mutate', '/mutate/namespace']) {
      for (const body of reviews(target)) {
        const res = await httpsRequest(`${server.url}${path}`, {
          ca,
          method: 'POST',
          body: JSON.stringify(body),
        });
        assert.equal(res.status, 200);
        const { response } = res.json<{ response: { allowed: boolean; patch?: string } }>();
        decisions.add(response.patch ? 'patched' : response.allowed ? 'allowed' : 'denied');
      }
    }
    assert.deepEqual([...decisions].sort(), ['allowed', 'denied', 'patched']);
    // Give a stray connection time to land before concluding there was none.
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(connections.length, 0, 'the webhook connected to the URL from the pod');
  });

  void it('in-process: no socket, HTTP client request or DNS lookup is even started', async () => {
    const channels = [
      'net.client.socket',
      'http.client.request.start',
      'undici:request:create',
      'tls.client.socket',
    ];
    const started: string[] = [];
    const handlers = channels.map((name) => [name, () => void started.push(name)] as const);
    for (const [name, fn] of handlers) subscribe(name, fn);
    const dns = (await import('node:dns')).default;
    const lookups: string[] = [];
    const originalLookup = dns.lookup;
    // node:dns is a CommonJS module object, so replacing the property catches every caller.
    (dns as { lookup: unknown }).lookup = (host: string, ...rest: unknown[]) => {
      lookups.push(host);
      return (originalLookup as (...a: unknown[]) => unknown)(host, ...rest);
    };
    try {
      const configs: InjectorConfig[] = [
        DEFAULT_INJECTOR_CONFIG,
        { ...DEFAULT_INJECTOR_CONFIG, allowedReloadHosts: 'any' },
      ];
      for (const config of configs) {
        const instance = Fastify();
        await instance.register(webhookApp, {
          config,
          metrics: createWebhookMetrics(),
          log: createLogger({ name: 't', level: 'silent' }),
        });
        for (const body of [
          ...reviews(target),
          ...reviews('example.invalid:80'),
          ...reviews('169.254.169.254:80'),
        ]) {
          const res = await instance.inject({ method: 'POST', url: '/mutate', payload: body as object });
          assert.equal(res.statusCode, 200);
        }
        await instance.close();
      }
    } finally {
      for (const [name, fn] of handlers) unsubscribe(name, fn);
      (dns as { lookup: unknown }).lookup = originalLookup;
    }
    assert.deepEqual(started, []);
    assert.deepEqual(lookups, []);
    assert.equal(connections.length, 0);
  });
});
