import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { blockText, knobBlocks, readBlock } from '../../scripts/knob-docs.ts';
import { KNOB_LIST } from '../../src/injection/knob-table.ts';

const root = new URL('../../', import.meta.url);

describe('the doc tables of the knobs (npm run docs:knobs)', () => {
  for (const [file, blocks] of Object.entries(knobBlocks())) {
    const text = readFileSync(new URL(file, root), 'utf8');
    for (const [name, table] of Object.entries(blocks)) {
      it(`${file} <!-- knobs:${name} --> is what src/injection/knob-table.ts generates`, () => {
        const block = readBlock(text, name);
        assert.notEqual(
          block,
          undefined,
          `${file} has no <!-- knobs:${name} --> ... <!-- /knobs:${name} --> block`,
        );
        assert.equal(block, blockText(table), `${file} is out of date: run npm run docs:knobs`);
      });
    }
  }

  it('every knob is documented: an annotation has its meaning, a flag its help', () => {
    for (const knob of KNOB_LIST) {
      if (knob.annotation !== undefined) assert.notEqual(knob.docs.meaning, '', knob.key);
      if (knob.flag !== undefined) assert.notEqual(knob.help, undefined, knob.key);
    }
  });
});
