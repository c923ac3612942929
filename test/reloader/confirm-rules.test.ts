/** The verdict rules of confirm.ts on scripted readings (no app, no process): which read decides, and how. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ConfirmConfig } from '../../src/reloader/config.ts';
import {
  AppMetricsReader,
  awaitVerdict,
  nextPollMs,
  sameSecondWaitMs,
  type AppReading,
} from '../../src/reloader/confirm.ts';

const config = (over: Partial<ConfirmConfig> = {}): ConfirmConfig => ({
  metricsUrl: new URL('http://127.0.0.1:8429/metrics'),
  successMetric: 'ok',
  timestampMetric: 'ts',
  timeoutMs: 150,
  ...over,
});

/** Reads that return `script` in order, repeating the last; counts them. */
function scripted(script: AppReading[]): { read: () => Promise<AppReading>; reads: () => number } {
  let n = 0;
  return {
    read: () => Promise.resolve(script[Math.min(n++, script.length - 1)] as AppReading),
    reads: () => n,
  };
}

const run = (
  script: AppReading[],
  baseline: AppReading,
  over: Partial<ConfirmConfig> = {},
  delivery: 'http' | 'signal' = 'http',
) => {
  const s = scripted(script);
  return {
    s,
    verdict: awaitVerdict(s.read, {
      config: config(over),
      baseline,
      deliveredAtMs: 1_000_000_500,
      delivery,
      signal: new AbortController().signal,
    }),
  };
};

void describe('the same-second wait', () => {
  void it('waits until a whole-second baseline is 2 s old; never for a fractional, old or absent one', () => {
    assert.equal(sameSecondWaitMs(1000, 1_000_000), 2000);
    assert.equal(sameSecondWaitMs(1000, 1_001_500), 500);
    assert.equal(sameSecondWaitMs(1000, 1_002_000), 0);
    assert.equal(sameSecondWaitMs(1000, 1_060_000), 0);
    assert.equal(sameSecondWaitMs(1000.25, 1_000_000), 0);
    assert.equal(sameSecondWaitMs(undefined, 1_000_000), 0);
    assert.equal(sameSecondWaitMs(5000, 1_000_000), 3000, 'a timestamp from the future: capped');
  });
});

void describe('the hold after a verdict cut short', () => {
  void it("reads the next baseline only 1.1 s after that delivery (VictoriaMetrics' /metrics copy is up to 1 s old)", () => {
    const reader = new AppMetricsReader(config());
    try {
      assert.equal(reader.holdAfterSupersededMs(10_000, 10_000), 1100);
      assert.equal(reader.holdAfterSupersededMs(10_000, 10_600), 500);
      assert.equal(reader.holdAfterSupersededMs(10_000, 11_100), 0);
      assert.equal(reader.holdAfterSupersededMs(10_000, 20_000), 0);
    } finally {
      reader.close();
    }
  });
});

