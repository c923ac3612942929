/**
 * Item paths the API server accepts and the kubelet writes after cleaning them (path.Clean): `./config.yaml`,
 * `sub/./x`, `a//b`, and two items at one path (the last wins). A volume converted with such items must sync
 * and become ready, its files where the kubelet puts them; before, every version of it was refused, /readyz
 * stayed 503 and the native sidecar was restarted in a loop.
 */
import assert from 'node:assert/strict';
import { lstatSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { formatSourceSpec } from '../../src/shared/source-spec.ts';
import { configMap, Harness, readTree, waitReady } from './harness.ts';

void describe('item paths the kubelet cleans', () => {
  let h: Harness;
  before(async () => {
    h = await Harness.start();
  });
  after(async () => {
    await h.close();
  });

  void it('sync, become ready, and land where the kubelet writes them; the last of two items at one path wins', async () => {
    const dir = h.dir('items');
    h.api.create(configMap('paths', { a: 'A', b: 'B', c: 'C', d: 'D', e: 'E' }));
    // As the webhook passes a configMap volume's items on.
    const source = formatSourceSpec({
      kind: 'configmap',
      name: 'paths',
      dir,
      items: [
        { key: 'a', path: './config.yaml' },
        { key: 'b', path: 'sub/./x' },
        { key: 'd', path: 'dup' },
        { key: 'e', path: './dup', mode: 0o600 },
      ],
    });
    const r = await h.reloader(['--source', source]);
    await waitReady(r);
    assert.deepEqual(readTree(dir), { 'config.yaml': 'A', 'sub/x': 'B', dup: 'E' });
    assert.equal(lstatSync(join(dir, 'dup')).isSymbolicLink(), true);
    assert.equal(readlinkSync(join(dir, 'config.yaml')), '..data/config.yaml');
    assert.equal(lstatSync(join(dir, '..data', 'dup')).mode & 0o777, 0o600);
    assert.equal(await r.stop(), 0);
  });

  void it('empty elements and a trailing slash too (`deep//er/` is `deep/er`)', async () => {
    const dir = h.dir('slashes');
    h.api.create(configMap('slashes', { c: 'C' }));
    const source = formatSourceSpec({
      kind: 'configmap',
      name: 'slashes',
      dir,
      items: [{ key: 'c', path: 'deep//er/' }],
    });
    const r = await h.reloader(['--source', source]);
    await waitReady(r);
    assert.deepEqual(readTree(dir), { 'deep/er': 'C' });
    assert.equal(await r.stop(), 0);
  });
});
