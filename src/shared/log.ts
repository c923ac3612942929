import fs from 'node:fs';
import { hostname } from 'node:os';
import { pino, type Logger, type LevelWithSilent } from 'pino';
import { Counter, type Registry } from './metrics.ts';

export type { Logger };

export const LOG_LEVELS: readonly LevelWithSilent[] = [
  'fatal',
  'error',
  'warn',
  'info',
  'debug',
  'trace',
  'silent',
];

const CENSOR = '[REDACTED]';

/**
 * Keys (compared in lower case) whose value is never logged, at any depth. Code never logs Secret content, tokens
 * or keys on purpose; this scrubbing of every log object (below) is the second line of defence.
 */
const REDACTED_KEYS = new Set([
  'data',
  'stringdata',
  'binarydata',
  'token',
  'bearertoken',
  'accesstoken',
  'refreshtoken',
  'idtoken',
  'id-token',
  'password',
  'authorization',
  'proxy-authorization',
  'cookie',
  'set-cookie',
  'key',
  'privatekey',
  'cakey',
  'client-key-data',
  'token-data',
]);

/** The same keys when they appear as JSON inside text (an error message quoting a response body); `\\*` matches escaped JSON. */
const JSON_KEY =
  /(\\*)"(data|stringData|binaryData|token|bearerToken|accessToken|password|authorization|key|privateKey|caKey)\1"\s*:\s*/gi;
const PEM_PRIVATE_KEY = /-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----[\s\S]*?(?:-----END \1PRIVATE KEY-----|$)/g;
const BEARER = /\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+/gi;
const JWT = /\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*/g;

/**
 * Where the JSON value starting at `from` ends, in text whose quotes are escaped `escapes` times; the end of the
 * text when it is cut short (redacting too much is the safe side).
 */
function jsonValueEnd(text: string, from: number, escapes: number): number {
  const structuralQuote = (i: number): boolean => {
    if (text[i] !== '"') return false;
    let run = 0;
    while (i - run - 1 >= 0 && text[i - run - 1] === '\\') run++;
    return run === escapes;
  };
  const start = from + escapes;
  if (structuralQuote(start)) {
    for (let i = start + 1; i < text.length; i++) if (structuralQuote(i)) return i + 1;
    return text.length;
  }
  if (text[from] !== '{' && text[from] !== '[') {
    const m = /[,}\]\s]/.exec(text.slice(from));
    return m ? from + m.index : text.length;
  }
  let depth = 0;
  let inString = false;
  for (let i = from; i < text.length; i++) {
    if (structuralQuote(i)) inString = !inString;
    else if (inString) continue;
    else if (text[i] === '{' || text[i] === '[') depth++;
    else if (text[i] === '}' || text[i] === ']') {
      depth--;
      if (depth === 0) return i + 1;
    }
  }
  return text.length;
}

/** What every pattern below needs somewhere in the text; most log strings have none and are returned as they are. */
const MAYBE_SECRET = /PRIVATE KEY|bearer|basic|eyJ|"/i;

/** Removes private keys, bearer tokens, JWTs and the values of secret JSON fields from free text. */
export function scrubText(text: string): string {
  if (!MAYBE_SECRET.test(text)) return text;
  let out = text
    .replace(PEM_PRIVATE_KEY, `${CENSOR} private key`)
    .replace(BEARER, `$1 ${CENSOR}`)
    .replace(JWT, CENSOR);
  if (!out.includes('"')) return out;
  let result = '';
  let last = 0;
  JSON_KEY.lastIndex = 0;
  for (let m = JSON_KEY.exec(out); m; m = JSON_KEY.exec(out)) {
    const valueStart = m.index + m[0].length;
    const end = jsonValueEnd(out, valueStart, m[1]!.length);
    result += `${out.slice(last, valueStart)}${m[1]}"${CENSOR}${m[1]}"`;
    last = end;
    JSON_KEY.lastIndex = Math.max(end, valueStart + 1);
  }
  out = result + out.slice(last);
  return out;
}

const MAX_DEPTH = 12;

function isErrorLike(v: object): v is Error {
  return (
    v instanceof Error || (typeof (v as Error).message === 'string' && typeof (v as Error).stack === 'string')
  );
}

/**
 * A copy of a log object with secret keys censored at any depth, text scrubbed, Buffers reduced to their size and
 * errors serialized (pino's err shape, with causes) and scrubbed. Errors come out with a null prototype so that
 * pino's err serializer, which Fastify's child loggers add again, passes them through unchanged.
 */
