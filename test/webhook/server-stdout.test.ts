import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { httpsRequest } from '../support/https.ts';

const SAMPLE = JSON.parse(
  await readFile(new URL('../fixtures/admission-review.json', import.meta.url), 'utf8'),
) as { request: Record<string, unknown> };
const src = (path: string): string =>
  JSON.stringify(fileURLToPath(new URL(`../../src/${path}`, import.meta.url)));

/**
 * The webhook in a child process logging to its real stdout (the default destination), a pipe the test reads only
 * when it chooses. Once listening, the child logs 3 MiB of filler lines in one turn, more than the pipe and the
 * logger's buffer hold, as a burst of logging with a stalled container runtime would.
 */
function startChild(): { child: ChildProcess; ready: Promise<{ url: string; ca: string }> } {
  const script = `
    const { generateCertBundle } = await import(${src('certs/generate.ts')});
    const { DEFAULT_INJECTOR_CONFIG } = await import(${src('injection/config.ts')});
    const { createLogger } = await import(${src('shared/log.ts')});
    const { startWebhookServer } = await import(${src('webhook/server.ts')});
    const bundle = await generateCertBundle({ hosts: ['localhost', '127.0.0.1'] });
    const log = createLogger({ name: 'webhook' });
    const server = await startWebhookServer({
      host: '127.0.0.1',
      port: 0,
      tls: { material: { cert: bundle.cert, key: bundle.key }, onChange: () => {}, close: () => {} },
      config: DEFAULT_INJECTOR_CONFIG,
      log,
    });
    const pad = 'f'.repeat(1000);
    for (let i = 0; i < 3000; i++) log.info({ filler: i, pad }, 'filler');
    process.stderr.write(JSON.stringify({ url: server.url, ca: bundle.caCert }) + '\\n');
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const ready = new Promise<{ url: string; ca: string }>((resolve, reject) => {
    let text = '';
    child.stderr!.on('data', (c: Buffer) => {
      text += c.toString('utf8');
      const line = text.split('\n').find((l) => l.startsWith('{"url"'));
      if (line) resolve(JSON.parse(line) as { url: string; ca: string });
    });
    child.on('exit', (code) => reject(new Error(`the webhook child exited (${code}): ${text}`)));
  });
  return { child, ready };
}

function reviewBody(uid: string): string {
  return JSON.stringify({ ...SAMPLE, request: { ...SAMPLE.request, uid } });
}

async function waitFor(what: string, check: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

void describe('the webhook with a stalled stdout reader', () => {
  void it('keeps answering reviews at once, counts the log lines it drops, and logs again once stdout is read', async () => {
    const { child, ready } = startChild();
    try {
      const { url, ca } = await ready;
      // Nobody reads the child's stdout: the filler has filled the pipe and the logger's buffer.
      const latencies: number[] = [];
      for (let i = 0; i < 20; i++) {
        const started = performance.now();
        const res = await httpsRequest(`${url}/mutate`, {
          ca,
          method: 'POST',
          body: reviewBody(`stalled-${i}`),
          timeoutMs: 4_000,
        });
        latencies.push(performance.now() - started);
        assert.equal(res.status, 200);
        const review = res.json<{ response: { uid: string; patch?: string } }>();
        assert.equal(review.response.uid, `stalled-${i}`);
        assert.ok(review.response.patch, 'injected');
      }
      const slowest = Math.max(...latencies);
      assert.ok(slowest < 1_000, `the slowest review took ${Math.round(slowest)} ms with stdout stalled`);

      const metrics = await httpsRequest(`${url}/metrics`, { ca });
      const dropped = Number(/^config_reloader_log_lines_dropped_total (\d+)$/m.exec(metrics.body)?.[1]);
      assert.ok(dropped >= 20, `dropped-lines counter ${dropped}: the 20 reviews' lines at least`);

      // The reader is back.
      const lines: Array<Record<string, unknown>> = [];
      let partial = '';
      child.stdout!.on('data', (c: Buffer) => {
        partial += c.toString('utf8');
        const parts = partial.split('\n');
        partial = parts.pop() ?? '';
        for (const part of parts) lines.push(JSON.parse(part) as Record<string, unknown>);
      });
      await waitFor('the dropped-lines notice', () => lines.some((l) => l.droppedLines !== undefined), 5_000);
      const notice = lines.findIndex((l) => l.droppedLines !== undefined);
      assert.equal(lines[notice]!.droppedLines, dropped);
      assert.equal(lines[notice]!.name, 'webhook');
      assert.ok(
        !lines.some((l) => String(l.uid).startsWith('stalled-')),
        "the reviews' lines were among the dropped ones",
      );

      const res = await httpsRequest(`${url}/mutate`, {
        ca,
        method: 'POST',
        body: reviewBody('after-the-stall'),
      });
      assert.equal(res.status, 200);
      await waitFor(
        "the next review's log line",
        () => lines.some((l) => l.uid === 'after-the-stall' && l.msg === 'admission review'),
        5_000,
      );
      assert.ok(lines.findIndex((l) => l.uid === 'after-the-stall') > notice);
    } finally {
      child.kill('SIGKILL');
    }
  });
});
