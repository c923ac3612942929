import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { WatchEventRecord } from '../support/kube-apiserver/index.ts';
import { Harness, secret, secretValue, waitFor, waitReady } from './harness.ts';

void describe('the reloader given a burst of watch events', () => {
  let h: Harness;
  before(async () => {
    h = await Harness.start();
  });
  after(async () => {
    await h.close();
  });

  void it('writes only the newest of the events already received, once, then reloads once', async () => {
    const dir = h.dir('burst');
    // About 2 KiB per event, so that the burst spans several TLS records (each its own chunk of the stream).
    const filler = 'x'.repeat(1500);
    const versions = Array.from({ length: 41 }, (_, v) => ({
      version: String(v),
      config: `${v}\n${secretValue(`burst-${v}`)}\n${filler}`,
    }));
    h.api.create(secret('burst', versions[0] as Record<string, string>));
    const r = await h.reloader(['--source', `secret/burst=${dir}`], { watch: [dir] });
    await waitReady(r);
    const writes = (): Promise<number | undefined> =>
      r.metric('config_reloader_writes_total{source="secret/shop/burst"}');
    const writesBefore = await writes();
    const hitsBefore = h.receiver.hits.length;

    // Stopped, the reloader finds the whole burst waiting in its socket when it runs again.
    r.cli.child.kill('SIGSTOP');
    const sent = new Set<string>();
    h.api.events.on('watch-event', (e: WatchEventRecord) => {
      if (e.name === 'burst') sent.add(e.resourceVersion);
    });
    let last = '';
    for (const v of versions.slice(1))
      last = String(h.api.update(secret('burst', v)).metadata.resourceVersion);
    await waitFor(() => sent.has(last), 'the whole burst handed to the watch');
    // Not a timing assertion: time for the last bytes to cross the loopback into the stopped process's socket.
    await new Promise((resolve) => setTimeout(resolve, 300));
    r.cli.child.kill('SIGCONT');

    await waitFor(
      () => h.receiver.hits.slice(hitsBefore).some((hit) => hit.files[dir]?.version === '40'),
      'a reload showing the newest version',
    );
    await r.cli.waitForLog((l) => l.msg === 'reload request succeeded' && Number(l.attempt) >= 1);
    const hits = h.receiver.hits.slice(hitsBefore);
    assert.deepEqual(
      hits.map((hit) => hit.files[dir]),
      [versions[40]],
      'one reload, with the newest files',
    );
    assert.equal((await writes()) ?? 0, (writesBefore ?? 0) + 1, 'one write for the whole burst');
    assert.equal(await r.stop(), 0);
  });
});
