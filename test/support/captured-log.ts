import { PassThrough } from 'node:stream';
import type { LevelWithSilent } from 'pino';
import { createLogger, type Logger } from '../../src/shared/log.ts';

/** A logger of the project's own kind whose JSON lines the test reads back, parsed, from `lines`. */
export function capturingLogger(
  name = 'test',
  level: LevelWithSilent = 'trace',
): { log: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new PassThrough();
  stream.on('data', (c: Buffer) => {
    for (const line of c.toString().split('\n'))
      if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
  });
  return { log: createLogger({ name, level, destination: stream }), lines };
}
