/**
 * The propagation benchmark times each watch event from the test API server's `sentAt` to the reload. These tests
 * hold the server to what a real API server does and what `sentAt` claims: an event leaves as soon as it is
 * made, even while the process goes on making more (100 updates in one tick), and an event that had to wait
 * behind a write in flight is stamped when it leaves, not when it was made.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Worker } from 'node:worker_threads';
import { TestApiServer, type WatchEventRecord } from '../../support/kube-apiserver/index.ts';
import { rawWatch } from '../../support/kube-apiserver/raw-client.ts';
import { b64, NS, secret } from '../harness.ts';

const PATH = `/api/v1/namespaces/${NS}/secrets?watch=true&fieldSelector=metadata.name%3Ddelivery`;

/** Reads the watch on its own thread; flags `seen` as soon as a MODIFIED event has arrived. */
const WATCHER = `
const { workerData, parentPort } = require('node:worker_threads');
const https = require('node:https');
const seen = new Int32Array(workerData.seen);
const req = https.get(new URL(workerData.path, workerData.url), {
  ca: workerData.ca,
  headers: { authorization: 'Bearer ' + workerData.token },
}, (res) => {
  parentPort.postMessage(res.statusCode);
  let text = '';
  res.setEncoding('utf8');
  res.on('data', (chunk) => {
    text += chunk;
    if (text.includes('"type":"MODIFIED"')) {
      Atomics.store(seen, 0, 1);
      Atomics.notify(seen, 0);
      req.destroy();
    }
  });
});
req.on('error', () => {});
`;

void describe('test API server: watch events leave when they are made', () => {
  let api: TestApiServer;
  let token: string;
  before(async () => {
    api = await TestApiServer.start();
    token = api.addServiceAccount(NS, 'default', [{ verbs: ['watch'], resource: 'secrets', namespace: NS }]);
    api.create(secret('delivery', { v: '0' }));
  });
  after(async () => {
    await api.close();
  });

  void it('the first event of a burst reaches the client while the server is still busy making the rest', async () => {
    const seen = new Int32Array(new SharedArrayBuffer(4));
    const worker = new Worker(WATCHER, {
      eval: true,
      workerData: { url: api.url, path: PATH, ca: api.caCert, token, seen: seen.buffer },
    });
    try {
      const status = await new Promise((resolve) => worker.once('message', resolve));
      assert.equal(status, 200);
      await new Promise<void>((resolve) => {
        const check = (): void => void (api.openWatches > 0 ? resolve() : setTimeout(check, 5));
        check();
      });
      api.update(secret('delivery', { v: '1' }));
      // This thread stays busy (blocked) after the update, in the same tick: the event must already be on its way.
      // 'not-equal' means the watcher had it before this thread even got to wait (a busy machine can schedule the
      // worker first): delivered within the tick as well. Only 'timed-out' means the event never left.
      const outcome = Atomics.wait(seen, 0, 0, 10_000);
      assert.notEqual(outcome, 'timed-out', 'the event stayed in the server until its tick ended');
    } finally {
      await worker.terminate();
    }
  });

  void it('events made while a write is in flight are stamped when they leave, after the tick that made them', async () => {
    const w = await rawWatch(api, PATH, token);
    try {
      const sent: WatchEventRecord[] = [];
      api.events.on('watch-event', (e: WatchEventRecord) => {
        if (e.name === 'delivery') sent.push(e);
      });
      const rvs: string[] = [];
      for (let i = 10; i < 15; i++)
        rvs.push(String(api.update(secret('delivery', { v: String(i) })).metadata.resourceVersion));
      const tickEnd = process.hrtime.bigint();
      await w.waitFor((e) => e.object.metadata?.resourceVersion === rvs.at(-1));
      const at = (rv: string): bigint => {
        const record = sent.find((e) => e.resourceVersion === rv);
        assert.ok(record, `no watch-event for resourceVersion ${rv}`);
        return record.sentAt;
      };
      assert.ok(at(rvs[0] as string) < tickEnd, 'the first event is handed over at once');
      for (const rv of rvs.slice(1)) assert.ok(at(rv) > tickEnd, `event ${rv} was stamped before it left`);
      assert.deepEqual(
        w.events.filter((e) => e.type === 'MODIFIED').map((e) => e.object.data),
        [10, 11, 12, 13, 14].map((i) => ({ v: b64(String(i)) })),
      );
    } finally {
      w.close();
    }
  });
});
