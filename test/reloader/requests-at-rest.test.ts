/**
 * What a reloader costs the API server while nothing changes: one long-lived watch per source, and no other
 * request. Counted with the test API server's request log over many --resync rounds (the resync used to list
 * every source each round).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { configMap, Harness, secret, secretValue, waitFor, waitReady } from './harness.ts';

void describe('the API requests of a reloader at rest', () => {
  let h: Harness;
  before(async () => {
    h = await Harness.start();
  });
  after(async () => {
    await h.close();
  });

  void it('one open watch per source and no request at all over ten --resync rounds', async () => {
    h.api.create(secret('rest-secret', { k: secretValue('rest') }));
    h.api.create(configMap('rest-config', { 'app.yaml': 'a: 1' }));
    const mine = /metadata.name%3Drest-(secret|config)(&|$)/;
    const r = await h.reloader([
      '--source',
      `secret/rest-secret=${h.dir('rest-secret')}`,
      '--source',
      `configmap/rest-config=${h.dir('rest-config')}`,
      '--resync',
      '200ms',
    ]);
    await waitReady(r);
    const ours = () => h.api.requests.filter((q) => mine.test(q.query));
    const watchesOpen = () => ours().filter((q) => q.query.includes('watch=true') && q.status === 200);
    await waitFor(() => watchesOpen().length === 2, 'a watch open for each source');
    const atRest = ours().length;
    const outputAt = r.cli.stdout().length;
    // Ten rounds of the resync for each source: the window is counted in rounds, not in seconds.
    const rounds = (source: string): number =>
      r.cli
        .stdout()
        .slice(outputAt)
        .split('\n')
        .filter((l) => l.includes(`"source":"${source}"`) && l.includes('"msg":"resync')).length;
    await waitFor(
      () => rounds('secret/shop/rest-secret') >= 10 && rounds('configmap/shop/rest-config') >= 10,
      'ten resync rounds per source',
    );
    const during = ours()
      .slice(atRest)
      .map((q) => `${q.method} ${q.path}?${q.query}`);
    assert.deepEqual(during, [], 'no request to the API server while nothing changed');
    assert.equal(await r.metric('config_reloader_watches_open'), 2, 'the two watches are still open');
    assert.deepEqual(
      ours()
        .slice(0, atRest)
        .map((q) => (q.query.includes('watch=true') ? 'watch' : 'list'))
        .sort(),
      ['list', 'list', 'watch', 'watch'],
      'at start: one list and one watch per source',
    );
    assert.equal(await r.stop(), 0);
  });
});
