import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseQuantity, quantityProblem } from '../../src/injection/quantity.ts';

describe('parseQuantity', () => {
  const valid: [string, number][] = [
    ['10m', 0.01],
    ['1', 1],
    ['0.5', 0.5],
    ['.5', 0.5],
    ['1.', 1],
    ['48Mi', 48 * 2 ** 20],
    ['1Gi', 2 ** 30],
    ['1G', 1e9],
    ['128k', 128_000],
    ['2Ki', 2048],
    ['100u', 1e-4],
    ['5n', 5e-9],
    ['1e3', 1000],
    ['1E-3', 0.001],
    ['+2', 2],
    ['2Ei', 2 * 2 ** 60],
    ['1E', 1e18],
  ];
  for (const [text, value] of valid) {
    it(`${text} = ${value}`, () =>
      assert.ok(Math.abs((parseQuantity(text) as number) - value) <= value * 1e-12));
  }
  for (const text of [
    '',
    'Mi',
    '48MB',
    '48mi',
    '1.2.3',
    '1 Gi',
    ' 1',
    '1K',
    'e3',
    '0x10',
    '1Gi ',
    '--1',
    '3e',
    '1Ei2',
  ]) {
    it(`"${text}" is not a quantity`, () => {
      assert.equal(parseQuantity(text), undefined);
      assert.match(quantityProblem(text) ?? '', /is not a Kubernetes quantity/);
    });
  }
  it('rejects negative quantities for resources', () => {
    assert.match(quantityProblem('-10m') ?? '', /must not be negative/);
    assert.equal(quantityProblem('0'), undefined);
  });
});
