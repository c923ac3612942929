/**
 * The application's reload endpoint, as its own process so that a busy harness (the test API server sending a
 * burst) never delays answering or stamping a reload. Answers 200 at once; for each request sends the harness,
 * over IPC, its arrival time (process.hrtime, the system-wide monotonic clock the API server's `sentAt` uses)
 * and what the watched directories held at that moment (each `version` key, and a SHA-256 of each
 * `config.yaml`, read before answering, hashed after).
 *
 *   node bench/receiver.ts DIR [DIR...]   (IPC channel required; first message: {url})
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

const dirs = process.argv.slice(2);
const send = (message: unknown): void => {
  process.send?.(message);
};

const server = createServer((req, res) => {
  const arrivedAt = process.hrtime.bigint();
  const read = dirs.map((dir) => {
    try {
      return {
        version: readFileSync(join(dir, 'version'), 'utf8'),
        config: readFileSync(join(dir, 'config.yaml')),
      };
    } catch {
      return undefined;
    }
  });
  req.resume();
  res.end();
  const versions = read.map((r) => r?.version ?? '');
  // Both keys name the same version, or the app would have read a mix of two updates.
  const consistent = read.every((r) => {
    if (!r) return false;
    const prefix = Buffer.from(`version: ${r.version}\n`);
    return r.config.subarray(0, prefix.length).equals(prefix);
  });
  // The whole of config.yaml, for the harness to compare with what it wrote (hashed after the answer).
  const digests = read.map((r) => (r ? createHash('sha256').update(r.config).digest('base64') : ''));
  send({ hit: { arrivedAt: String(arrivedAt), versions, consistent, digests } });
});
server.listen(0, '127.0.0.1', () =>
  send({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/-/reload` }),
);
process.on('disconnect', () => {
  server.closeAllConnections();
  server.close();
});
