import { pino, type Logger, type LevelWithSilent } from 'pino';

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
const SECRET_KEYS = new Set([
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
        out[k] = SECRET_KEYS.has(k.toLowerCase()) ? CENSOR : scrub(v, depth + 1, seen);
      }
      return out;
    }
    // Dates, URLs and the like print through toJSON and hold nothing secret.
    if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return value;
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      out[k] = SECRET_KEYS.has(k.toLowerCase()) ? CENSOR : scrub(v, depth + 1, seen);
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

let stdoutSink: LineSink | undefined;

/**
 * stdout, for every logger of the process (so lines keep their order): the lines logged during one turn of the
 * event loop are written together, synchronously, at the end of that turn (setImmediate), and whatever is left
 * when the process exits, at exit. An asynchronous write per line (pino's async destination) costs a thread-pool
 * round trip per line, about 20 µs of CPU per admission review on the benchmark machines, and a synchronous
 * write per line a system call each; under load one write now carries the lines of many reviews. sonic-boom does
 * the writing, retrying when a full pipe answers EAGAIN: if whatever reads stdout (the container runtime) stalls,
 * the process waits for it instead of buffering lines without bound.
 */
export function batchedStdout(): LineSink {
  if (stdoutSink) return stdoutSink;
  const out = pino.destination({ dest: 1, sync: true });
  let pending = '';
  const flushSync = (): void => {
    if (pending === '') return;
    const lines = pending;
    pending = '';
    out.write(lines);
  };
  process.once('exit', flushSync);
  stdoutSink = {
    write(line: string): boolean {
      if (pending === '') setImmediate(flushSync);
      pending += line;
      return true;
    },
    flush(cb) {
      flushSync();
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
    opts.destination ?? batchedStdout(),
  );
  // pino gives children no bindings formatter, so their bindings are scrubbed here; every descendant inherits this.
  const child = logger.child;
  logger.child = function (this: Logger, bindings: Record<string, unknown>, options?: object) {
    return child.call(this, scrubLogObject(bindings), options);
  } as Logger['child'];
  return logger;
}