function scrub(value: unknown, depth: number, seen: WeakSet<object>): unknown {
  if (typeof value === 'string') return scrubText(value);
  if (typeof value !== 'object' || value === null) return value;
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) return `[${value.byteLength} bytes]`;
  if (seen.has(value)) return '[Circular]';
  if (depth > MAX_DEPTH) return '[too deep]';
  seen.add(value);
  try {
    if (Array.isArray(value)) return value.map((v) => scrub(v, depth + 1, seen));
    if (isErrorLike(value)) {
      const serialized = pino.stdSerializers.err(value) as unknown as Record<string, unknown>;
      const out: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
      for (const [k, v] of Object.entries(serialized)) {
        out[k] = REDACTED_KEYS.has(k.toLowerCase()) ? CENSOR : scrub(v, depth + 1, seen);
      }
      return out;
    }
    // Dates, URLs and the like print through toJSON and hold nothing secret.
    if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return value;
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      out[k] = REDACTED_KEYS.has(k.toLowerCase()) ? CENSOR : scrub(v, depth + 1, seen);
    }
    return out;
  } finally {
    seen.delete(value);
  }
}

/** The scrubbed copy of one log object or set of bindings. */
export function scrubLogObject(obj: Record<string, unknown>): Record<string, unknown> {
  return scrub(obj, 0, new WeakSet()) as Record<string, unknown>;
}

export function isLogLevel(value: string): value is LevelWithSilent {
  return (LOG_LEVELS as readonly string[]).includes(value);
}

/** What pino writes lines to: any object with write(); flush() (pino's logger.flush) when buffered. */
export interface LineSink {
  write(line: string): boolean;
  flush?(cb?: (err?: Error) => void): void;
}

/** How much stdout may hold back, in characters, while its reader does not read: beyond it lines are dropped. */
export const STDOUT_BUFFER_LIMIT = 1024 * 1024;

/** Lines dropped because stdout's reader stalled, for every logger of the process; registerLogMetrics exposes it. */
export const logLinesDropped = new Counter(
  'config_reloader_log_lines_dropped_total',
  `Log lines dropped because stdout was not being read (the process holds back at most ${STDOUT_BUFFER_LIMIT} characters instead of waiting).`,
);

const registered = new WeakSet<Registry>();

/** Adds the logging counters to a metrics registry (once per registry). */
export function registerLogMetrics(registry: Registry): void {
  if (registered.has(registry)) return;
  registered.add(registry);
  registry.register(logLinesDropped);
}

let stdoutSink: LineSink | undefined;

/** Between retries while stdout does not take lines: from 5 ms, doubling up to 250 ms. */
const RETRY_MIN_MS = 5;
const RETRY_MAX_MS = 250;
/** At exit, how long the last lines may wait for a slow reader before they are given up. */
const EXIT_FLUSH_MS = 500;

function lineCount(text: string | Buffer): number {
  let n = 0;
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) n++;
  return n;
}

/**
 * Makes fd 1 non-blocking when it is a pipe or a socket (a container's stdout), so that a write to it never waits
 * for the reader. Node's own process.stdout does this for such an fd (libuv's uv_pipe_open sets O_NONBLOCK on it),
 * so creating it is the way; it is never written to here, and unref'd by Node. A file never stalls a write, and a
 * terminal stays blocking (process.stdout makes it so), as it always was.
 */
function nonBlockingStdout(): void {
  try {
    const stat = fs.fstatSync(1);
    if (stat.isFIFO() || stat.isSocket()) void process.stdout;
  } catch {
    // No fd 1: every write fails and its lines are counted as dropped.
  }
}

/**
 * stdout, for every logger of the process (so lines keep their order): the lines logged during one turn of the
 * event loop are written together, synchronously, at the end of that turn (setImmediate), and whatever is left
 * when the process exits, at exit. An asynchronous write per line (pino's async destination) costs a thread-pool
 * round trip per line, about 20 µs of CPU per admission review on the benchmark machines, and a synchronous
 * write per line a system call each; under load one write now carries the lines of many reviews.
 *
 * Logging never blocks the process. fd 1 is non-blocking (nonBlockingStdout), so when whatever reads stdout (the
 * container runtime) stalls and the pipe is full, a write takes what fits and the rest waits here, retried on a
 * timer, instead of the event loop waiting for the reader (which made the webhook miss its reviews' deadlines).
 * What waits is bounded (STDOUT_BUFFER_LIMIT): past it, lines are dropped and counted (logLinesDropped) until
 * everything held back has been written; then one warning line says how many were dropped, where they were.
 * A line is never cut: a write that took part of one is finished before anything else.
 */
