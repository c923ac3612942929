import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ApiException } from '@kubernetes/client-node';
import { createLogger, LOG_LEVELS, type Logger } from '../../src/shared/log.ts';

/**
 * Redaction proof: objects shaped like what this project handles (Secrets, watch events, kube API errors with
 * bodies, tokens, Authorization headers, private keys, errors whose message or stack carry them) go through
 * createLogger at every level, and no secret value appears in the output.
 */

const SECRET_VALUE = 'hunter2-s3cr3t-payload';
const SECRET_B64 = Buffer.from(SECRET_VALUE).toString('base64');
const TOKEN =
  'eyJhbGciOiJSUzI1NiIsImtpZCI6InRlc3QifQ.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6c2hvcDpkZWZhdWx0In0.c2lnbmF0dXJlLXRlc3Q';
const OPAQUE_TOKEN = 'sha256~opaque-token-abcdef0123456789';
const PRIVATE_KEY = [
  '-----BEGIN PRIVATE KEY-----',
  'MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgPRIVATEKEYMATERIAL',
  'hRANCAAQk1hfF0x1y3sYaBcdEFgHIJklmNOpqrsTUvwxYZ0123456789abcdefg',
  '-----END PRIVATE KEY-----',
].join('\n');
const KEY_LINE = 'PRIVATEKEYMATERIAL';
const NEEDLES = [SECRET_VALUE, SECRET_B64, TOKEN, OPAQUE_TOKEN, KEY_LINE];

const secretObject = {
  apiVersion: 'v1',
  kind: 'Secret',
  metadata: { name: 'app-config', namespace: 'shop', resourceVersion: '42' },
  type: 'Opaque',
  data: { password: SECRET_B64 },
  stringData: { plain: SECRET_VALUE },
};
const secretJson = JSON.stringify(secretObject);

/** Each case is one call shape: what the code could hand to the logger. */
const CASES: Array<[string, (log: Logger, level: (typeof LOG_LEVELS)[number]) => void]> = [
  ['a Secret as the merging object', (log, l) => log[l](secretObject, 'secret')],
  ['a Secret under a key', (log, l) => log[l]({ secret: secretObject }, 'secret')],
  [
    'a watch event carrying a Secret',
    (log, l) => log[l]({ event: { type: 'MODIFIED', object: secretObject } }, 'event'),
  ],
  ['a list of Secrets', (log, l) => log[l]({ list: { items: [secretObject] } }, 'list')],
  ['a ConfigMap-like binaryData', (log, l) => log[l]({ cm: { binaryData: { b: SECRET_B64 } } }, 'cm')],
  ['a token', (log, l) => log[l]({ token: TOKEN }, 'token')],
  ['a nested token', (log, l) => log[l]({ auth: { token: OPAQUE_TOKEN } }, 'token')],
  ['a bearerToken field', (log, l) => log[l]({ user: { bearerToken: TOKEN } }, 'kubeconfig user')],
  [
    'a token file content',
    (log, l) =>
      log[l]({ cluster: { server: 'https://x', token: TOKEN, accessToken: OPAQUE_TOKEN } }, 'cluster'),
  ],
  [
    'a password',
    (log, l) => log[l]({ password: SECRET_VALUE, user: { password: SECRET_VALUE } }, 'password'),
  ],
  [
    'an authorization header (lower case)',
    (log, l) => log[l]({ headers: { authorization: `Bearer ${TOKEN}` } }, 'req'),
  ],
  [
    'an Authorization header (as client-node sends it)',
    (log, l) => log[l]({ request: { headers: { Authorization: `Bearer ${TOKEN}` } } }, 'req'),
  ],
  [
    'a Fastify-style req',
    (log, l) =>
      log[l](
        {
          req: {
            method: 'GET',
            headers: { authorization: `Bearer ${OPAQUE_TOKEN}`, cookie: `s=${SECRET_VALUE}` },
          },
        },
        'req',
      ),
  ],
  ['a private key', (log, l) => log[l]({ key: PRIVATE_KEY }, 'key')],
  ['a TLS pair', (log, l) => log[l]({ tls: { cert: 'CERT', key: PRIVATE_KEY } }, 'tls')],
  [
    'a certificate bundle',
    (log, l) =>
      log[l]({ bundle: { caCert: 'CA', caKey: PRIVATE_KEY, cert: 'C', key: PRIVATE_KEY } }, 'bundle'),
  ],
  [
    'a certificate bundle at the top',
    (log, l) => log[l]({ caCert: 'CA', caKey: PRIVATE_KEY, cert: 'C', key: PRIVATE_KEY }, 'bundle'),
  ],
  [
    'a privateKey field',
    (log, l) => log[l]({ privateKey: PRIVATE_KEY, signer: { privateKey: PRIVATE_KEY } }, 'key'),
  ],
  [
    'an Error whose message has a Secret',
    (log, l) => log[l]({ err: new Error(`cannot parse ${secretJson}`) }, 'failed'),
  ],
  [
    'an Error whose message has a token',
    (log, l) => log[l]({ err: new Error(`Authorization: Bearer ${TOKEN} refused`) }, 'failed'),
  ],
  [
    'an Error whose message has a private key',
    (log, l) => log[l]({ err: new Error(`bad key:\n${PRIVATE_KEY}`) }, 'failed'),
  ],
  ['an Error as the merging object', (log, l) => log[l](new Error(`boom ${secretJson}`), 'failed')],
  [
    'an Error with a cause carrying a Secret',
    (log, l) => log[l]({ err: new Error('outer', { cause: new Error(`inner ${secretJson}`) }) }, 'failed'),
  ],
  [
    'an Error with body and headers properties',
    (log, l) => {
      const err = Object.assign(new Error('request failed'), {
        body: secretObject,
        headers: { Authorization: `Bearer ${TOKEN}` },
        options: { headers: { authorization: `Bearer ${OPAQUE_TOKEN}` } },
      });
      log[l]({ err }, 'failed');
    },
  ],
  [
    "client-node's ApiException with a Secret in its body (its message repeats the body)",
    (log, l) =>
      log[l](
        { err: new ApiException(409, `Conflict`, secretJson, { authorization: `Bearer ${TOKEN}` }) },
        'api error',
      ),
  ],
  [
    'an ApiException under another key',
    (log, l) => log[l]({ error: new ApiException(500, 'oops', secretObject, {}) }, 'api error'),
  ],
  ['a Secret in the message string', (log, l) => log[l](`read ${secretJson}`)],
  ['a token in a formatted message', (log, l) => log[l]({}, 'token is %s', `Bearer ${TOKEN}`)],
  ['a private key in the message string', (log, l) => log[l](`loaded ${PRIVATE_KEY}`)],
  [
    'a child logger binding',
    (log, l) => log.child({ token: TOKEN, source: { data: { k: SECRET_B64 } } })[l]('child'),
  ],
];

