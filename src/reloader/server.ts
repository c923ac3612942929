import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { METRICS_CONTENT_TYPE, type Registry } from '../shared/metrics.ts';

// getBuiltinModule, not an import: see src/reloader/delivery.ts.
const http = process.getBuiltinModule('node:http');

export interface StatusProvider {
  /** `failing`: source → why its newest content cannot be written (a write error being retried, or a projection error). */
  readiness(): { ready: boolean; pending: string[]; failing?: Record<string, string> };
  health(): { healthy: boolean } & Record<string, unknown>;
}

export interface StatusServer {
  /** `host:port` actually bound (port 0 resolved). */
  address: string;
  close(): Promise<void>;
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body) + '\n');
}

/** GET /readyz, /healthz and /metrics on node:http; nothing else. */
export function startStatusServer(
  listen: { host: string; port: number },
  status: StatusProvider,
  registry: Registry,
): Promise<StatusServer> {
  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/readyz') {
      const r = status.readiness();
      const failing = r.failing && Object.keys(r.failing).length > 0 ? { failing: r.failing } : {};
      json(
        res,
        r.ready ? 200 : 503,
        r.ready
          ? { status: 'ready' }
          : {
              status: r.pending.length > 0 ? 'waiting for the first sync' : 'cannot write the newest content',
              pending: r.pending,
              ...failing,
            },
      );
    } else if (path === '/healthz') {
      const h = status.health();
      json(res, h.healthy ? 200 : 503, {
        status: h.healthy ? 'ok' : 'no watch open and no answer from the API server',
        ...h,
      });
    } else if (path === '/metrics') {
      res.writeHead(200, { 'content-type': METRICS_CONTENT_TYPE }).end(registry.render());
    } else {
      json(res, 404, { status: 'not found', paths: ['/readyz', '/healthz', '/metrics'] });
    }
  };
  const server = http.createServer(
    { requestTimeout: 10_000, headersTimeout: 5_000, keepAliveTimeout: 5_000 },
    handle,
  );
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => {
      server.off('error', reject);
      const a = server.address() as AddressInfo;
      resolve({
        address: a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}
