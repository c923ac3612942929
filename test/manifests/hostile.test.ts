import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { DEFAULT_INJECTOR_CONFIG } from '../../src/injection/config.ts';
import { injectManifests } from '../../src/manifests/manifests.ts';
import { cli } from './run-cli.ts';

const options = { optIn: 'annotation' as const, config: DEFAULT_INJECTOR_CONFIG };

/** Heap limit of the CLI in these tests: input that needs more is not "bounded memory". */
const HEAP = ['--max-old-space-size=256'];
/** Generous: each case takes a second or two; a hang or an exponential blow-up takes far longer. */
const TIME_LIMIT_MS = 60_000;

/** The CLI ends with exactly one `error:` line, exit 1, nothing on stdout, no stack trace, in bounded time. */
async function refuses(input: string | Buffer, expected: RegExp): Promise<void> {
  const { code, stdout, stderr, ms } = await cli([], input, HEAP);
  assert.equal(code, 1, stderr);
  assert.equal(stdout, '');
  assert.match(stderr, /^error: [^\n]*\n$/, 'one error line');
  assert.match(stderr, expected);
  assert.doesNotMatch(stderr, /\n\s+at /);
  assert.ok(ms < TIME_LIMIT_MS, `took ${Math.round(ms)} ms`);
}

const BILLION_LAUGHS = `apiVersion: v1
kind: ConfigMap
metadata: {name: lol}
data:
  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
  b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
  c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
  d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
  e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
  f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
  g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
  h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
  i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
`;

const utf16le = (text: string): Buffer => Buffer.from(text, 'utf16le');
const utf16be = (text: string): Buffer => Buffer.from(text, 'utf16le').swap16();
const MANIFEST = 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: café\n';

