import assert from 'node:assert/strict';
import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { KubectlReader } from './kubectl-reader.ts';
import { cli } from './run-cli.ts';
import { MANIFESTS } from './sample-manifests.ts';

const FIXTURES = resolve(import.meta.dirname, '..', 'fixtures', 'inject');
const dir = mkdtempSync(join(tmpdir(), 'inject-command-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const lastLine = (text: string): string => text.trimEnd().split('\n').at(-1) ?? '';
const yamlDocs = (text: string): Record<string, any>[] =>
  parseAllDocuments(text).map((d) => (Array.isArray(d) ? null : d.toJS()));

describe('config-reloader-injector inject (child process)', () => {
  it('injects a file and prints every document, reporting to stderr', async () => {
    const file = join(dir, 'manifests.yaml');
    writeFileSync(file, MANIFESTS);
    const { code, stdout, stderr } = await cli(['-f', file, '--reloader-image=registry.local/cri:9']);
    assert.equal(code, 0, stderr);
    const docs = yamlDocs(stdout);
    assert.equal(docs.length, 4);
    assert.equal(docs[0]?.spec.template.spec.initContainers[0].image, 'registry.local/cri:9');
    assert.equal(docs[1]?.kind, 'Service');
    assert.match(stderr, /document 1 \(Deployment\/shop\/web\): injected \(1 source\)/);
    assert.match(stderr, /document 3 \(CronJob\/report\): injected/);
  });

  it('reads standard input with -f - and legacy mode from the flag', async () => {
    // The Deployment alone: legacy mode is no mode for the CronJob's pod, which must run to completion.
    const deployment = MANIFESTS.slice(0, MANIFESTS.indexOf('---'));
    const { code, stdout, stderr } = await cli(['-f', '-', '--sidecar-mode', 'legacy'], deployment);
    assert.equal(code, 0, stderr);
    const [first] = yamlDocs(stdout);
    assert.equal(first?.spec.template.spec.initContainers[0].name, 'config-reloader-init');
  });

  it('exits 1 with the document named on a denial, printing nothing', async () => {
    const { code, stdout, stderr } = await cli(
      [],
      MANIFESTS.replace(
        'config-reloader.io/inject: "true"',
        'config-reloader.io/inject: "true"\n        config-reloader.io/port: "none"',
      ),
    );
    assert.equal(code, 1);
    assert.equal(stdout, '');
    assert.match(
      stderr,
      /^error: document 1 \(Deployment\/shop\/web\): config-reloader\.io\/port: "none" is not a port number/m,
    );
  });

  it('exits 2 on a bad flag and 1 on a missing file', async () => {
    const badFlag = await cli(['--sidecar-mode=sidecar']);
    assert.equal(badFlag.code, 2);
    assert.match(badFlag.stderr, /error: --sidecar-mode "sidecar" is not a sidecar mode/);
    const missing = await cli(['-f', join(dir, 'nope.yaml')]);
    assert.equal(missing.code, 1);
    assert.equal(missing.stderr, `error: the path "${join(dir, 'nope.yaml')}" does not exist\n`);
  });

  it('prints help that names every flag and what it reads and writes', async () => {
    const { code, stdout } = await cli(['--help']);
    assert.equal(code, 0);
    for (const text of [
      '--filename',
      '--recursive',
      '--namespace-injection',
      '--reloader-image',
      '--sidecar-mode',
      '--reloader-port',
      '--cpu-request',
      '--memory-limit',
      '--allow-any-reload-host',
      'YAML 1.1',
      'byte for byte',
      'documents injected',
      'docs/inject.md',
    ]) {
      assert.ok(stdout.includes(text), text);
    }
  });
});

/** `-f DIR`, `-R` and repeated `-f`, read as kubectl reads them (checked against kubectl). */
describe('inject -f with directories, -R and several -f', () => {
  let kubectl: KubectlReader;
  const tree = join(dir, 'tree');
  const configMap = (name: string): string =>
    `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${name}\ndata:\n  mode: 0644\n`;
  before(async () => {
    kubectl = await KubectlReader.start();
    mkdirSync(join(tree, 'sub', 'deeper'), { recursive: true });
    writeFileSync(join(tree, 'b.yaml'), `${configMap('b')}---\n${configMap('b2')}`);
    writeFileSync(join(tree, 'a.yml'), configMap('a'));
    writeFileSync(
      join(tree, 'c.json'),
      JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c' } }, null, 2),
    );
    writeFileSync(join(tree, 'notes.txt'), 'not a manifest: kind: ConfigMap\n');
    writeFileSync(join(tree, 'upper.YAML'), configMap('upper'));
    writeFileSync(join(tree, 'sub', 'd.yaml'), configMap('d'));
    writeFileSync(join(tree, 'sub', 'deeper', 'e.yaml'), configMap('e'));
    writeFileSync(join(dir, 'single.txt'), configMap('single'));
  });
  after(() => kubectl?.close());

  const names = (stdout: string): string[] => yamlDocs(stdout).map((d) => String(d?.metadata?.name));

  it('reads the .json, .yaml and .yml files of a directory in kubectl order, subdirectories only with -R', async () => {
    const flat = await cli(['-f', tree]);
    assert.equal(flat.code, 0, flat.stderr);
    const theirs = (await kubectl.read([tree])).map((o) => o.metadata.name);
    assert.deepEqual(theirs, ['a', 'b', 'b2', 'c']);
    assert.deepEqual(names(flat.stdout), theirs);
    assert.match(flat.stderr, /warning: the directory ".*tree": 1 subdirectory not read without -R/);
    assert.equal(lastLine(flat.stderr), '0 of 4 documents injected');

    const deep = await cli(['-R', '-f', tree]);
    assert.equal(deep.code, 0, deep.stderr);
    const theirsDeep = (await kubectl.read([tree], { recursive: true })).map((o) => o.metadata.name);
    assert.deepEqual(theirsDeep, ['a', 'b', 'b2', 'c', 'd', 'e']);
    assert.deepEqual(names(deep.stdout), theirsDeep);
    assert.equal((await cli(['--recursive', '-f', tree])).stdout, deep.stdout);
  });

  it('takes -f more than once, a file named explicitly whatever its extension, and writes one YAML stream', async () => {
    const single = join(dir, 'single.txt');
    const { code, stdout, stderr } = await cli([
      '-f',
      join(tree, 'c.json'),
      '-f',
      single,
      '-f',
      join(tree, 'b.yaml'),
    ]);
    assert.equal(code, 0, stderr);
    const theirs = (await kubectl.read([join(tree, 'c.json'), single, join(tree, 'b.yaml')])).map(
      (o) => o.metadata.name,
    );
    assert.deepEqual(names(stdout), theirs);
    // The stream starts with "{" (the JSON file), so a --- line first makes kubectl read it as YAML.
    assert.ok(stdout.startsWith('---\n{'), stdout.slice(0, 20));
    const out = join(dir, 'joined.yaml');
    writeFileSync(out, stdout);
    assert.deepEqual(
      (await kubectl.read([out])).map((o) => o.metadata.name),
      theirs,
    );
  });

  it('names a missing or unreadable path in one error line, and prints nothing', async () => {
    const missing = await cli(['-f', join(tree, 'a.yml'), '-f', join(tree, 'missing')]);
    assert.equal(missing.code, 1);
    assert.equal(missing.stdout, '');
    assert.equal(missing.stderr, `error: the path "${join(tree, 'missing')}" does not exist\n`);

    // A file where a directory should be; and, when not root, a file without read permission.
    const notDir = await cli(['-f', join(tree, 'a.yml', 'x.yaml')]);
    assert.equal(notDir.code, 1);
    assert.match(
      notDir.stderr,
      /^error: the path ".*a\.yml\/x\.yaml" (does not exist|cannot be read: .*)\n$/,
    );
    if (process.getuid?.() !== 0) {
      const locked = join(dir, 'locked.yaml');
      writeFileSync(locked, configMap('locked'));
      chmodSync(locked, 0o000);
      const denied = await cli(['-f', locked]);
      assert.equal(denied.code, 1);
      assert.equal(denied.stderr, `error: the path "${locked}" cannot be read: permission denied\n`);
    }
  });

  it('says so when a directory has no manifests', async () => {
    const empty = join(dir, 'empty');
    mkdirSync(join(empty, 'only-sub'), { recursive: true });
    copyFileSync(join(tree, 'a.yml'), join(empty, 'only-sub', 'a.yml'));
    const { code, stdout, stderr } = await cli(['-f', empty]);
    assert.equal(code, 0);
    assert.equal(stdout, '');
    assert.match(
      stderr,
      /warning: the directory ".*empty" has no \.json, \.yaml, \.yml files; 1 subdirectory not read without -R/,
    );
    assert.equal(lastLine(stderr), '0 of 0 documents injected');
  });
});

/** What inject says on stderr. */
describe('inject messages', () => {
  const shop = readFileSync(join(FIXTURES, 'shop.yaml'), 'utf8');

  it('ends with "N of M documents injected", after a line per injected template', async () => {
    const { code, stderr } = await cli(['--reloader-image=registry.example.com/cri:1'], shop);
    assert.equal(code, 0, stderr);
    const lines = stderr.trimEnd().split('\n');
    assert.equal(lines.at(-1), '2 of 7 documents injected');
    assert.ok(lines.includes('document 3 (Deployment/shop/web): injected (2 sources)'), stderr);
    assert.ok(lines.includes('document 6 (CronJob/shop/report): injected (1 source)'), stderr);
    const one = await cli([], MANIFESTS.slice(0, MANIFESTS.indexOf('---')));
    assert.equal(lastLine(one.stderr), '1 of 1 document injected');
  });

  it('warns when the inject annotation is on a workload instead of its pod template, naming the field to move it to', async () => {
    const { stderr } = await cli([], shop);
    assert.match(
      stderr,
      /^warning: document 7 \(Deployment\/shop\/admin\): config-reloader\.io\/inject is in the Deployment's own metadata\.annotations, which injection does not read; move it to spec\.template\.metadata\.annotations \(the pod template\)$/m,
    );
    const cronJob = `apiVersion: batch/v1
kind: CronJob
metadata:
  name: nightly
  annotations: {config-reloader.io/inject: "true", config-reloader.io/reload-url: "http://127.0.0.1:1/"}
spec:
  schedule: "@daily"
  jobTemplate: {spec: {template: {spec: {restartPolicy: Never, containers: [{name: a, image: a}]}}}}
`;
    const misplaced = await cli([], cronJob);
    assert.equal(misplaced.code, 0);
    assert.equal(misplaced.stdout, cronJob);
    assert.match(
      misplaced.stderr,
      /config-reloader\.io\/inject, config-reloader\.io\/reload-url are in the CronJob's own metadata\.annotations, which injection does not read; move them to spec\.jobTemplate\.spec\.template\.metadata\.annotations/,
    );
  });

  it('says when the input has no documents', async () => {
    for (const input of ['', '\n\n', '# only a comment\n---\n---\n# and another\n']) {
      const { code, stdout, stderr } = await cli([], input);
      assert.equal(code, 0);
      assert.equal(stdout, input);
      assert.match(
        stderr,
        /^warning: standard input has no Kubernetes objects \(it is empty or only comments\); nothing to inject$/m,
      );
      assert.equal(lastLine(stderr), '0 of 0 documents injected');
    }
  });

  it('notes on stderr when the sidecar image is the default one, and not with --reloader-image', async () => {
    const withDefault = await cli([], shop);
    assert.match(
      withDefault.stderr,
      /^note: the sidecar image is the default config-reloader-injector:0\.1\.0, which no registry serves, so no cluster can pull it: .*pass --reloader-image/m,
    );
    assert.ok(withDefault.stdout.includes('image: config-reloader-injector:0.1.0'));
    const withImage = await cli(['--reloader-image', 'registry.example.com/cri:1'], shop);
    assert.doesNotMatch(withImage.stderr, /note:/);
    // Nothing injected, no note either.
    const nothing = await cli([], 'apiVersion: v1\nkind: Service\nmetadata: {name: s}\n');
    assert.doesNotMatch(nothing.stderr, /note:/);
  });
});
