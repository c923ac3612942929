import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DEFAULT_INJECTOR_CONFIG } from '../../src/injection/config.ts';
import { injectManifests } from '../../src/manifests/manifests.ts';
import { readManifests } from '../../src/manifests/read.ts';
import { flowText, blockLines } from '../../src/manifests/render.ts';
import { KubectlReader, type Obj } from './kubectl-reader.ts';

const FIXTURES = resolve(import.meta.dirname, '..', 'fixtures', 'inject');
const options = { optIn: 'annotation' as const, config: DEFAULT_INJECTOR_CONFIG };
const values = (text: string): Obj[] => readManifests(text).documents.map((d) => d.value as Obj);

/** Strings that YAML 1.1 or YAML 1.2 would read as something else when written plain. */
const TRICKY = [
  'no',
  'No',
  'NO',
  'n',
  'N',
  'yes',
  'y',
  'Y',
  'on',
  'On',
  'off',
  'OFF',
  'true',
  'False',
  '~',
  'null',
  'Null',
  '',
  '0644',
  '0440',
  '0o17',
  '0x1F',
  '0x_1F',
  '0b101',
  '1_000',
  '1e3',
  '1E+3',
  '.5',
  '1.',
  '+1',
  '-1',
  '08',
  '+0644',
  '1:20',
  '190:20:30',
  '2001-12-14',
  '.inf',
  '-.Inf',
  '.nan',
  '0x1p-2',
  '1e400',
  '12e',
  '<<',
  '-',
  '- a',
  '? x',
  'a: b',
  'a #b',
  '#x',
  '@x',
  '`x',
  '!x',
  '&x',
  '*x',
  '|',
  '>',
  '%x',
  'x:',
  ' x',
  'x ',
  'a,b',
  '[x]',
  '{x}',
  '"q"',
  "'q'",
  'line\nbreak',
  'tab\there',
  '--appendonly',
  'http://127.0.0.1:8080/-/reload',
  '10m',
  '48Mi',
  'nel\u0085here',
  'ls\u2028here',
  'del\u007fhere',
  'bom\ufeffhere',
  'café 🙂',
];

/**
 * Reading manifests as kubectl does, proved against kubectl: the same file through `kubectl create
 * --dry-run=client -o json` gives the very values inject reads, and inject's output, read by kubectl, is what
 * inject meant to write.
 */