describe('inject on hostile or odd input: one error line, never a stack trace, bounded time and memory', () => {
  it('an alias bomb (billion laughs)', async () => {
    await refuses(
      BILLION_LAUGHS,
      /^error: standard input: line \d+: its aliases expand to 490,329,074 nodes from \d+ written \(an alias bomb\?\)/,
    );
    // Aliases used with measure are fine.
    const modest = injectManifests(BILLION_LAUGHS.split('\n').slice(0, 7).join('\n'), options);
    assert.deepEqual(modest.errors, []);
  });

  it('100,000-deep nesting: YAML flow, YAML flow maps, JSON, YAML block sequences', async () => {
    const depth = 100_000;
    await refuses(
      `a: ${'['.repeat(depth)}${']'.repeat(depth)}\n`,
      /line 1: nested more than 500 levels deep/,
    );
    await refuses(
      `a: ${'{a: '.repeat(depth)}1${'}'.repeat(depth)}\n`,
      /line 1: nested more than 500 levels deep/,
    );
    await refuses(
      `{"a": ${'{"a": '.repeat(depth)}1${'}'.repeat(depth + 1)}`,
      /line 1: nested more than 500 levels deep/,
    );
    await refuses(`${'- '.repeat(depth)}x\n`, /nested too deeply to read/);
    let block = '';
    for (let i = 0; i < 3000; i++) block += `${' '.repeat(i)}a:\n`;
    await refuses(block, /nested (too deeply to read|more than 500 levels deep)/);
  });

  it('non-UTF-8 bytes: Latin-1, UTF-16 and UTF-32 with or without a byte order mark, NUL bytes', async () => {
    await refuses(
      Buffer.from(MANIFEST, 'latin1'),
      /^error: standard input is not UTF-8: byte 0xE9 at line 4, column 12 is not valid UTF-8 \(Latin-1 or Windows-1252 text\?\); inject reads UTF-8 only: convert it to UTF-8 first \(e\.g\. iconv -f LATIN1 -t UTF-8\)/,
    );
    await refuses(
      Buffer.concat([Buffer.from([0xff, 0xfe]), utf16le(MANIFEST)]),
      /^error: standard input is UTF-16 \(it starts with a UTF-16 byte order mark\); inject reads UTF-8 only: convert it/,
    );
    await refuses(
      Buffer.concat([Buffer.from([0xfe, 0xff]), utf16be(MANIFEST)]),
      /^error: standard input is UTF-16 \(it starts with a UTF-16 byte order mark\)/,
    );
    await refuses(
      utf16le(MANIFEST),
      /^error: standard input looks like UTF-16LE without a byte order mark .*iconv -f UTF-16LE/,
    );
    await refuses(
      utf16be(MANIFEST),
      /^error: standard input looks like UTF-16BE without a byte order mark .*iconv -f UTF-16BE/,
    );
    await refuses(
      Buffer.concat([Buffer.from([0xff, 0xfe, 0, 0]), Buffer.from('a\0\0\0', 'latin1')]),
      /^error: standard input is UTF-32/,
    );
    await refuses(
      Buffer.from('kind: Pod\nx: \0\n'),
      /^error: standard input has a NUL byte at line 2, column 4/,
    );
    await refuses('kind: Pod\nx: "\x07"\n', /line 2: the control character U\+0007 is not allowed in YAML/);
    // A UTF-8 byte order mark is UTF-8: read (as kubectl does), and kept in front of the output.
    const bom = await cli([], Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(MANIFEST)]));
    assert.equal(bom.code, 0, bom.stderr);
    assert.equal(bom.stdout, `\ufeff${MANIFEST}`);
  });

  it('a multi-document YAML whose first document starts with "{" is YAML, not broken JSON', async () => {
    const text =
      '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n';
    const { code, stdout, stderr } = await cli([], text);
    assert.equal(code, 0, stderr);
    assert.equal(stdout, `---\n${text}`);
    assert.equal(stderr.trimEnd().split('\n').at(-1), '0 of 2 documents injected');
    // Broken JSON with no YAML separator is still reported as JSON.
    await refuses('{"kind": "Pod",\n "metadata": {}', /^error: standard input: line 2: not valid JSON/);
  });

  it('other odd input kubectl cannot read either', async () => {
    await refuses(
      'kind: ConfigMap\n--- {kind: Pod}\n',
      /line 2: kubectl takes a line starting with "---" as a document separator and allows only a comment after it/,
    );
    await refuses('%YAML 1.1\n---\nkind: Pod\n', /line 1: kubectl does not read YAML directives/);
    await refuses('- kind: Pod\n- kind: Service\n', /line 1: the document is a list, not an object/);
    await refuses('[{"kind": "Pod"}]', /line 1: the document is a list, not an object/);
    await refuses(
      'kind: Pod\n...\nkind: Service\n',
      /line 3: a second document follows a "\.\.\." end marker/,
    );
    await refuses('kind: ConfigMap\ndata:\n  ~: x\n', /line 3: a map key is null/);
    await refuses('kind: ConfigMap\ndata:\n  x: .inf\n', /line 3: \.inf is not a number JSON can hold/);
    await refuses('kind: ConfigMap\ndata: *nothing\n', /line 2: .*nothing/);
    await refuses('kind: ConfigMap\ndata: [a, b\n', /line 3: not valid YAML/);
  });

  it('a reader that closes the pipe early (inject | head) ends the run without a stack trace', async () => {
    const doc = 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {k: v}\n';
    const root = resolve(import.meta.dirname, '..', '..');
    const child = spawn(join(root, 'node_modules', '.bin', 'node'), ['src/cli.ts', 'inject'], { cwd: root });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.stdout.once('data', () => child.stdout.destroy());
    child.stdin.end(`---\n${doc}`.repeat(20_000));
    const code = await new Promise<number | null>((done) => child.on('close', done));
    assert.equal(code, 1, stderr);
    assert.doesNotMatch(stderr, /EPIPE|\n\s+at /);
  });

  it('a ConfigMap with many keys: the time grows linearly (4x the keys take less than 8x the time)', () => {
    const configMap = (keys: number): string => {
      const lines = ['apiVersion: v1', 'kind: ConfigMap', 'metadata:', '  name: big', 'data:'];
      for (let i = 0; i < keys; i++) lines.push(`  key-${i}: "value ${i}"`);
      return `${lines.join('\n')}\n`;
    };
    const time = (text: string): number => {
      let best = Infinity;
      for (let run = 0; run < 2; run++) {
        const started = performance.now();
        const result = injectManifests(text, options);
        best = Math.min(best, performance.now() - started);
        assert.equal(result.output, text);
      }
      return best;
    };
    const small = configMap(10_000);
    const large = configMap(40_000);
    time(small); // warm-up
    const ratio = time(large) / time(small);
    // Quadratic (the YAML library's duplicate-key check, before) gives about 16.
    assert.ok(ratio < 8, `40,000 keys took ${ratio.toFixed(1)} times as long as 10,000`);
  });
});
