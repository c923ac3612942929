import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Registry } from '../../src/shared/metrics.ts';

describe('metrics registry', () => {
  it('counts through a bound series exactly as through labels given each time', () => {
    const registry = new Registry();
    const counter = registry.counter('requests_total', 'Requests.', ['path', 'result']);
    const bound = counter.labels({ path: '/mutate', result: 'injected' });
    bound.inc();
    bound.inc(2);
    counter.inc({ path: '/mutate', result: 'injected' });
    counter.inc({ path: '/mutate', result: 'skipped' });
    assert.equal(counter.get({ path: '/mutate', result: 'injected' }), 4);
    assert.match(registry.render(), /^requests_total\{path="\/mutate",result="injected"\} 4$/m);
    assert.match(registry.render(), /^requests_total\{path="\/mutate",result="skipped"\} 1$/m);
  });

  it('observes through a bound histogram series into the same buckets, sum and count', () => {
    const registry = new Registry();
    const histogram = registry.histogram('duration_seconds', 'Duration.', [0.001, 0.01], ['path']);
    histogram.labels({ path: '/mutate' }).observe(0.0005);
    histogram.observe(0.005, { path: '/mutate' });
    histogram.labels({ path: '/mutate' }).observe(1);
    const text = registry.render();
    assert.equal(histogram.count({ path: '/mutate' }), 3);
    assert.match(text, /^duration_seconds_bucket\{path="\/mutate",le="0.001"\} 1$/m);
    assert.match(text, /^duration_seconds_bucket\{path="\/mutate",le="0.01"\} 2$/m);
    assert.match(text, /^duration_seconds_bucket\{path="\/mutate",le="\+Inf"\} 3$/m);
    assert.match(text, /^duration_seconds_sum\{path="\/mutate"\} 1.0055$/m);
  });

  it('escapes the label values of a bound series', () => {
    const registry = new Registry();
    registry.counter('c_total', 'C.', ['v']).labels({ v: 'a"b\\c\nd' }).inc();
    assert.match(registry.render(), /^c_total\{v="a\\"b\\\\c\\nd"\} 1$/m);
  });
});
