import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  formatSourceSpec,
  isValidItemPath,
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

  it('treats item paths as the kubelet does: relative, no "..", well-formed text', () => {
    for (const bad of ['', '/abs', '..data', '../up', 'a/../b', 'a//b', '\ud800'])
      assert.equal(isValidItemPath(bad), false, bad);
    for (const good of ['a', 'a/b.txt', 'a..b', '💥']) assert.equal(isValidItemPath(good), true, good);
  });

  for (const [arg, needle] of [
    ['pod/x=/d', /kind "pod" is neither secret nor configmap/],
    ['secret/Bad_Name=/d', /not a valid object name/],
    ['secret/x=relative', /not absolute/],
    ['secret/x=/d?optional=yes', /optional must be true or false/],
    ['secret/x=/d?defaultMode=999', /not an octal file mode/],
    ['secret/x=/d?item=k', /not KEY:PATH/],
    ['secret/x=/d?item=k:../up', /must be relative/],
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
