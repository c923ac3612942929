import type { Agent as HttpAgent } from 'node:http';

// getBuiltinModule, not an import: see src/reloader/delivery.ts.
const http = process.getBuiltinModule('node:http');
const https = process.getBuiltinModule('node:https');

/** Largest metrics answer read (an app with many series sends a few MiB; anything larger is not a /metrics page). */
const MAX_METRICS_BYTES = 16 * 1024 * 1024;
/** A line longer than this is skipped unread: no metric of ours is that long, and it is not held in memory. */
const MAX_LINE_CHARS = 64 * 1024;

/** What the text said about one metric name: its unlabelled sample, and the values of its labelled ones. */
interface Seen {
  unlabelled?: number;
  labelled: number[];
}

/** One metric's value, or why there is none. */
type MetricValue = { value: number } | { problem: string };

/** The sample value as the text format writes it: floats, `1e+00`, `NaN`, `+Inf`, `-Inf`. */
function parseSampleValue(text: string): number | undefined {
  if (text === '+Inf' || text === 'Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  if (text === 'NaN') return NaN;
  if (text === '' || !/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) return undefined;
  return Number(text);
}

/**
 * Reads the samples of a few named metrics out of the Prometheus text format, one chunk at a time, keeping only
 * the unfinished line and the wanted values (a big /metrics page is never held whole, and never parsed into
 * objects). Comments (`# HELP`, `# TYPE`) and other metrics are skipped; a sample may carry labels and a
 * timestamp after its value.
 *
 * Which sample counts: the unlabelled series when there is one; otherwise the labelled ones, which must all
 * agree (a success metric split by labels that disagree is no answer: `resolve` says so).
 */
export class MetricsTextReader {
  private readonly wanted: Map<string, Seen>;
  private partial = '';
  private skipping = false;

  constructor(names: readonly string[]) {
    this.wanted = new Map(names.map((n) => [n, { labelled: [] }]));
  }

  feed(chunk: string): void {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf('\n', start);
      if (nl < 0) break;
      const piece = chunk.slice(start, nl);
      start = nl + 1;
      if (this.skipping) {
        this.skipping = false;
        this.partial = '';
        continue;
      }
      const line = this.partial + piece;
      this.partial = '';
      this.line(line);
    }
    if (this.skipping) return;
    this.partial += chunk.slice(start);
    if (this.partial.length > MAX_LINE_CHARS) {
      this.partial = '';
      this.skipping = true;
    }
  }

  end(): void {
    if (!this.skipping && this.partial) this.line(this.partial);
    this.partial = '';
    this.skipping = false;
  }

  /** The value of `name` after `end()`, or what is wrong with it (missing, or labelled series that disagree). */
  resolve(name: string): MetricValue {
    const seen = this.wanted.get(name);
    if (seen?.unlabelled !== undefined) return { value: seen.unlabelled };
    const labelled = seen?.labelled ?? [];
    const first = labelled[0];
    if (first === undefined) return { problem: `no metric ${name}` };
    const same = (a: number, b: number): boolean => a === b || (Number.isNaN(a) && Number.isNaN(b));
    if (labelled.every((v) => same(v, first))) return { value: first };
    return {
      problem: `${name} has ${labelled.length} labelled series that disagree (${labelled.slice(0, 5).join(', ')}) and no unlabelled one`,
    };
  }

  private line(raw: string): void {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    let i = 0;
    while (line[i] === ' ' || line[i] === '\t') i++;
    if (i >= line.length || line[i] === '#') return;
    let j = i;
    while (j < line.length && line[j] !== '{' && line[j] !== ' ' && line[j] !== '\t') j++;
    const seen = this.wanted.get(line.slice(i, j));
    if (!seen) return;
    let labelled = false;
    if (line[j] === '{') {
      labelled = !/^\{\s*\}/.test(line.slice(j));
      j = labelsEnd(line, j + 1);
      if (j < 0) return; // a broken label set: not a sample we can trust
    }
    const rest = line.slice(j).trim();
    const valueText = rest.split(/[ \t]+/)[0] ?? '';
    const value = parseSampleValue(valueText);
    if (value === undefined) return;
    if (labelled) seen.labelled.push(value);
    else seen.unlabelled ??= value;
  }
}

/** Index just past the `}` closing a label set that starts at `from` (after `{`), skipping quoted values; -1 if none. */
function labelsEnd(line: string, from: number): number {
  let quoted = false;
  for (let k = from; k < line.length; k++) {
    const c = line[k];
    if (quoted) {
      if (c === '\\') k++;
      else if (c === '"') quoted = false;
    } else if (c === '"') quoted = true;
    else if (c === '}') return k + 1;
  }
  return -1;
}

interface ScrapeOptions {
  timeoutMs: number;
  signal: AbortSignal;
  agent?: HttpAgent;
  maxBytes?: number;
}

/**
 * GETs a Prometheus text page and reads `names` from it as it streams in. Resolves with the reader (after its
 * end), or rejects naming what went wrong: no connection, a timeout, a non-2xx status, an answer over the cap.
 * Never with the body: an app's metrics could carry anything.
 */
export function scrapeMetrics(
  url: URL,
  names: readonly string[],
  opts: ScrapeOptions,
): Promise<MetricsTextReader> {
  const max = opts.maxBytes ?? MAX_METRICS_BYTES;
  return new Promise((resolve, reject) => {
    const req = (url.protocol === 'https:' ? https.request : http.request)(
      url,
      {
        method: 'GET',
        agent: opts.agent,
        signal: opts.signal,
        headers: {
          accept: 'text/plain;version=0.0.4',
          'accept-encoding': 'identity',
          'user-agent': 'config-reloader',
        },
      },
      (res) => {
        const status = res.statusCode ?? 0;
        if (status < 200 || status >= 300) {
          res.resume();
          reject(new Error(`HTTP ${status}`));
          return;
        }
        const reader = new MetricsTextReader(names);
        let size = 0;
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          size += Buffer.byteLength(chunk);
          if (size > max) {
            res.destroy(new Error(`the answer is larger than ${max / 1024 / 1024} MiB`));
            return;
          }
          reader.feed(chunk);
        });
        res.on('end', () => {
          reader.end();
          resolve(reader);
        });
        res.on('error', reject);
        res.on('close', () => {
          if (!res.complete) reject(new Error('the connection closed before the answer ended'));
        });
      },
    );
    req.setTimeout(opts.timeoutMs, () =>
      req.destroy(Object.assign(new Error(`no answer within ${opts.timeoutMs} ms`), { code: 'ETIMEDOUT' })),
    );
    req.on('error', reject);
    req.end();
  });
}