describe('inject reads and writes YAML as kubectl does (checked against kubectl)', () => {
  let kubectl: KubectlReader;
  const dir = mkdtempSync(join(tmpdir(), 'inject-fidelity-'));
  before(async () => {
    kubectl = await KubectlReader.start();
  });
  after(async () => {
    await kubectl?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('reads YAML 1.1 scalars, keys, anchors and merge keys into the values kubectl reads', async () => {
    const file = join(FIXTURES, 'values.yaml');
    const theirs = await kubectl.read([file]);
    const ours = values(readFileSync(file, 'utf8'));
    assert.deepEqual(ours, theirs);
    // The values the issue is about, spelled out.
    const [data, keys, pod] = ours as [Obj, Obj, Obj];
    assert.equal(data.data.octal, 420);
    assert.equal(data.data['octal-0o'], 15);
    assert.equal(data.data['no-value'], false);
    assert.equal(data.data.on ?? data.data.true, true);
    assert.equal(data.data['float-exponent'], 1000);
    assert.equal(data.data['sexagesimal-is-string'], '1:20');
    assert.equal(data.data['timestamp-is-string'], '2001-12-14');
    assert.equal(data.metadata.annotations['quoted-no'], 'no');
    assert.equal(keys.data['420'], 'b');
    assert.equal(keys.data['true'], 'a');
    assert.equal(keys.data.dup, 'second');
    assert.equal(pod.spec.volumes[1].secret.defaultMode, 0o440);
    assert.equal(pod.spec.volumes[0].configMap.items[0].mode, 0o400);
    assert.deepEqual(pod.spec.containers[0].args, ['--appendonly', false, 'no', true, 420, '0644', 1000]);
    assert.equal(pod.spec.containers[1].image, 'example/app:1');
    assert.equal(pod.spec.containers[2].image, 'example/other:2');
  });

  it('injects a pod whose volumes have defaultMode: 0644 and 0440, and kubectl reads the output as inject meant it', async () => {
    const file = join(FIXTURES, 'values.yaml');
    const result = injectManifests(readFileSync(file, 'utf8'), options);
    assert.deepEqual(result.errors, []);
    assert.equal(result.injectedDocuments, 1);
    const out = join(dir, 'values-injected.yaml');
    writeFileSync(out, result.output);
    const theirs = await kubectl.read([out]);
    assert.deepEqual(values(result.output), theirs);
    const pod = theirs[2] as Obj;
    const sidecar = pod.spec.initContainers[0];
    // The configMap volume (0644, one item 0400) is synced by the sidecar with those modes, as octal.
    assert.ok(
      sidecar.args.includes(
        '--source=configmap/app-config=/var/run/config-reloader/volumes/config?defaultMode=0644&item=app.yaml:app.yaml:0400',
      ),
      sidecar.args.join(' '),
    );
    // The secret volume the annotation left out keeps its mode, 0440 (288), and every arg stays what it was.
    assert.equal(pod.spec.volumes[1].secret.defaultMode, 0o440);
    assert.deepEqual(pod.spec.containers[0].args, ['--appendonly', false, 'no', true, 420, '0644', 1000]);
  });

  it('writes strings that YAML 1.1 would read as something else quoted, in block and flow style', async () => {
    const configMap = (data: Obj): Obj => ({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'tricky' },
      data,
    });
    const data = Object.fromEntries(TRICKY.map((s, i) => [`k${i}`, s]));
    const keyed = Object.fromEntries(TRICKY.filter((s) => s !== '').map((s) => [s, 'v']));
    const style = { json: false, unit: 2, seqIndent: 2, eol: '\n' };
    const docs = [
      blockLines(configMap(data), 0, style).join('\n'),
      blockLines(configMap(keyed), 0, style).join('\n'),
      flowText(configMap(data), style),
      flowText(configMap(keyed), style),
      flowText(configMap(data), { ...style, json: true }, { column: 0, unit: 4 }),
    ];
    const file = join(dir, 'tricky.yaml');
    writeFileSync(file, docs.join('\n---\n') + '\n');
    const theirs = await kubectl.read([file]);
    assert.deepEqual(theirs, [
      configMap(data),
      configMap(keyed),
      configMap(data),
      configMap(keyed),
      configMap(data),
    ]);
    assert.deepEqual(values(readFileSync(file, 'utf8')), theirs);
  });

  it("reads escaped JSON keys right, where V8's JSON.parse does not (nodejs/node#63785)", async () => {
    const stream = String.raw`{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "annotations": {"h": "x", "\\": "0"}}}
{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b", "annotations": {"h": "x", "\"": "2", "\n": "3"}}}
`;
    const file = join(dir, 'escaped-keys.json');
    writeFileSync(file, stream);
    const ours = values(stream);
    assert.deepEqual(Object.keys(ours[1]!.metadata.annotations), ['h', '"', '\n']);
    assert.deepEqual(ours, await kubectl.read([file]));
  });

  it('reads a multi-document YAML whose first document is JSON, and writes it so that kubectl reads it too', async () => {
    const text = `{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "first"}, "data": {"mode": "0644"}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: second}
data: {mode: 0644}
`;
    const file = join(dir, 'json-first.yaml');
    writeFileSync(file, text);
    // kubectl itself takes a text that starts with "{" for JSON, and fails on the ---.
    assert.notEqual(
      (await kubectl.run(['create', '--dry-run=client', '-o', 'json', '--validate=false', '-f', file])).code,
      0,
    );
    const result = injectManifests(text, options);
    assert.deepEqual(result.errors, []);
    assert.equal(result.documents, 2);
    assert.equal(result.output, `---\n${text}`);
    const out = join(dir, 'json-first-out.yaml');
    writeFileSync(out, result.output);
    const theirs = await kubectl.read([out]);
    assert.deepEqual(theirs, values(text));
    assert.deepEqual(
      theirs.map((o) => o.data.mode),
      ['0644', 420],
    );
  });
});
