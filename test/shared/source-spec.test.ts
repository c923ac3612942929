import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  cleanItemPath,
  formatSourceSpec,
  isValidItemPath,
  itemPathProblem,
  itemsProblem,
  parseSourceSpec,
  type SourceSpec,
} from '../../src/shared/source-spec.ts';

describe('the --source argument, the contract between webhook and reloader', () => {
  it('keeps the simple form simple', () => {
    assert.equal(formatSourceSpec({ kind: 'secret', name: 'app', dir: '/etc/app' }), 'secret/app=/etc/app');
    assert.deepEqual(parseSourceSpec('configmap/rules=/etc/rules'), {
      kind: 'configmap',
      name: 'rules',
      dir: '/etc/rules',
    });
  });

  it('round-trips items, modes, optional and gunzip, with paths that hold separators, spaces and astral characters', () => {
    const spec: SourceSpec = {
      kind: 'secret',
      name: 'app-config',
      dir: '/var/run/config-reloader/volumes/config',
      optional: true,
      defaultMode: 0o440,
      gunzip: true,
      items: [
        { key: 'tls.crt', path: 'certs/tls.crt', mode: 0o400 },
        { key: 'weird', path: 'a:b&c=d?e%f g/💥/é' },
      ],
    };
    const arg = formatSourceSpec(spec);
    assert.match(arg, /item=tls\.crt:certs\/tls\.crt:0400/, 'readable where it can be');
    assert.deepEqual(parseSourceSpec(arg), spec);
  });

  it('round-trips every valid item path (property)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 20 }), (raw) => {
        const path = raw.replace(/^\/+/, '');
        fc.pre(isValidItemPath(path));
        const spec: SourceSpec = { kind: 'configmap', name: 'c', dir: '/d', items: [{ key: 'k', path }] };
        assert.deepEqual(parseSourceSpec(formatSourceSpec(spec)), spec);
      }),
      { numRuns: 2000 },
    );
  });

  it('accepts exactly the item paths the kubelet writes, and says where it writes them', () => {
    for (const bad of [
      '',
      '/abs',
      '..data',
      '...',
      '../up',
      'a/../b',
      'a/..',
      '.',
      './',
      './/.',
      './..data',
      'sub/\0x',
      '\ud800',
      'x'.repeat(256),
      `${'a/'.repeat(2048)}b`,
    ])
      assert.equal(isValidItemPath(bad), false, JSON.stringify(bad.slice(0, 20)));
    for (const good of [
      'a',
      'a/b.txt',
      'a..b',
      '💥',
      './config.yaml',
      'sub/./x',
      'a//b',
      'a/b/',
      '.hidden',
      'x'.repeat(255),
    ])
      assert.equal(isValidItemPath(good), true, good);
    assert.equal(cleanItemPath('./config.yaml'), 'config.yaml');
    assert.equal(cleanItemPath('sub/./x'), 'sub/x');
    assert.equal(cleanItemPath('a//b/'), 'a/b');
    assert.equal(cleanItemPath('./'), '.');
    assert.equal(itemPathProblem('a/../b'), "must not contain '..'");
    assert.equal(itemPathProblem('./'), 'names the volume itself, not a file in it');
  });

  it('accepts items at one path (the last wins) and refuses a path that is a file for one and a directory for another', () => {
    assert.equal(
      itemsProblem(
        [
          { key: 'a', path: 'x' },
          { key: 'b', path: './x' },
        ],
        false,
      ),
      undefined,
    );
    assert.equal(
      itemsProblem(
        [
          { key: 'a', path: './conf' },
          { key: 'b', path: 'conf/x' },
        ],
        false,
      ),
      'item path "conf" is a file, and a directory of item path "conf/x"',
    );
    assert.equal(
      itemsProblem(
        [
          { key: 'a', path: 'conf' },
          { key: 'b', path: 'conf/x' },
        ],
        true,
      ),
      undefined,
    );
  });

  it('parses what the API server accepts and the webhook passes on: ./x, sub/./x, the same path twice', () => {
    const spec: SourceSpec = {
      kind: 'configmap',
      name: 'c',
      dir: '/d',
      items: [
        { key: 'a', path: './config.yaml' },
        { key: 'b', path: 'sub/./x' },
        { key: 'c', path: 'dup' },
        { key: 'd', path: 'dup', mode: 0o600 },
      ],
    };
    assert.deepEqual(parseSourceSpec(formatSourceSpec(spec)), spec);
  });

  for (const [arg, needle] of [
    ['pod/x=/d', /kind "pod" is neither secret nor configmap/],
    ['secret/Bad_Name=/d', /not a valid object name/],
    ['secret/x=relative', /not absolute/],
    ['secret/x=/d?optional=yes', /optional must be true or false/],
    ['secret/x=/d?defaultMode=999', /not an octal file mode/],
    ['secret/x=/d?item=k', /not KEY:PATH/],
    ['secret/x=/d?item=k:../up', /item path "..\/up" must not contain '..'/],
    ['secret/x=/d?item=k:.', /item path "." names the volume itself/],
    ['secret/x=/d?color=red', /unknown parameter "color"/],
    ['secret/x=/d?item=k:%E0%A4%A', /not valid percent-encoding/],
  ] as const) {
    it(`rejects ${arg} with a message that names the problem and the expected form`, () => {
      assert.throws(
        () => parseSourceSpec(arg),
        (err: Error) => needle.test(err.message) && /expected KIND\/NAME=DIR/.test(err.message),
      );
    });
  }
});
