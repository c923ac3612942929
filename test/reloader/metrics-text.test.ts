import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { MetricsTextReader, scrapeMetrics } from '../../src/reloader/metrics-text.ts';

/** Feeds `text` cut into pieces of `size` characters (1: every character alone), then resolves `name`. */
function read(text: string, names: string[], size = text.length || 1): MetricsTextReader {
  const r = new MetricsTextReader(names);
  for (let i = 0; i < text.length; i += size) r.feed(text.slice(i, i + size));
  r.end();
  return r;
}

const PAGE = `# HELP vm_promscrape_config_last_reload_successful Whether the last reload succeeded.
# TYPE vm_promscrape_config_last_reload_successful gauge
vm_promscrape_config_last_reload_successful 1
vm_promscrape_config_last_reload_success_timestamp_seconds 1.764651e+09
vm_promscrape_config_last_reload_successful_other 0
go_gc_duration_seconds{quantile="0.5"} 3.1e-05
prometheus_config_last_reload_successful 1e+00 1764651000000
weird{path="a}b\\"c"} 7
`;

void describe('the Prometheus text reader', () => {
  void it('reads the named metrics, whatever the chunking, and ignores comments and other names', () => {
    for (const size of [1, 2, 3, 7, 64, PAGE.length]) {
      const r = read(
        PAGE,
        [
          'vm_promscrape_config_last_reload_successful',
          'vm_promscrape_config_last_reload_success_timestamp_seconds',
          'prometheus_config_last_reload_successful',
          'weird',
        ],
        size,
      );
      assert.deepEqual(
        r.resolve('vm_promscrape_config_last_reload_successful'),
        { value: 1 },
        `size ${size}`,
      );
      assert.deepEqual(r.resolve('vm_promscrape_config_last_reload_success_timestamp_seconds'), {
        value: 1764651000,
      });
      // A sample timestamp after the value is not the value.
      assert.deepEqual(r.resolve('prometheus_config_last_reload_successful'), { value: 1 });
      // A quoted `}` and an escaped quote inside a label value.
      assert.deepEqual(r.resolve('weird'), { value: 7 });
    }
  });

  void it('takes NaN, +Inf, -Inf and exponents, and skips a sample whose value is not a number', () => {
    const r = read('a NaN\nb +Inf\nc -Inf\nd 1E3\ne one\ne 2\nf\t-0.5\r\n', ['a', 'b', 'c', 'd', 'e', 'f']);
    assert.ok(Number.isNaN((r.resolve('a') as { value: number }).value));
    assert.deepEqual(r.resolve('b'), { value: Infinity });
    assert.deepEqual(r.resolve('c'), { value: -Infinity });
    assert.deepEqual(r.resolve('d'), { value: 1000 });
    assert.deepEqual(r.resolve('e'), { value: 2 });
    assert.deepEqual(r.resolve('f'), { value: -0.5 });
  });

  void it('a metric absent, or only in a comment, is "no metric NAME"', () => {
    const r = read('# HELP wanted help text\n# TYPE wanted gauge\nwanted_total 3\n', ['wanted']);
    assert.deepEqual(r.resolve('wanted'), { problem: 'no metric wanted' });
  });

  void it('the unlabelled series wins; labelled ones count only alone, and must agree', () => {
    assert.deepEqual(read('m{a="1"} 0\nm 1\nm{a="2"} 0\n', ['m']).resolve('m'), { value: 1 });
    assert.deepEqual(read('m{} 1\n', ['m']).resolve('m'), { value: 1 });
    assert.deepEqual(read('m{path="a"} 1\nm{path="b"} 1\n', ['m']).resolve('m'), { value: 1 });
    const r = read('m{path="a"} 1\nm{path="b"} 0\n', ['m']).resolve('m');
    assert.match(
      (r as { problem: string }).problem,
      /^m has 2 labelled series that disagree \(1, 0\) and no unlabelled one$/,
    );
  });

  void it('a line over 64 KiB is skipped without holding it, and the next line is read', () => {
    const long = `m{x="${'y'.repeat(100_000)}"} 5\nm 1\n`;
    assert.deepEqual(read(long, ['m'], 4096).resolve('m'), { value: 1 });
  });

  void it('scrapeMetrics stops at the size cap and names the status of a non-2xx answer', async () => {
    const server = createServer((req, res) => {
      if (req.url === '/big') {
        res.write('m 1\n');
        res.end('x'.repeat(2048));
      } else if (req.url === '/500') {
        res.statusCode = 500;
        res.end('m 1\n');
      } else res.end('m 1\n');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const opts = { timeoutMs: 5000, signal: new AbortController().signal, maxBytes: 1024 };
    try {
      const ok = await scrapeMetrics(new URL(`${origin}/metrics`), ['m'], opts);
      assert.deepEqual(ok.resolve('m'), { value: 1 });
      await assert.rejects(scrapeMetrics(new URL(`${origin}/big`), ['m'], opts), /larger than/);
      await assert.rejects(scrapeMetrics(new URL(`${origin}/500`), ['m'], opts), /^Error: HTTP 500$/);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});
