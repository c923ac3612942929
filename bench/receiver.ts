/**
 * The application's reload endpoint, as its own process so that a busy harness (the test API server sending a
 * burst) never delays answering or stamping a reload. Answers 200 at once; for each request sends the harness,
 * over IPC, its arrival time (process.hrtime, the system-wide monotonic clock the API server's `sentAt` uses)
 * and what the watched directories held at that moment.
 *
 *   node bench/receiver.ts DIR [DIR...]   (IPC channel required; first message: {url})
 */
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
  let consistent = true;
  const versions = dirs.map((dir) => {
    try {
      const version = readFileSync(join(dir, 'version'), 'utf8');
      // Both keys name the same version, or the app would have read a mix of two updates.
      if (!readFileSync(join(dir, 'config.yaml'), 'utf8').startsWith(`version: ${version}\n`))
        consistent = false;
      return version;
    } catch {
      consistent = false;
      return '';
    }
  });
  req.resume();
  res.end();
  send({ hit: { arrivedAt: String(arrivedAt), versions, consistent } });
});
server.listen(0, '127.0.0.1', () =>
  send({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/-/reload` }),
);
process.on('disconnect', () => {
  server.closeAllConnections();
  server.close();
});
