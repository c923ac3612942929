import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

export const LOG_LEVELS: readonly LevelWithSilent[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/**
 * Paths that could carry Secret content, tokens or keys, wherever an object or request lands in a log
 * line. Code never logs them on purpose; redaction is the second line of defence.
 */
export const REDACT_PATHS = [
  'data',
  'stringData',
  'binaryData',
  '*.data',
  '*.stringData',
  '*.binaryData',
  '*.*.data',
  '*.*.stringData',
  '*.*.binaryData',
  'token',
  '*.token',
  'key',
  '*.key',
  'privateKey',
  '*.privateKey',
  'authorization',
  '*.authorization',
  'req.headers.authorization',
  'headers.authorization',
];

export function isLogLevel(value: string): value is LevelWithSilent {
  return (LOG_LEVELS as readonly string[]).includes(value);
}

export interface LogOptions {
  level?: LevelWithSilent;
  name: string;
  /** Where lines go; stdout by default. Tests pass a stream to read them. */
  destination?: NodeJS.WritableStream;
}

/** The one logger constructor of the project: pino JSON with redaction and ISO timestamps. */
export function createLogger(opts: LogOptions): Logger {
  return pino(
    {
      name: opts.name,
      level: opts.level ?? 'info',
      redact: { paths: REDACT_PATHS, censor: '[REDACTED]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    opts.destination ?? pino.destination({ dest: 1, sync: false }),
  );
}
