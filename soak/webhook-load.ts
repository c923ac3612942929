import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import type { TLSSocket } from 'node:tls';

/**
 * A bounded admission load generator for the load-with-faults test and the webhook soak: `concurrency` loops send
 * AdmissionReviews back to back for a while, one in `malformedEvery` of them malformed, and every request's fate is
 * classified. Not a benchmark (bench/ measures speed); this checks that nothing is lost.
 */

const SAMPLE = readFileSync(new URL('../test/fixtures/admission-review.json', import.meta.url), 'utf8');

type Json = Record<string, unknown>;

interface Review {
  request: { uid: string; operation: string; object: { metadata: { annotations: Record<string, string> } } };
}

function variant(edit: (review: Review) => void): string {
  const review = JSON.parse(SAMPLE) as Review;
  review.request.uid = '__UID__';
  edit(review);
  return JSON.stringify(review);
}

/** Valid reviews with every decision: injected, skipped (not opted in, opted out), denied; `__UID__` is replaced per request. */
const VALID: Array<{ path: string; body: string }> = [
  { path: '/mutate', body: variant(() => {}) },
  { path: '/mutate/namespace', body: variant(() => {}) },
  {
    path: '/mutate',
    body: variant((r) => delete r.request.object.metadata.annotations['config-reloader.io/inject']),
  },
  {
    path: '/mutate/namespace',
    body: variant((r) => (r.request.object.metadata.annotations['config-reloader.io/inject'] = 'false')),
  },
  {
    path: '/mutate',
    body: variant(
      (r) => (r.request.object.metadata.annotations['config-reloader.io/reload-url'] = 'http://10.0.0.1/'),
    ),
  },
  {
    path: '/mutate',
    body: variant(
      (r) => (r.request.object.metadata.annotations['config-reloader.io/sidecar-mode'] = 'legacy'),
    ),
  },
  { path: '/mutate', body: variant((r) => (r.request.operation = 'UPDATE')) },
];

/** Malformed requests; each must get a 4xx with a message. */
const MALFORMED: Array<{ body: string; contentType: string }> = [
  { body: SAMPLE.slice(0, SAMPLE.length / 2), contentType: 'application/json' },
  { body: 'not json at all', contentType: 'application/json' },
  { body: '', contentType: 'application/json' },
  {
    body: SAMPLE.replace('admission.k8s.io/v1', 'admission.k8s.io/v1beta1'),
    contentType: 'application/json',
  },
  { body: '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}', contentType: 'application/json' },
  { body: SAMPLE, contentType: 'text/plain' },
  { body: '{"__proto__":{"x":1},"kind":"AdmissionReview"}', contentType: 'application/json' },
  { body: `[${'1,'.repeat(10_000)}1]`, contentType: 'application/json' },
];

export interface LoadOptions {
  url: string;
  ca: string;
  durationMs: number;
  concurrency: number;
  /** One request in this many is malformed (100 = 1%). */
  malformedEvery: number;
  /** Reuse connections (as the API server does) or open one per request. */
  keepAlive: boolean;
  /** Stop early, e.g. once the server is gone. */
  until?: () => boolean;
  /** Pause between a loop's requests, to keep a soak's rate moderate. */
  pauseMs?: number;
  /** Called with each request's fate as it is known. */
  onFate?: (fate: Fate) => void;
}

export type Fate =
  /** A valid review answered 200 with a full AdmissionReview for its uid. */
  | 'ok'
  /** A malformed request answered 4xx with a message. */
  | 'rejected'
  /** No connection: refused, or closed before the TLS handshake finished, so no request was sent. */
  | 'refused'
  /** A request written on a reused keep-alive connection that the server had already closed, with no byte back. */
  | 'stale-connection'
  /** Anything else: a wrong status or body, or a connection cut after the request was sent. */
  | 'lost';

export interface LoadReport {
  fates: Record<Fate, number>;
  valid: number;
  malformed: number;
  /** Descriptions of the first few lost requests. */
  lost: string[];
  elapsedMs: number;
}

interface Attempt {
  fate: Fate;
  detail?: string;
}

