import assert from 'node:assert/strict';
import { createServer, get, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import {
  LineSplitter,
  parseWatchEvent,
  readWatchStream,
  WatchStreamError,
  type WatchEvent,
} from '../../../src/reloader/kube/watch-stream.ts';

function split(chunks: string[]): string[] {
  const s = new LineSplitter();
  const lines: string[] = [];
  for (const c of chunks) s.push(Buffer.from(c), (l) => lines.push(l.toString()));
  return lines;
}

void describe('LineSplitter', () => {
  void it('finds lines across any chunk boundary and skips empty ones', () => {
    assert.deepEqual(split(['{"a":1}\n{"b"', ':2}\n\n{"c":3', '}\n']), ['{"a":1}', '{"b":2}', '{"c":3}']);
    assert.deepEqual(split(['x', 'y', 'z', '\n']), ['xyz']);
    const text = '{"type":"ADDED"}\n{"type":"MODIFIED"}\n';
    assert.deepEqual(split([...text]), ['{"type":"ADDED"}', '{"type":"MODIFIED"}']);
  });

  void it('keeps only the unfinished line, and refuses one that grows past the limit', () => {
    const s = new LineSplitter(8);
    s.push(Buffer.from('done\npart'), () => {});
    assert.equal(s.buffered, 4);
    assert.throws(() => s.push(Buffer.from('-too-long'), () => {}), WatchStreamError);
  });
});

void describe('parseWatchEvent', () => {
  void it('accepts the five event types with an object', () => {
    for (const type of ['ADDED', 'MODIFIED', 'DELETED', 'BOOKMARK', 'ERROR']) {
      assert.equal(parseWatchEvent(JSON.stringify({ type, object: { kind: 'X' } })).type, type);
    }
  });

  void it('rejects garbage without echoing it', () => {
    const secretish = '{"type":"ADDED","object":{"data":{"k":"c2VjcmV0"}}'; // truncated JSON
    assert.throws(
      () => parseWatchEvent(secretish),
      (e: unknown) => e instanceof WatchStreamError && !e.message.includes('c2VjcmV0'),
    );
    assert.throws(() => parseWatchEvent('{"type":"EXPLODED","object":{}}'), /no known type/);
    assert.throws(() => parseWatchEvent('{"type":"ADDED"}'), /has no object/);
  });
});

void describe('readWatchStream over a real HTTP connection', () => {
  let server: Server;
  let base: string;
  const scripts = new Map<string, (res: ServerResponse) => void>();

  before(async () => {
    server = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
      scripts.get(req.url ?? '')?.(res);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });

  const open = (path: string): Promise<IncomingMessage> =>
    new Promise((resolve, reject) => get(`${base}${path}`, { agent: false }, resolve).on('error', reject));

  void it('delivers events split over chunks, in order, and resolves at the end of the stream', async () => {
    scripts.set('/ok', (res) => {
      const a = JSON.stringify({ type: 'ADDED', object: { metadata: { resourceVersion: '1' } } });
      const b = JSON.stringify({ type: 'MODIFIED', object: { metadata: { resourceVersion: '2' } } });
      res.write(a.slice(0, 5));
      setTimeout(() => {
        res.write(a.slice(5) + '\n' + b.slice(0, 10));
        setTimeout(() => res.end(b.slice(10) + '\n'), 10);
      }, 10);
    });
    const events: WatchEvent[] = [];
    await readWatchStream(await open('/ok'), (e, at) => {
      assert.equal(typeof at, 'bigint');
      events.push(e);
      return true;
    });
    assert.deepEqual(
      events.map((e) => e.type),
      ['ADDED', 'MODIFIED'],
    );
  });

  void it('stops when the handler says so', async () => {
    scripts.set('/gone', (res) => {
      res.write(JSON.stringify({ type: 'ERROR', object: { kind: 'Status', code: 410 } }) + '\n'); // and never ends
    });
    let seen = 0;
    await readWatchStream(await open('/gone'), () => {
      seen++;
      return false;
    });
    assert.equal(seen, 1);
  });

  void it('rejects when the connection breaks mid-stream', async () => {
    scripts.set('/drop', (res) => {
      res.write(JSON.stringify({ type: 'ADDED', object: {} }) + '\n{"type":"MOD');
      setTimeout(() => res.socket?.destroy(), 10);
    });
    let seen = 0;
    await assert.rejects(
      readWatchStream(await open('/drop'), () => {
        seen++;
        return true;
      }),
    );
    assert.equal(seen, 1);
  });

  void it('rejects a stream that carries something other than events', async () => {
    scripts.set('/junk', (res) => res.end('<html>proxy error</html>\n'));
    await assert.rejects(
      readWatchStream(await open('/junk'), () => true),
      WatchStreamError,
    );
  });
});
