import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { gunzipSync } from 'node:zlib';
import {
  contentBytes,
  projectObject,
  ProjectionError,
  type Payload,
  type PayloadFile,
} from '../../src/reloader/projection.ts';
import { parseSourceSpec } from '../../src/shared/source-spec.ts';

const b64 = (s: string | Buffer): string => Buffer.from(s).toString('base64');

/** What the writer puts in the file (it decodes, and gunzips, itself). */
const bytes = (f: PayloadFile | undefined): Buffer | undefined =>
  f && (f.gunzip ? gunzipSync(contentBytes(f.data)) : contentBytes(f.data));

function files(payload: Payload): Record<string, [string, string]> {
  return Object.fromEntries([...payload].map(([path, f]) => [path, [String(bytes(f)), f.mode.toString(8)]]));
}

void describe('projectObject', () => {
  void it('writes every Secret key, base64-decoded, with mode 0644 by default', () => {
    const p = projectObject(parseSourceSpec('secret/s=/d'), {
      data: { 'a.txt': b64('alpha'), b: b64('beta') },
    });
    assert.deepEqual(files(p), { 'a.txt': ['alpha', '644'], b: ['beta', '644'] });
  });

  void it('writes ConfigMap data as text and binaryData decoded, with defaultMode', () => {
    const raw = Buffer.from([0, 1, 2, 255]);
    const p = projectObject(parseSourceSpec('configmap/c=/d?defaultMode=0400'), {
      data: { 'app.yaml': 'x: 1\n' },
      binaryData: { blob: b64(raw) },
    });
    assert.deepEqual(files(p)['app.yaml'], ['x: 1\n', '400']);
    assert.deepEqual(bytes(p.get('blob')), raw);
    assert.equal(p.get('blob')?.mode, 0o400);
  });

  void it('ignores binaryData on a Secret and treats an object without data as empty', () => {
    assert.equal(projectObject(parseSourceSpec('secret/s=/d'), { binaryData: { x: b64('y') } }).size, 0);
    assert.equal(projectObject(parseSourceSpec('secret/s=/d'), { data: null }).size, 0);
  });

  void it('with items, writes only those keys at their paths and modes', () => {
    const spec = parseSourceSpec(
      'secret/s=/d?defaultMode=0640&item=tls.crt:certs/server.crt&item=tls.key:certs/private/server.key:0600',
    );
    const p = projectObject(spec, {
      data: { 'tls.crt': b64('CERT'), 'tls.key': b64('KEY'), other: b64('no') },
    });
    assert.deepEqual(files(p), {
      'certs/server.crt': ['CERT', '640'],
      'certs/private/server.key': ['KEY', '600'],
    });
  });

  void it('fails on an item key the object lacks, naming the key, unless the source is optional', () => {
    const spec = 'secret/s=/d?item=present:p&item=absent:a';
    const object = { data: { present: b64('here') } };
    assert.throws(
      () => projectObject(parseSourceSpec(spec), object),
      (e: unknown) => e instanceof ProjectionError && /"absent"/.test(e.message),
    );
    assert.deepEqual(files(projectObject(parseSourceSpec(`${spec}&optional=true`), object)), {
      p: ['here', '644'],
    });
  });

  void it('gunzips .gz keys on request and drops the suffix (items keep their explicit path)', () => {
    const gz = b64(gzipSync('scrape_configs: []\n'));
    const all = projectObject(parseSourceSpec('secret/s=/d?gunzip=true'), {
      data: { 'vmagent.yaml.gz': gz, plain: b64('p') },
    });
    assert.deepEqual(files(all), { 'vmagent.yaml': ['scrape_configs: []\n', '644'], plain: ['p', '644'] });
    const item = projectObject(
      parseSourceSpec('secret/s=/d?gunzip=true&item=vmagent.yaml.gz:config/vm.yaml'),
      { data: { 'vmagent.yaml.gz': gz } },
    );
    assert.deepEqual(files(item), { 'config/vm.yaml': ['scrape_configs: []\n', '644'] });
    const off = projectObject(parseSourceSpec('secret/s=/d'), { data: { 'vmagent.yaml.gz': gz } });
    assert.deepEqual(bytes(off.get('vmagent.yaml.gz')), Buffer.from(gz, 'base64'));
    assert.equal(off.get('vmagent.yaml.gz')?.gunzip, undefined);
  });

  void it('keeps values encoded as the API sent them (the writer decodes one file at a time)', () => {
    const p = projectObject(parseSourceSpec('secret/s=/d'), { data: { k: b64('v') } });
    assert.deepEqual(p.get('k')?.data, { base64: b64('v') });
    const c = projectObject(parseSourceSpec('configmap/c=/d'), { data: { k: 'v' } });
    assert.deepEqual(c.get('k')?.data, { text: 'v' });
  });

  void it('rejects a .gz key that is not gzip, and two keys landing on one path, without quoting any value', () => {
    const secretValue = 'hunter2-do-not-print';
    assert.throws(
      () => projectObject(parseSourceSpec('secret/s=/d?gunzip=true'), { data: { 'x.gz': b64(secretValue) } }),
      (e: unknown) =>
        e instanceof ProjectionError &&
        /"x.gz" is not valid gzip/.test(e.message) &&
        !e.message.includes(secretValue),
    );
    assert.throws(
      () =>
        projectObject(parseSourceSpec('secret/s=/d?gunzip=true'), {
          data: { 'x.gz': b64(gzipSync('1')), x: b64('2') },
        }),
      /same path "x"/,
    );
  });

  void it('refuses keys that would escape or shadow the ..data layout', () => {
    assert.throws(
      () => projectObject(parseSourceSpec('secret/s=/d'), { data: { '..data': b64('x') } }),
      ProjectionError,
    );
  });

  void it('writes items where the kubelet does: at path.Clean of their path, the last of several at one path winning', () => {
    const spec = parseSourceSpec(
      'configmap/c=/d?item=a:./config.yaml&item=b:sub/./x&item=c:deep//er/&item=d:dup&item=e:./dup:0600',
    );
    const p = projectObject(spec, { data: { a: 'A', b: 'B', c: 'C', d: 'D', e: 'E' } });
    assert.deepEqual(files(p), {
      'config.yaml': ['A', '644'],
      'sub/x': ['B', '644'],
      'deep/er': ['C', '644'],
      dup: ['E', '600'],
    });
  });

  void it('an optional source whose items make one path a file and a directory: written while one key is missing, as by the kubelet', () => {
    const spec = parseSourceSpec('configmap/c=/d?optional=true&item=a:conf&item=b:conf/x');
    assert.deepEqual(files(projectObject(spec, { data: { a: 'A' } })), { conf: ['A', '644'] });
    // Both present: the writer refuses it (writer.test.ts), as the kubelet fails to write it.
    assert.deepEqual(Object.keys(files(projectObject(spec, { data: { a: 'A', b: 'B' } }))), [
      'conf',
      'conf/x',
    ]);
  });
});
