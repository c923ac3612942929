import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ApiHealth } from '../../src/reloader/health.ts';

void describe('ApiHealth', () => {
  void it('is healthy while a watch is open, or within the timeout of the last answer from the API server', () => {
    let now = 1000;
    const h = new ApiHealth(5000, () => now);
    assert.equal(h.check().healthy, true, 'a fresh start gets the whole timeout');
    now += 5001;
    assert.equal(h.check().healthy, false);
    h.watchOpened();
    now += 60_000;
    assert.deepEqual(h.check(), { healthy: true, openWatches: 1, lastContactSecondsAgo: 60 });
    h.watchClosed();
    now += 4000;
    assert.equal(h.check().healthy, true);
    now += 2000;
    assert.equal(h.check().healthy, false);
    h.contact();
    assert.equal(h.check().healthy, true);
  });
});