function send(
  agent: Agent | false,
  url: string,
  ca: string,
  path: string,
  body: string,
  contentType: string,
): Promise<Attempt & { status?: number; text?: string }> {
  return new Promise((resolve) => {
    let secured = false;
    let gotBytes = false;
    let settled = false;
    const done = (a: Attempt & { status?: number; text?: string }): void => {
      if (settled) return;
      settled = true;
      resolve(a);
    };
    const req = request(
      `${url}${path}`,
      { method: 'POST', agent, ca, headers: { 'content-type': contentType }, timeout: 30_000 },
      (res) => {
        gotBytes = true;
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          done({ fate: 'ok', status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }),
        );
        res.on('error', (err) => done({ fate: 'lost', detail: `response cut: ${err.message}` }));
        res.on('aborted', () => done({ fate: 'lost', detail: 'response aborted' }));
      },
    );
    req.on('socket', (socket) => {
      const tls = socket as TLSSocket;
      // A socket from the keep-alive pool is already connected.
      if (req.reusedSocket) secured = true;
      else tls.once('secureConnect', () => (secured = true));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (!secured) done({ fate: 'refused', detail: err.code ?? err.message });
      else if (
        req.reusedSocket &&
        !gotBytes &&
        (err.code === 'ECONNRESET' || err.code === 'EPIPE' || err.message === 'socket hang up')
      )
        done({ fate: 'stale-connection', detail: err.code ?? err.message });
      else done({ fate: 'lost', detail: `${err.code ?? ''} ${err.message} after the request was sent` });
    });
    req.end(body);
  });
}

export async function runLoad(opts: LoadOptions): Promise<LoadReport> {
  const agent = opts.keepAlive
    ? new Agent({ ca: opts.ca, keepAlive: true, maxSockets: opts.concurrency })
    : false;
  const fates: Record<Fate, number> = { ok: 0, rejected: 0, refused: 0, 'stale-connection': 0, lost: 0 };
  const lost: string[] = [];
  let n = 0;
  let valid = 0;
  let malformed = 0;
  const started = Date.now();
  const record = (fate: Fate, detail: string): void => {
    fates[fate]++;
    opts.onFate?.(fate);
    if (fate === 'lost' && lost.length < 20) lost.push(detail);
  };
  const loop = async (): Promise<void> => {
    while (Date.now() - started < opts.durationMs && !opts.until?.()) {
      const i = n++;
      if (i % opts.malformedEvery === opts.malformedEvery - 1) {
        malformed++;
        const m = MALFORMED[i % MALFORMED.length]!;
        const a = await send(agent, opts.url, opts.ca, '/mutate', m.body, m.contentType);
        if (a.status === undefined) record(a.fate, `malformed #${i}: ${a.detail}`);
        else {
          let message: unknown;
          try {
            message = (JSON.parse(a.text ?? '') as { message?: unknown }).message;
          } catch {
            message = undefined;
          }
          const good = a.status >= 400 && a.status < 500 && typeof message === 'string' && message !== '';
          record(good ? 'rejected' : 'lost', `malformed #${i}: HTTP ${a.status} ${a.text?.slice(0, 120)}`);
        }
      } else {
        valid++;
        const v = VALID[i % VALID.length]!;
        const uid = `load-${i}`;
        const a = await send(
          agent,
          opts.url,
          opts.ca,
          v.path,
          v.body.replace('__UID__', uid),
          'application/json',
        );
        if (a.status === undefined) record(a.fate, `valid #${i}: ${a.detail}`);
        else {
          let answerUid: unknown;
          try {
            answerUid = (JSON.parse(a.text ?? '') as { response?: { uid?: unknown } }).response?.uid;
          } catch {
            answerUid = undefined;
          }
          record(
            a.status === 200 && answerUid === uid ? 'ok' : 'lost',
            `valid #${i}: HTTP ${a.status} ${a.text?.slice(0, 120)}`,
          );
        }
      }
      if (opts.pauseMs) await new Promise((r) => setTimeout(r, opts.pauseMs));
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency }, loop));
  if (agent) agent.destroy();
  return { fates, valid, malformed, lost, elapsedMs: Date.now() - started };
}

export interface WebhookProcess {
  child: ChildProcess;
  url: string;
  /** Every JSON log line so far. */
  lines: Json[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `node src/cli.ts webhook` on a free loopback port with a self-signed certificate written to `caOut`. */
export async function startWebhookProcess(caOut: string, extraArgs: string[] = []): Promise<WebhookProcess> {
  const cli = new URL('../src/cli.ts', import.meta.url).pathname;
  const child = spawn(
    process.execPath,
    [cli, 'webhook', '--host', '127.0.0.1', '--port', '0', '--ca-out', caOut, ...extraArgs],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const lines: Json[] = [];
  let buffered = '';
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (c: Buffer) => {
      buffered += c.toString();
      const parts = buffered.split('\n');
      buffered = parts.pop() ?? '';
      for (const line of parts) {
        try {
          const parsed = JSON.parse(line) as Json;
          lines.push(parsed);
          if (parsed.msg === 'webhook listening') resolve(parsed.url as string);
        } catch {
          // not a log line
        }
      }
    });
    void exited.then(({ code }) =>
      reject(new Error(`the webhook exited (${code}) before listening: ${stderr}`)),
    );
  });
  return { child, url, lines, exited };
}

/** The resident set size of a process, from /proc (Linux), in bytes. */
export function rssOf(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}
