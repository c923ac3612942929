/**
 * A reload endpoint that rejects the request for good (404: a wrong URL) is not retried every few seconds for
 * the pod's lifetime: one error line naming the URL and the status, the rejected counter, and one new attempt
 * per change of the content.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Harness, secret, secretValue, waitFor, waitReady } from './harness.ts';

void describe('a reload endpoint that answers 404', () => {
  let h: Harness;
  before(async () => {
    h = await Harness.start();
  });
  after(async () => {
    await h.close();
  });

  void it('is told once per change: one error line, counted as rejected, no retry in between', async () => {
    const name = 'rejected';
    h.api.create(secret(name, { k: secretValue(`${name}-0`) }));
    // A backoff of 20-40 ms: a retried failure would be sent dozens of times during the wait below.
    const r = await h.reloader([
      '--source',
      `secret/${name}=${h.dir(name)}`,
      '--backoff',
      '20ms:40ms',
      '--resync',
      '100ms',
    ]);
    await waitReady(r);
    h.receiver.status = 404;
    const hits = h.receiver.hits.length;
    h.api.update(secret(name, { k: secretValue(`${name}-1`) }));
    const line = await r.cli.waitForLog((l) => l.level === 'error' && typeof l.status === 'number');
    assert.equal(line.status, 404);
    assert.equal(line.url, h.receiver.url);
    assert.match(String(line.msg), /answered HTTP 404; not retried until the content changes again/);
    assert.equal(await r.metric('config_reloader_reloads_total{result="rejected"}'), 1);
    // Five resync rounds later (about half a second): still the one request.
    const outputAt = r.cli.stdout().length;
    await waitFor(
      () =>
        r.cli
          .stdout()
          .slice(outputAt)
          .split('\n')
          .filter((l) => l.includes('"msg":"resync')).length >= 5,
      'five resync rounds',
    );
    assert.equal(h.receiver.hits.length, hits + 1, 'not retried');
    // The next change is tried, once.
    h.api.update(secret(name, { k: secretValue(`${name}-2`) }));
    await waitFor(
      async () => (await r.metric('config_reloader_reloads_total{result="rejected"}')) === 2,
      'the second change tried',
    );
    assert.equal(h.receiver.hits.length, hits + 2);
    const errorLines = (): string[] =>
      r.cli
        .stdout()
        .split('\n')
        .filter((l) => l.includes('"level":"error"'));
    await waitFor(() => errorLines().length >= 2, 'the second error line');
    assert.equal(errorLines().length, 2, 'one error line per change');
    assert.equal(await r.stop(), 0);
  });
});
