import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { Socket } from 'node:net';

export interface Reload {
  method: string;
  path: string;
  /** The config file as the app read it when it was asked to reload. */
  content: string;
}

export interface StandInApp {
  port: number;
  reloads: Reload[];
  close(): Promise<void>;
}

/**
 * The application container of the pod, played by an HTTP server on 127.0.0.1: on every request to its reload
 * path it re-reads its config file, as Prometheus does on POST /-/reload.
 */
export async function startStandInApp(configFile: string, reloadPath: string): Promise<StandInApp> {
  const reloads: Reload[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    req.resume();
    if ((req.url ?? '') !== reloadPath) {
      res.writeHead(404).end();
      return;
    }
    readFile(configFile, 'utf8').then(
      (content) => {
        reloads.push({ method: req.method ?? '', path: req.url ?? '', content });
        res.writeHead(200).end('reloaded');
      },
      (err: Error) => res.writeHead(500).end(err.message),
    );
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    reloads,
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}
