import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ListItemSplitter } from '../../src/webhook/list-items.ts';

/** Feeds `text` in chunks cut at `cuts` (byte offsets) and returns what the splitter made of it. */
function split(text: string, cuts: number[] = []): { items: unknown[]; envelope: Record<string, unknown> } {
  const bytes = Buffer.from(text);
  const items: unknown[] = [];
  const splitter = new ListItemSplitter((item) => items.push(item));
  let from = 0;
  for (const cut of [...cuts.filter((c) => c > 0 && c < bytes.length)].sort((a, b) => a - b)) {
    splitter.write(bytes.subarray(from, cut));
    from = cut;
  }
  splitter.write(bytes.subarray(from));
  return { items, envelope: splitter.end() };
}

const expected = (text: string): { items: unknown[]; envelope: Record<string, unknown> } => {
  const parsed = JSON.parse(text) as Record<string, unknown>;
  return {
    items: (parsed.items as unknown[] | undefined) ?? [],
    envelope: { ...parsed, ...('items' in parsed ? { items: [] } : {}) },
  };
};

const TRICKY = JSON.stringify({
  kind: 'PartialObjectMetadataList',
  apiVersion: 'meta.k8s.io/v1',
  metadata: { resourceVersion: '42', continue: 'eyJ2Ijoi[{}]"\\', items: ['not these'] },
  items: [
    {
      kind: 'PartialObjectMetadata',
      metadata: {
        name: 'a',
        annotations: { x: '}{][ "quoted" \\ backslash \\" both', items: '[1,2]', é: 'ünïcödé 日本 🎉' },
        ownerReferences: [{ kind: 'ReplicaSet', name: 'web' }],
        managedFields: [{ fieldsV1: { 'f:metadata': { 'f:annotations': { '.': {} } } } }],
      },
    },
    { kind: 'PartialObjectMetadata', metadata: { name: 'b', labels: {} } },
    { kind: 'PartialObjectMetadata', metadata: {} },
  ],
});

void describe('ListItemSplitter: a list answer read item by item', () => {
  void it('gives the items and the rest of the list as JSON.parse does, cut at every byte', () => {
    const want = expected(TRICKY);
    assert.equal(want.items.length, 3);
    assert.deepEqual(split(TRICKY), want);
    for (let cut = 1; cut < Buffer.byteLength(TRICKY); cut++)
      assert.deepEqual(split(TRICKY, [cut]), want, `cut at ${cut}`);
  });

  void it('one byte at a time, with whitespace, empty items, and an answer without items (a Status)', () => {
    const spaced = `\n{ "kind" : "PodList" ,\n "items" : [ { "a" : [ 1 , { "b" : "]" } ] } , {} ] ,\n "metadata" : { "continue" : "" } }\n`;
    const everyByte = Array.from({ length: Buffer.byteLength(spaced) }, (_, i) => i);
    assert.deepEqual(split(spaced, everyByte), expected(spaced));
    const empty = '{"kind":"PartialObjectMetadataList","metadata":{},"items":[]}';
    assert.deepEqual(split(empty), { items: [], envelope: JSON.parse(empty) as Record<string, unknown> });
    const status = '{"kind":"Status","code":410,"metadata":{"continue":"x"},"details":{"causes":[{"a":1}]}}';
    assert.deepEqual(split(status, [5, 30, 60]), {
      items: [],
      envelope: JSON.parse(status) as Record<string, unknown>,
    });
  });

  void it('refuses an answer cut short, inside an item or after it', () => {
    for (const end of [20, TRICKY.indexOf('"b"'), TRICKY.length - 1])
      assert.throws(() => split(TRICKY.slice(0, end)), SyntaxError, `cut at ${end}`);
  });

  void it('any list of any JSON objects, cut anywhere', () => {
    fc.assert(
      fc.property(
        fc.array(fc.dictionary(fc.string(), fc.jsonValue()), { maxLength: 8 }),
        fc.dictionary(fc.string(), fc.jsonValue(), { maxKeys: 3 }),
        fc.array(fc.nat(), { maxLength: 6 }),
        (items, metadata, cuts) => {
          const text = JSON.stringify({ kind: 'List', metadata, items });
          const bytes = Buffer.byteLength(text);
          assert.deepEqual(
            split(
              text,
              cuts.map((c) => c % bytes),
            ),
            expected(text),
          );
        },
      ),
      { numRuns: 500 },
    );
  });
});
