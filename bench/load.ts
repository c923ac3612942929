/**
 * The load generator of the admission section, run as its own process (pinned to the other CPU) so that it never
 * shares an event loop with the server it measures. Prints one JSON line: the result.
 *
 *   node bench/load.ts '{"mode":"closed","url":...,"bodyFile":...,"durationS":5,"connections":16}'
 *
 * Modes:
 * - closed: autocannon, `connections` keep-alive connections each sending the next request as soon as the
 *   previous answer arrives: the server's throughput.
 * - autocannon-rate: autocannon with `overallRate` requests per second. autocannon paces per one-second window:
 *   each connection sends back to back until its share of the second is used, then waits for the next second.
 * - paced: an open-loop generator: request i is issued at start + i/rate over a keep-alive pool of up to
 *   `connections` sockets, whether or not earlier answers came back, as pod creations reach a webhook.
 * Latency is measured per request, in fractional milliseconds (autocannon's own histogram keeps whole ms only).
 */
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import autocannon from 'autocannon';
import { summarize, type Summary } from './lib/stats.ts';

export interface LoadSpec {
  mode: 'closed' | 'autocannon-rate' | 'paced';
  url: string;
  bodyFile: string;
  caFile: string;
  durationS: number;
  connections: number;
  rate?: number;
  /** Load for this long first, unmeasured (connections, JIT, heap growth): the same mode and rate. */
  warmupS?: number;
}

export interface LoadResult {
  mode: LoadSpec['mode'];
  requests: number;
  errors: number;
  non2xx: number;
  elapsedS: number;
  rps: number;
  latencyMs: Summary;
  /** paced only: how late the generator issued requests behind schedule (its own jitter), in ms. */
  sendLagMs?: Summary;
}

function runAutocannon(spec: LoadSpec, body: string, durationS: number): Promise<LoadResult> {
  const latencies: number[] = [];
  let errors = 0;
  let non2xx = 0;
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: spec.url,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
        connections: spec.connections,
        duration: durationS,
        ...(spec.mode === 'autocannon-rate' ? { overallRate: spec.rate } : {}),
      },
      (err) => {
        if (err) return reject(err);
        const elapsedS = (performance.now() - started) / 1000;
        resolve({
          mode: spec.mode,
          requests: latencies.length + non2xx,
          errors,
          non2xx,
          elapsedS,
          rps: latencies.length / durationS,
          latencyMs: summarize(latencies),
        });
      },
    );
    instance.on('response', (_client: unknown, statusCode: number, _bytes: number, responseTime: number) => {
      if (statusCode >= 200 && statusCode < 300) latencies.push(responseTime);
      else non2xx++;
    });
    instance.on('reqError', () => errors++);
  });
}

function runPaced(spec: LoadSpec, body: string): Promise<LoadResult> {
  const rate = spec.rate ?? 1000;
  const url = new URL(spec.url);
  const agent = new Agent({
    keepAlive: true,
    maxSockets: spec.connections,
    ca: readFileSync(spec.caFile, 'utf8'),
  });
  const payload = Buffer.from(body);
  const warmup = Math.round(rate * (spec.warmupS ?? 0));
  const total = warmup + Math.round(rate * spec.durationS);
  const intervalNs = BigInt(Math.round(1e9 / rate));
  const latencies: number[] = [];
  const lags: number[] = [];
  let errors = 0;
  let non2xx = 0;
  let issued = 0;
  let settled = 0;
  return new Promise((resolve) => {
    const start = process.hrtime.bigint();
    const finish = (): void => {
      agent.destroy();
      const elapsedS = Number(process.hrtime.bigint() - start) / 1e9 - (spec.warmupS ?? 0);
      resolve({
        mode: 'paced',
        requests: issued - warmup,
        errors,
        non2xx,
        elapsedS,
        rps: latencies.length / elapsedS,
        latencyMs: summarize(latencies),
        sendLagMs: summarize(lags),
      });
    };
    const done = (): void => {
      if (++settled === total) finish();
    };
    const send = (measured: boolean): void => {
      const sentAt = process.hrtime.bigint();
      const req = request(
        {
          host: url.hostname,
          port: url.port,
          path: url.pathname,
          method: 'POST',
          agent,
          headers: { 'content-type': 'application/json', 'content-length': payload.length },
        },
        (res) => {
          res.on('data', () => {});
          res.on('end', () => {
            const ms = Number(process.hrtime.bigint() - sentAt) / 1e6;
            if (res.statusCode === undefined || res.statusCode < 200 || res.statusCode >= 300) non2xx++;
            else if (measured) latencies.push(ms);
            done();
          });
        },
      );
      req.on('error', () => {
        errors++;
        done();
      });
      req.end(payload);
    };
    const tick = (): void => {
      const now = process.hrtime.bigint();
      while (issued < total && start + BigInt(issued) * intervalNs <= now) {
        const measured = issued >= warmup;
        if (measured) lags.push(Number(now - (start + BigInt(issued) * intervalNs)) / 1e6);
        issued++;
        send(measured);
      }
      if (issued < total) setImmediate(tick);
    };
    tick();
  });
}

const spec = JSON.parse(process.argv[2] ?? '{}') as LoadSpec;
const body = readFileSync(spec.bodyFile, 'utf8');
let result: LoadResult;
if (spec.mode === 'paced') result = await runPaced(spec, body);
else {
  if (spec.warmupS) await runAutocannon(spec, body, spec.warmupS);
  result = await runAutocannon(spec, body, spec.durationS);
}
process.stdout.write(`${JSON.stringify(result)}\n`);
