import { finished } from 'node:stream';
import type { IncomingMessage } from 'node:http';

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

export interface WatchEvent {
  type: WatchEventType;
  object: Record<string, unknown>;
}

const TYPES = new Set<string>(['ADDED', 'MODIFIED', 'DELETED', 'BOOKMARK', 'ERROR']);
/** One event is one object; a Secret is at most 1 MiB, so anything far larger is a broken stream. */
export const MAX_EVENT_BYTES = 16 * 1024 * 1024;

export class WatchStreamError extends Error {}

/**
 * Splits a byte stream into newline-terminated lines (the watch protocol: one JSON event per line,
 * chunk boundaries anywhere). Holds at most one partial line.
 */
export class LineSplitter {
  private parts: Buffer[] = [];
  private size = 0;
  private readonly maxLine: number;

  constructor(maxLine = MAX_EVENT_BYTES) {
    this.maxLine = maxLine;
  }

  get buffered(): number {
    return this.size;
  }

  push(chunk: Buffer, onLine: (line: Buffer) => void): void {
    let start = 0;
    let nl = chunk.indexOf(0x0a, start);
    while (nl >= 0) {
      let line = chunk.subarray(start, nl);
      if (this.size > 0) {
        line = Buffer.concat([...this.parts, line]);
        this.parts = [];
        this.size = 0;
      }
      if (line.length > 0) onLine(line);
      start = nl + 1;
      nl = chunk.indexOf(0x0a, start);
    }
    if (start < chunk.length) {
      this.size += chunk.length - start;
      if (this.size > this.maxLine)
        throw new WatchStreamError(`a watch event is larger than ${this.maxLine} bytes`);
      this.parts.push(chunk.subarray(start));
    }
  }
}

/** One line of a watch stream to an event; anything else is a WatchStreamError (without the line's content). */
export function parseWatchEvent(line: Buffer | string): WatchEvent {
  let value: unknown;
  try {
    value = JSON.parse(line.toString());
  } catch {
    throw new WatchStreamError(`a watch event is not valid JSON (${line.length} bytes)`);
  }
  const event = value as Partial<WatchEvent> | null;
  if (
    typeof event !== 'object' ||
    event === null ||
    typeof event.type !== 'string' ||
    !TYPES.has(event.type)
  ) {
    throw new WatchStreamError(
      'a watch event has no known type (ADDED, MODIFIED, DELETED, BOOKMARK or ERROR)',
    );
  }
  if (typeof event.object !== 'object' || event.object === null)
    throw new WatchStreamError(`a ${event.type} watch event has no object`);
  return event as WatchEvent;
}

/**
 * Reads a watch response, calling `onEvent` synchronously for each event as soon as its line is complete,
 * with the arrival time of the chunk that completed it. `onEvent` returns false to stop reading (the
 * stream is then destroyed and the promise resolves). Rejects when the stream breaks or holds garbage.
 */
export function readWatchStream(
  res: IncomingMessage,
  onEvent: (event: WatchEvent, receivedAt: bigint) => boolean,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const lines = new LineSplitter();
    let stopped = false;
    const stop = (err?: Error): void => {
      if (stopped) return;
      stopped = true;
      res.removeListener('data', onData);
      res.destroy();
      if (err) reject(err);
      else resolve();
    };
    const onData = (chunk: Buffer): void => {
      const receivedAt = process.hrtime.bigint();
      try {
        lines.push(chunk, (line) => {
          if (!stopped && !onEvent(parseWatchEvent(line), receivedAt)) stop();
        });
      } catch (err) {
        stop(err as Error);
      }
    };
    res.on('data', onData);
    finished(res, (err) => {
      if (stopped) return;
      stopped = true;
      if (err) reject(err);
      else if (lines.buffered > 0) reject(new WatchStreamError('the watch stream ended inside an event'));
      else resolve();
    });
  });
}