void describe('the verdict', () => {
  void it('applied on the first read with success 1 and a newer timestamp', async () => {
    const { s, verdict } = run(
      [
        { success: 1, timestamp: 100 },
        { success: 1, timestamp: 101 },
      ],
      {
        success: 1,
        timestamp: 100,
      },
    );
    assert.equal((await verdict)?.result, 'applied');
    assert.equal(s.reads(), 2);
  });

  void it('without a timestamp metric, success 1 is applied at once after an HTTP reload', async () => {
    const { s, verdict } = run([{ success: 1 }], { success: 1 }, { timestampMetric: undefined });
    assert.equal((await verdict)?.result, 'applied');
    assert.equal(s.reads(), 1);
  });

  void it('without a timestamp metric, after a signal: success 1 counts only from a read 1.1 s after the delivery', async () => {
    // The app takes its signal 300 ms after it was sent (a handler, a config to parse) and finds the config bad.
    const started = performance.now();
    const app = (): Promise<AppReading> =>
      Promise.resolve({ success: performance.now() - started < 300 ? 1 : 0 });
    const bad = await awaitVerdict(app, {
      config: config({ timestampMetric: undefined, timeoutMs: 5000 }),
      baseline: { success: 1 },
      deliveredAtMs: Date.now(),
      delivery: 'signal',
      signal: new AbortController().signal,
    });
    // Before: applied, from the first read, made before the app had reloaded.
    assert.equal(bad?.result, 'rejected');
    // A good config: applied, but not from a read sooner than 1.1 s (nor at the 150 ms timeout: it waits longer).
    const t0 = performance.now();
    const { s, verdict } = run([{ success: 1 }], { success: 1 }, { timestampMetric: undefined }, 'signal');
    assert.equal((await verdict)?.result, 'applied');
    const after = performance.now() - t0;
    assert.ok(after >= 1100, `applied ${Math.round(after)} ms after the delivery, on read ${s.reads()}`);
    assert.ok(s.reads() > 1, 'polled meanwhile');
    // Success back from 0 is news at once.
    const back = run([{ success: 1 }], { success: 0 }, { timestampMetric: undefined }, 'signal');
    assert.equal((await back.verdict)?.result, 'applied');
    assert.equal(back.s.reads(), 1);
  });

  void it('without a baseline timestamp, anything from floor(delivery) - 2 s counts', async () => {
    const ok = run([{ success: 1, timestamp: 999_998 }], { problem: 'cannot read' });
    assert.equal((await ok.verdict)?.result, 'applied');
    const old = run([{ success: 1, timestamp: 999_997 }], { problem: 'cannot read' });
    assert.equal((await old.verdict)?.result, 'unconfirmed');
  });

  void it('rejected at once when success turns 0 from a baseline of 1', async () => {
    const { s, verdict } = run([{ success: 0, timestamp: 100 }], { success: 1, timestamp: 100 });
    assert.equal((await verdict)?.result, 'rejected');
    assert.equal(s.reads(), 1);
  });

  void it('rejected only at the timeout when success stays 0 from a baseline of 0', async () => {
    const { s, verdict } = run([{ success: 0, timestamp: 100 }], { success: 0, timestamp: 100 });
    assert.equal((await verdict)?.result, 'rejected');
    assert.ok(s.reads() >= 2, 'polled until the timeout');
  });

  void it('applied when success comes back to 1 from 0, even with the old timestamp', async () => {
    const { verdict } = run([{ success: 1, timestamp: 100 }], { success: 0, timestamp: 100 });
    assert.equal((await verdict)?.result, 'applied');
  });

  void it('unconfirmed at the timeout: the timestamp did not move, or the metrics could not be read', async () => {
    const still = await run([{ success: 1, timestamp: 100 }], { success: 1, timestamp: 100 }).verdict;
    assert.equal(still?.result, 'unconfirmed');
    assert.match(still?.result === 'unconfirmed' ? still.reason : '', /^ok is 1 but ts stayed at 100/);
    const missing = await run([{ problem: 'http://x/metrics: no metric ok' }], { success: 1 }).verdict;
    assert.match(missing?.result === 'unconfirmed' ? missing.fix : '', /^check the metric name/);
    const down = await run([{ problem: 'cannot read http://x/metrics: ECONNREFUSED' }], { success: 1 })
      .verdict;
    assert.match(down?.result === 'unconfirmed' ? down.fix : '', /^check config-reloader.io\/metrics-url/);
  });

  void it('--confirm-unchanged-keeps-timestamp: success 1 and the same timestamp at the timeout is unchanged', async () => {
    const keeps = { unchangedKeepsTimestamp: true };
    const { s, verdict } = run([{ success: 1, timestamp: 100 }], { success: 1, timestamp: 100 }, keeps);
    assert.deepEqual(await verdict, {
      result: 'unchanged',
      reading: { success: 1, timestamp: 100 },
      bar: 100,
    });
    assert.ok(s.reads() >= 2, 'only at the timeout: a slower reload may still advance it');
    // The other verdicts are as without the flag.
    const applied = run([{ success: 1, timestamp: 101 }], { success: 1, timestamp: 100 }, keeps);
    assert.equal((await applied.verdict)?.result, 'applied');
    const rejected = run([{ success: 0, timestamp: 100 }], { success: 1, timestamp: 100 }, keeps);
    assert.equal((await rejected.verdict)?.result, 'rejected');
    const down = run([{ problem: 'cannot read x: ECONNREFUSED' }], { success: 1, timestamp: 100 }, keeps);
    assert.equal((await down.verdict)?.result, 'unconfirmed');
    // No baseline: the bar is from the delivery's time.
    const old = run([{ success: 1, timestamp: 999_990 }], { problem: 'cannot read' }, keeps);
    assert.deepEqual(await old.verdict, {
      result: 'unchanged',
      reading: { success: 1, timestamp: 999_990 },
      bar: 999_997,
    });
  });

  void it('a reading that later succeeds wins over earlier problems', async () => {
    const { verdict } = run([{ problem: 'cannot read x: ECONNRESET' }, { success: 1, timestamp: 101 }], {
      success: 1,
      timestamp: 100,
    });
    assert.equal((await verdict)?.result, 'applied');
  });

  void it('ends with no verdict when shut down', async () => {
    const ac = new AbortController();
    ac.abort();
    const v = await awaitVerdict(() => Promise.reject(new Error('aborted')), {
      config: config(),
      baseline: { success: 1 },
      deliveredAtMs: 0,
      delivery: 'http',
      signal: ac.signal,
    });
    assert.equal(v, undefined);
  });
});

describe('the polling schedule after a delivery', () => {
  it("reads every 100 ms for the first 2 s (VictoriaMetrics' /metrics copy is up to 1 s old), then doubles to 1 s", () => {
    const waits: number[] = [];
    let elapsed = 0;
    let last = 0;
    while (elapsed < 6000) {
      last = nextPollMs(elapsed, last);
      waits.push(last);
      elapsed += last;
    }
    assert.deepEqual(waits.slice(0, 20), Array<number>(20).fill(100));
    assert.deepEqual(waits.slice(20, 24), [200, 400, 800, 1000]);
    assert.ok(waits.slice(24).every((w) => w === 1000));
  });
});