function capture(): { log: Logger; output: () => string } {
  const stream = new PassThrough();
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  return {
    log: createLogger({ name: 'redaction-test', level: 'trace', destination: stream }),
    output: () => Buffer.concat(chunks).toString('utf8'),
  };
}

void describe('log redaction', () => {
  const levels = LOG_LEVELS.filter((l) => l !== 'silent');
  for (const [name, call] of CASES) {
    void it(`${name}: no secret value at any level`, () => {
      const { log, output } = capture();
      for (const level of levels) call(log, level);
      const text = output();
      const lines = text.split('\n').filter(Boolean);
      assert.equal(lines.length, levels.length, 'one line per level');
      for (const line of lines) assert.doesNotThrow(() => JSON.parse(line), 'every line stays valid JSON');
      for (const needle of NEEDLES) {
        // The leaked value is not printed: only which needle and where it would be.
        const at = text.indexOf(needle);
        assert.equal(at, -1, `a secret value (${NEEDLES.indexOf(needle)}) leaked into the log of "${name}"`);
      }
    });
  }

  void it('keeps what is not secret: names, namespaces, messages, error types and stack frames', () => {
    const { log, output } = capture();
    log.error({ secret: secretObject, err: new TypeError(`bad value in ${secretJson}`) }, 'sync failed');
    const line = JSON.parse(output()) as Record<string, any>;
    assert.equal(line.msg, 'sync failed');
    assert.equal(line.secret.metadata.name, 'app-config');
    assert.equal(line.secret.data, '[REDACTED]');
    assert.equal(line.err.type, 'TypeError');
    assert.match(line.err.message, /^bad value in /);
    assert.match(line.err.stack, /log\.test\.ts/);
  });
});

const LOG_MODULE = fileURLToPath(new URL('../../src/shared/log.ts', import.meta.url));

interface Tick {
  i: number;
  maxLagMs: number;
  dropped: number;
}

/**
 * A child that logs 50 lines of about 1 KiB every 10 ms to stdout (the default destination, a pipe here) and
 * reports on stderr, after each tick, how many lines it logged, the worst delay of its 10 ms timer and the
 * dropped-lines counter. On 'stop' (IPC) it logs one last line and exits.
 */