export function batchedStdout(name = 'log'): LineSink {
  if (stdoutSink) return stdoutSink;
  nonBlockingStdout();
  /** The unwritten end of what a write took only in part, written before anything else. */
  let head: Buffer | undefined;
  /** Lines not written yet, in order. */
  let pending = '';
  /** Dropping: the buffer filled up; lines are dropped until it has all been written. */
  let dropped = 0;
  let scheduled = false;
  let retry: NodeJS.Timeout | undefined;
  let retryMs = RETRY_MIN_MS;

  /** Bytes written; 0 when the pipe is full. Any other failure (no reader left, no fd 1) discards the data as dropped lines. */
  const tryWrite = (data: string | Buffer): number => {
    try {
      return typeof data === 'string' ? fs.writeSync(1, data) : fs.writeSync(1, data);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') return 0;
      logLinesDropped.inc({}, lineCount(data));
      return typeof data === 'string' ? Buffer.byteLength(data) : data.length;
    }
  };

  /** Writes what it can, without waiting; true when nothing is left. */
  const writeOut = (): boolean => {
    for (;;) {
      if (head !== undefined) {
        const n = tryWrite(head);
        if (n < head.length) {
          head = head.subarray(n);
          return false;
        }
        head = undefined;
      }
      if (pending !== '') {
        const lines = pending;
        pending = '';
        const n = tryWrite(lines);
        if (n < Buffer.byteLength(lines)) {
          head = Buffer.from(lines).subarray(n);
          return false;
        }
      }
      if (dropped === 0) return true;
      // Everything held back is out: say what is missing, at the place it is missing from.
      pending = `${JSON.stringify({
        level: 'warn',
        time: new Date().toISOString(),
        pid: process.pid,
        hostname: hostname(),
        name,
        droppedLines: dropped,
        msg: `stdout was not being read: ${dropped} log line(s) were dropped here`,
      })}\n`;
      dropped = 0;
    }
  };

  const flushNow = (): void => {
    scheduled = false;
    if (retry !== undefined) {
      clearTimeout(retry);
      retry = undefined;
    }
    const before = (head?.length ?? 0) + pending.length;
    if (writeOut()) {
      retryMs = RETRY_MIN_MS;
      return;
    }
    // The reader is slow or stalled: try again later, sooner when this write made progress.
    const progressed = (head?.length ?? 0) + pending.length < before;
    retryMs = progressed ? RETRY_MIN_MS : Math.min(retryMs * 2, RETRY_MAX_MS);
    retry = setTimeout(flushNow, retryMs);
    // Pending lines never keep the process alive; what is left at exit gets its last chance below.
    retry.unref();
  };

  /** At exit: write what is left, waiting a little for a slow reader, never for a stalled one. */
  const flushAtExit = (): void => {
    const deadline = Date.now() + EXIT_FLUSH_MS;
    const pause = new Int32Array(new SharedArrayBuffer(4));
    while (!writeOut() && Date.now() < deadline) Atomics.wait(pause, 0, 0, RETRY_MIN_MS);
  };
  process.once('exit', flushAtExit);

  stdoutSink = {
    write(line: string): boolean {
      if (dropped > 0 || (head?.length ?? 0) + pending.length + line.length > STDOUT_BUFFER_LIMIT) {
        dropped++;
        logLinesDropped.inc();
        return true;
      }
      pending += line;
      // While a retry is due, it writes this line too, after those held back.
      if (!scheduled && retry === undefined) {
        scheduled = true;
        setImmediate(flushNow);
      }
      return true;
    },
    flush(cb) {
      flushNow();
      cb?.();
    },
  };
  return stdoutSink;
}

export interface LogOptions {
  level?: LevelWithSilent;
  name: string;
  /** Where lines go; stdout (batched per event-loop turn) by default. Tests pass a stream to read them. */
  destination?: NodeJS.WritableStream | LineSink;
}

/** The one logger constructor of the project: pino JSON, every object scrubbed of secrets, ISO timestamps. */
export function createLogger(opts: LogOptions): Logger {
  const logger = pino(
    {
      name: opts.name,
      level: opts.level ?? 'info',
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: {
        level: (label) => ({ level: label }),
        log: scrubLogObject,
        bindings: scrubLogObject,
      },
      // The message too: an error passed as the only argument becomes the message.
      serializers: { msg: (msg: unknown) => (typeof msg === 'string' ? scrubText(msg) : msg) },
    },
    opts.destination ?? batchedStdout(opts.name),
  );
  // pino gives children no bindings formatter, so their bindings are scrubbed here; every descendant inherits this.
  const child = logger.child;
  logger.child = function (this: Logger, bindings: Record<string, unknown>, options?: object) {
    return child.call(this, scrubLogObject(bindings), options);
  } as Logger['child'];
  return logger;
}
