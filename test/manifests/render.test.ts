import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { parseJson, readManifests } from '../../src/manifests/read.ts';
import { blockLines, flowText, needsQuotes, type RenderStyle } from '../../src/manifests/render.ts';
import { formatFloat32, resolvePlain } from '../../src/manifests/scalars.ts';

const styles: RenderStyle[] = [
  { json: false, unit: 2, seqIndent: 2, eol: '\n' },
  { json: false, unit: 4, seqIndent: 0, eol: '\r\n' },
];

/** Strings that look like other YAML 1.1 or 1.2 types, or need quotes, mixed into the generated ones. */
const tricky = fc.constantFrom(
  'no',
  'on',
  'Off',
  'y',
  '~',
  'null',
  '',
  '0644',
  '0o17',
  '0x1F',
  '1_000',
  '1e3',
  '.5',
  '1.',
  '+1',
  '08',
  '1:20',
  '2001-12-14',
  '.inf',
  '<<',
  '-',
  '- a',
  'a: b',
  'a #b',
  '#',
  '"',
  "'",
  '\\',
  'x:',
  ' x',
  'x ',
  '\u0085',
  '\u2028',
  '\ufeff',
  '\u007f',
  'é',
  '🙂',
  '\t',
  '\n',
  '\r\n',
  'a\n\nb',
  '*x',
  '&x',
  '!x',
  '%x',
  '@x',
);
const text = fc.oneof(
  tricky,
  fc.string({ unit: 'grapheme' }),
  fc.string({ unit: 'binary' }).filter((s) => s.isWellFormed()),
);
const scalar = fc.oneof(
  text,
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((n) => (Object.is(n, -0) ? 0 : n)),
  fc.boolean(),
  fc.constant(null),
);
const value = fc
  .letrec((tie) => ({
    node: fc.oneof({ depthSize: 'small' }, scalar, tie('array'), tie('object')),
    array: fc.array(tie('node'), { maxLength: 4 }),
    object: fc.dictionary(text, tie('node'), { maxKeys: 4 }),
  }))
  .node.map((v) => JSON.parse(JSON.stringify(v)) as unknown); // plain objects, as parsed manifests are

/** The document a rendered value goes in: an object, as a manifest is. */
const manifest = (data: unknown): Record<string, unknown> => ({ apiVersion: 'v1', kind: 'ConfigMap', data });
const read = (source: string): unknown => readManifests(source).documents[0]?.value;

describe('inject writes values that read back as themselves (property)', () => {
  it('block style', () => {
    fc.assert(
      fc.property(value, fc.constantFrom(...styles), (data, style) => {
        const source = blockLines(manifest(data), 0, style).join(style.eol) + style.eol;
        assert.deepEqual(read(source), manifest(data), source);
      }),
      { numRuns: 2000 },
    );
  });

  it('flow style and JSON, on one line and pretty-printed', () => {
    fc.assert(
      fc.property(value, fc.boolean(), fc.boolean(), (data, json, pretty) => {
        const style = { ...styles[0]!, json };
        const source = flowText(manifest(data), style, pretty ? { column: 0, unit: 4 } : undefined);
        assert.deepEqual(read(source), manifest(data), source);
        if (json) assert.deepEqual(parseJson(source), manifest(data));
      }),
      { numRuns: 2000 },
    );
  });

  it('quotes every string kubectl would read as something else', () => {
    fc.assert(
      fc.property(text, (s) => {
        if (resolvePlain(s).kind !== 'str') assert.ok(needsQuotes(s, false) && needsQuotes(s, true), s);
      }),
      { numRuns: 5000 },
    );
  });

  it('formats float keys as kubectl does (Go, float32, shortest)', () => {
    assert.deepEqual(
      [1000, 1.5, 0.1, 1e30, 123456789.123, 0.0001, 0.00001, 1e6, 999999, -2.5, 3.4e39].map(formatFloat32),
      ['1000', '1.5', '0.1', '1e+30', '1.2345679e+08', '0.0001', '1e-05', '1e+06', '999999', '-2.5', '.inf'],
    );
  });
});
