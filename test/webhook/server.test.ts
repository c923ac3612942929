import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { connect } from 'node:tls';
import { applyPatch } from 'rfc6902';
import { generateCertBundle } from '../../src/certs/generate.ts';
import { DEFAULT_INJECTOR_CONFIG } from '../../src/injection/config.ts';
import { createLogger } from '../../src/shared/log.ts';
import { startWebhookServer, type RunningServer } from '../../src/webhook/server.ts';
import { fileTlsSource } from '../../src/certs/file-source.ts';
import { httpsRequest } from '../support/https.ts';
import { validatePod } from '../support/pod-validation.ts';

const SAMPLE = await readFile(new URL('../fixtures/admission-review.json', import.meta.url), 'utf8');

/** The fingerprint of the certificate a fresh TLS connection is served. */
function servedFingerprint(url: string, ca: string): Promise<string> {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port: Number(port), ca, servername: 'localhost' }, () => {
      resolve(socket.getPeerX509Certificate()?.fingerprint256 ?? '');
      socket.end();
    });
    socket.on('error', reject);
  });
}

describe('webhook server over HTTPS', () => {
  let dir: string;
  let server: RunningServer;
  let ca: string;
  const logLines: string[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'webhook-test-'));
    const bundle = await generateCertBundle({ hosts: ['localhost', '127.0.0.1'] });
    ca = bundle.caCert;
    await writeFile(join(dir, 'tls.crt'), bundle.cert);
    await writeFile(join(dir, 'tls.key'), bundle.key);
    const stream = new PassThrough();
    stream.on('data', (c: Buffer) => logLines.push(...c.toString().split('\n').filter(Boolean)));
    const log = createLogger({ name: 'webhook', level: 'debug', destination: stream });
    const tls = await fileTlsSource(join(dir, 'tls.crt'), join(dir, 'tls.key'), log);
    server = await startWebhookServer({
      host: '127.0.0.1',
      port: 0,
      tls,
      config: DEFAULT_INJECTOR_CONFIG,
      log,
    });
  });

  after(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('injects an opted-in pod: the patch applies with another JSON-Patch implementation and yields a valid pod', async () => {
    const res = await httpsRequest(`${server.url}/mutate`, { ca, method: 'POST', body: SAMPLE });
    assert.equal(res.status, 200);
    const review = res.json<{
      response: { uid: string; allowed: boolean; patch: string; patchType: string };
    }>();
    assert.equal(review.response.uid, JSON.parse(SAMPLE).request.uid);
    assert.equal(review.response.patchType, 'JSONPatch');
    const pod = JSON.parse(SAMPLE).request.object;
    assert.deepEqual(
      applyPatch(pod, JSON.parse(Buffer.from(review.response.patch, 'base64').toString())).filter(Boolean),
      [],
    );
    assert.deepEqual(validatePod(pod), []);
    const line = logLines.map((l) => JSON.parse(l)).find((l) => l.msg === 'admission review');
    assert.ok(line, 'one log line per review');
    assert.equal(line.uid, review.response.uid);
    assert.equal(line.namespace, 'shop');
    assert.equal(line.pod, 'vmagent-7d9f8c6b5-*');
    assert.equal(line.decision, 'injected');
    assert.equal(typeof line.durationMs, 'number');
  });

  it('answers 400 with a message for a body that is not JSON, and keeps serving', async () => {
    const res = await httpsRequest(`${server.url}/mutate`, { ca, method: 'POST', body: '{"apiVersion": ' });
    assert.equal(res.status, 400);
    assert.match(res.json<{ message: string }>().message, /not valid JSON/);
    const next = await httpsRequest(`${server.url}/mutate/namespace`, { ca, method: 'POST', body: SAMPLE });
    assert.equal(next.status, 200);
  });

  it('answers 400 for JSON that is not an AdmissionReview v1', async () => {
    const res = await httpsRequest(`${server.url}/mutate`, { ca, method: 'POST', body: '{"kind":"Pod"}' });
    assert.equal(res.status, 400);
    assert.match(res.json<{ message: string }>().message, /AdmissionReview/);
  });

  it('answers 415 for a body that is not application/json', async () => {
    const res = await httpsRequest(`${server.url}/mutate`, {
      ca,
      method: 'POST',
      body: 'x',
      headers: { 'content-type': 'text/plain' },
    });
    assert.equal(res.status, 415);
    assert.match(res.json<{ message: string }>().message, /application\/json/);
  });

  it('answers 413 for a body over the limit, then serves the next request', async () => {
    const huge = JSON.stringify({ ...JSON.parse(SAMPLE), padding: 'x'.repeat(9 * 1024 * 1024) });
    const res = await httpsRequest(`${server.url}/mutate`, { ca, method: 'POST', body: huge }).catch(
      (err: Error) => err,
    );
    // The server may answer 413 and close before the whole body is sent; either way it must not crash.
    if (!(res instanceof Error)) assert.equal(res.status, 413);
    assert.equal((await httpsRequest(`${server.url}/healthz`, { ca })).status, 200);
  });

  it('accepts a 3 MiB pod, the most the API server lets an object be', async () => {
    const body = JSON.parse(SAMPLE);
    body.request.object.metadata.annotations['example.com/big'] = 'y'.repeat(3 * 1024 * 1024 - 4096);
    const res = await httpsRequest(`${server.url}/mutate`, {
      ca,
      method: 'POST',
      body: JSON.stringify(body),
    });
    assert.equal(res.status, 200);
    assert.equal(res.json<{ response: { patchType: string } }>().response.patchType, 'JSONPatch');
  });

  it('serves /healthz, /readyz and Prometheus /metrics with request, injection and latency figures', async () => {
    assert.equal((await httpsRequest(`${server.url}/healthz`, { ca })).status, 200);
    assert.equal((await httpsRequest(`${server.url}/readyz`, { ca })).status, 200);
    const metrics = await httpsRequest(`${server.url}/metrics`, { ca });
    assert.match(String(metrics.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    assert.match(
      metrics.body,
      /config_reloader_webhook_requests_total\{path="\/mutate",result="injected"\} [1-9]/,
    );
    assert.match(
      metrics.body,
      /config_reloader_webhook_requests_total\{path="\/mutate",result="bad_request"\} [1-9]/,
    );
    assert.match(
      metrics.body,
      /config_reloader_webhook_requests_total\{path="\/mutate",result="injected"\} [1-9]/,
    );
    // One series per fact: the per-result counters of requests_total, no second counter of the same reviews.
    assert.doesNotMatch(metrics.body, /config_reloader_webhook_(injections|denials|internal_errors)_total/);
    assert.match(
      metrics.body,
      /config_reloader_webhook_request_duration_seconds_count\{path="\/mutate"\} [1-9]/,
    );
  });

  it('re-reads rotated certificate files without a restart, and ignores a half-written pair', async () => {
    const before = await servedFingerprint(server.url, ca);
    // A key that does not match the certificate: the server must keep the old pair.
    const other = await generateCertBundle({ hosts: ['localhost', '127.0.0.1'] });
    await writeFile(join(dir, 'tls.key'), other.key);
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(await servedFingerprint(server.url, ca), before);
    // A complete rotation, written the way the kubelet does (new file, then rename over the old one).
    await writeFile(join(dir, 'tls.crt.new'), other.cert);
    await rename(join(dir, 'tls.crt.new'), join(dir, 'tls.crt'));
    const want = new X509Certificate(other.cert).fingerprint256;
    for (
      let i = 0;
      i < 100 && (await servedFingerprint(server.url, other.caCert).catch(() => '')) !== want;
      i++
    ) {
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(await servedFingerprint(server.url, other.caCert), want);
    assert.equal(server.metrics.certificateReloads.get(), 1);
    assert.ok(logLines.some((l) => l.includes('still serving the previous certificate')));
    ca = other.caCert;
  });

  it('fails /readyz while draining and keeps answering reviews', async () => {
    server.drain();
    assert.equal((await httpsRequest(`${server.url}/readyz`, { ca })).status, 503);
    assert.equal(
      (await httpsRequest(`${server.url}/mutate`, { ca, method: 'POST', body: SAMPLE })).status,
      200,
    );
  });

  it('never logs the pod object, even at debug level', () => {
    assert.ok(!logLines.some((l) => l.includes('victoriametrics/vmagent') || l.includes('yyyyyyyy')));
  });
});
