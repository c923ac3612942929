/**
 * A stand-in app that reloads on SIGHUP, run as a real process in its own mount namespace, as a container's
 * main process (test/reloader/container-process.ts). `node signal-app.ts CONFIG_FILE MARKER`: once its signal
 * handlers are in place and it serves /metrics, it mounts a tmpfs at MARKER (so the reloader cannot find it, and
 * signal it, before it can take the signal), prints `{"port":N}` once it
 * serves /metrics on 127.0.0.1, `got SIGUSR2` for each SIGUSR2, and `reloaded good` or `reloaded bad` after each SIGHUP (a config containing
 * `broken` is bad: success 0, timestamp kept). SIGTERM ends it (the default action: the test sees the signal).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

const file = process.argv[2] as string;
const marker = process.argv[3] as string;
let success = 1;
let timestamp = Date.now() / 1000;

process.on('SIGUSR2', () => console.log('got SIGUSR2'));
process.on('SIGHUP', () => {
  let good = false;
  try {
    good = !readFileSync(file, 'utf8').includes('broken');
  } catch {
    good = false;
  }
  if (good) {
    success = 1;
    timestamp = Date.now() / 1000;
  } else success = 0;
  console.log(`reloaded ${good ? 'good' : 'bad'}`);
});

const server = createServer((_req, res) => {
  res.end(
    `# TYPE app_config_last_reload_successful gauge\napp_config_last_reload_successful ${success}\n` +
      `app_config_last_reload_success_timestamp_seconds ${timestamp}\n`,
  );
});
server.listen(0, '127.0.0.1', () => {
  execFileSync('mkdir', ['-p', marker]);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4k,mode=755', 'tmpfs', marker]);
  console.log(JSON.stringify({ port: (server.address() as AddressInfo).port }));
});