function startLoggingChild(): { child: ChildProcess; ticks: Tick[] } {
  const script = `
    const { createLogger, logLinesDropped } = await import(${JSON.stringify(LOG_MODULE)});
    const log = createLogger({ name: 'stalled-reader' });
    const pad = 'x'.repeat(1000);
    let i = 0;
    let maxLagMs = 0;
    let last = performance.now();
    const timer = setInterval(() => {
      const now = performance.now();
      maxLagMs = Math.max(maxLagMs, now - last - 10);
      last = now;
      for (let k = 0; k < 50; k++) log.info({ i: i++, pad }, 'line');
      process.stderr.write(JSON.stringify({ i, maxLagMs, dropped: logLinesDropped.get() }) + '\\n');
    }, 10);
    process.on('message', () => {
      clearInterval(timer);
      log.info({ last: true, i, dropped: logLinesDropped.get() }, 'done');
      process.disconnect();
    });
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  const ticks: Tick[] = [];
  let partial = '';
  child.stderr!.on('data', (c: Buffer) => {
    partial += c.toString('utf8');
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      if (line.startsWith('{')) ticks.push(JSON.parse(line) as Tick);
      else process.stderr.write(`child: ${line}\n`);
    }
  });
  return { child, ticks };
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

void describe('logging to a stdout nobody reads', () => {
  void it('does not keep an exiting process waiting for a stalled reader', async () => {
    const script = `
      const { createLogger } = await import(${JSON.stringify(LOG_MODULE)});
      const log = createLogger({ name: 'exiting' });
      const pad = 'x'.repeat(1000);
      for (let i = 0; i < 3000; i++) log.info({ i, pad }, 'line');
      setImmediate(() => process.exit(0));
    `;
    const started = performance.now();
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      // stdout is never read.
      const code = await Promise.race([
        new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c))),
        sleep(10_000).then(() => 'still running'),
      ]);
      assert.equal(code, 0);
      assert.ok(performance.now() - started < 5_000, 'exited within the last-lines grace');
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });

  void it('never blocks the process: lines beyond the buffer are dropped and counted, and logging resumes with one line saying how many', async () => {
    const { child, ticks } = startLoggingChild();
    try {
      // Phase 1: nobody reads the child's stdout (the stream is not flowing, so the pipe fills up).
      await sleep(1_500);
      const stalled = ticks.at(-1);
      assert.ok(stalled, 'the child reported while its stdout was not read');
      // 150 ticks in 1.5 s at most; a blocked child would stop after the pipe's few hundred KiB.
      assert.ok(stalled.i >= 3_000, `the child logged ${stalled.i} lines while stdout was stalled`);
      assert.ok(stalled.maxLagMs < 500, `its 10 ms timer was late by up to ${stalled.maxLagMs} ms`);
      assert.ok(stalled.dropped > 0, 'lines beyond the buffer were dropped and counted');
      // What it holds back is bounded: at most about 1 MiB of lines, the rest dropped.
      assert.ok(
        stalled.i - stalled.dropped < 2_000,
        `${stalled.i - stalled.dropped} lines kept of ${stalled.i}`,
      );

      // Phase 2: the reader is back.
      const out: string[] = [];
      let partial = '';
      child.stdout!.on('data', (c: Buffer) => {
        partial += c.toString('utf8');
        const lines = partial.split('\n');
        partial = lines.pop() ?? '';
        out.push(...lines);
      });
      await sleep(700);
      child.send('stop');
      const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
      assert.equal(code, 0);
      assert.equal(partial, '', 'no cut line');

      const lines = out.map(
        (l) =>
          JSON.parse(l) as {
            i?: number;
            droppedLines?: number;
            msg: string;
            dropped?: number;
            level: string;
          },
      );
      const notices = lines.filter((l) => l.droppedLines !== undefined);
      assert.ok(notices.length >= 1, 'a line says that lines were dropped');
      assert.equal(notices[0]!.level, 'warn');
      assert.match(notices[0]!.msg, /stdout was not being read: \d+ log line\(s\) were dropped/);
      // Every line is there, in order, except the dropped ones, each gap announced by a notice of its size.
      let expected = 0;
      let announced = 0;
      for (const line of lines) {
        if (line.droppedLines !== undefined) {
          expected += line.droppedLines;
          announced += line.droppedLines;
        } else if (line.i !== undefined && line.msg === 'line') {
          assert.equal(line.i, expected, 'lines in order, gaps only where a notice says');
          expected++;
        }
      }
      const last = lines.at(-1)!;
      assert.equal(last.msg, 'done', 'logging resumed after the stall');
      assert.equal(last.i, expected);
      assert.equal(last.dropped, announced, 'the counter matches the notices');
      assert.ok(announced >= stalled.dropped);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });
});
