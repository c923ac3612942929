import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { stringify } from 'yaml';
import { DEFAULT_INJECTOR_CONFIG } from '../../src/injection/config.ts';
import { injectPod } from '../../src/injection/inject.ts';
import { injectManifests } from '../../src/manifests/manifests.ts';
import { readManifests } from '../../src/manifests/read.ts';
import { loadPod, podFixtureNames } from '../support/fixtures.ts';

type Obj = Record<string, any>;

const FIXTURES = resolve(import.meta.dirname, '..', 'fixtures', 'inject');
const options = { optIn: 'annotation' as const, config: DEFAULT_INJECTOR_CONFIG };
const read = (text: string): Obj[] => readManifests(text).documents.map((d) => d.value as Obj);

/** The sections of a YAML stream between its --- lines, and the --- lines themselves (kubectl's split). */
function sections(text: string): { separators: string[]; bodies: string[] } {
  const separators: string[] = [];
  const bodies: string[] = [];
  let body = '';
  for (const line of text.split(/(?<=\n)/)) {
    if (line.startsWith('---')) {
      separators.push(line);
      bodies.push(body);
      body = '';
    } else body += line;
  }
  bodies.push(body);
  return { separators, bodies };
}

/** The lines of `before` that are not in `after` (longest common subsequence), and the lines `after` adds. */
function lineDiff(before: string, after: string): { removed: string[]; added: string[] } {
  const a = before.split('\n');
  const b = after.split('\n');
  const lcs: number[][] = Array.from({ length: a.length + 1 }, () => new Array<number>(b.length + 1).fill(0));
  for (let i = a.length - 1; i >= 0; i--)
    for (let j = b.length - 1; j >= 0; j--)
      lcs[i]![j] = a[i] === b[j] ? lcs[i + 1]![j + 1]! + 1 : Math.max(lcs[i + 1]![j]!, lcs[i]![j + 1]!);
  const removed: string[] = [];
  const added: string[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    if (i < a.length && j < b.length && a[i] === b[j]) {
      i++;
      j++;
    } else if (j < b.length && (i >= a.length || lcs[i]![j + 1]! >= lcs[i + 1]![j]!)) added.push(b[j++]!);
    else removed.push(a[i++]!);
  }
  return { removed, added };
}

describe('inject keeps what it does not inject: a hand-written multi-document YAML with comments', () => {
  const input = readFileSync(join(FIXTURES, 'shop.yaml'), 'utf8');
  const result = injectManifests(input, options);
  const before = sections(input);
  const after = sections(result.output);
  // Sections: 0 the header comment, 1 Namespace, 2 ConfigMap, 3 Deployment web, 4 Service, 5 NetworkPolicy,
  // 6 CronJob, 7 Deployment admin.
  const injected = new Set([3, 6]);

  it('injects the two opted-in templates and nothing else', () => {
    assert.deepEqual(result.errors, []);
    assert.equal(result.documents, 7);
    assert.equal(result.injectedDocuments, 2);
  });

  it('writes every other document, and every --- line, byte for byte as it was', () => {
    assert.deepEqual(after.separators, before.separators);
    assert.equal(after.bodies.length, before.bodies.length);
    for (let i = 0; i < before.bodies.length; i++) {
      if (injected.has(i)) assert.notEqual(after.bodies[i], before.bodies[i], `section ${i}`);
      else assert.equal(after.bodies[i], before.bodies[i], `section ${i}`);
    }
    const untouched = before.bodies.filter((_, i) => !injected.has(i));
    const { output } = injectManifests(untouched.join('---\n'), options);
    assert.equal(output, untouched.join('---\n'));
  });

  it('changes in an injected document only the lines injection changes, keeping every comment and style elsewhere', () => {
    const web = lineDiff(before.bodies[3]!, after.bodies[3]!);
    // The two volume sources become emptyDirs; their comments go with them, nothing else is removed.
    assert.deepEqual(web.removed, [
      '        configMap:',
      '          name: web-config',
      '          defaultMode: 0644   # octal: 420',
      '        secret:',
      '          secretName: web-tls',
      '          defaultMode: 0440   # octal: 288, readable by the group',
    ]);
    assert.ok(web.added.includes('        config-reloader.io/status: injected'));
    assert.ok(web.added.includes('        emptyDir: {}'));
    // The document's own layout: compact sequences (dashes at the key's column), two spaces per level.
    assert.ok(web.added.includes('      initContainers:'));
    assert.ok(web.added.includes('      - name: config-reloader'));
    assert.ok(web.added.includes('      - name: config-reloader-api-access'));
    // Values kubectl would misread unquoted are quoted.
    assert.ok(web.added.includes('          value: "2"'), web.added.join('\n'));
    assert.ok(web.added.includes('        - "--listen=:9533"'), web.added.join('\n'));

    const report = lineDiff(before.bodies[6]!, after.bodies[6]!);
    assert.deepEqual(report.removed, ['                            secret: {secretName: report-creds}']);
    // Four spaces per level, and the flow style of the volume source it replaces.
    assert.ok(report.added.includes('                            emptyDir: {medium: Memory}'));
    assert.ok(report.added.includes('                        config-reloader.io/status: injected'));
    assert.ok(report.added.includes('                    initContainers:'));
  });

  it('writes what it meant: read back, each injected document is the injected object', () => {
    const docs = read(result.output);
    const original = read(input);
    const web = docs[2]!;
    assert.deepEqual(web.spec.template.spec.containers[0].args, [
      '--config=/etc/web/app.yaml',
      '--appendonly',
      'no',
    ]);
    assert.deepEqual(web.spec.template.spec.volumes[0], { name: 'config', emptyDir: {} });
    assert.equal(web.spec.template.spec.initContainers[0].name, 'config-reloader');
    const expected = injectPod(original[2]!.spec.template, { optIn: 'annotation' }, DEFAULT_INJECTOR_CONFIG);
    assert.equal(expected.action, 'patch');
    if (expected.action === 'patch') assert.deepEqual(web.spec.template, expected.pod);
    assert.deepEqual(
      { ...web, spec: { ...web.spec, template: null } },
      {
        ...original[2],
        spec: { ...original[2]!.spec, template: null },
      },
    );
  });

  it('is idempotent: a second run writes the same bytes', () => {
    const again = injectManifests(result.output, options);
    assert.deepEqual(again.errors, []);
    assert.equal(again.injectedDocuments, 0);
    assert.equal(again.output, result.output);
  });

  it('keeps CRLF line endings, in untouched and in added lines', () => {
    const crlf = input.replace(/\n/g, '\r\n');
    const out = injectManifests(crlf, options);
    assert.deepEqual(out.errors, []);
    assert.doesNotMatch(out.output, /[^\r]\n/);
    assert.deepEqual(read(out.output), read(result.output));
    const outSections = sections(out.output);
    const inSections = sections(crlf);
    for (let i = 0; i < inSections.bodies.length; i++)
      if (!injected.has(i)) assert.equal(outSections.bodies[i], inSections.bodies[i]);
  });

  it('injects a last document without a final newline', () => {
    const cut = input.slice(0, input.indexOf('...\n'));
    const out = injectManifests(cut.trimEnd(), options);
    assert.deepEqual(out.errors, []);
    assert.equal(out.injectedDocuments, 1);
    assert.equal(read(out.output)[2]?.spec.template.spec.initContainers[0].name, 'config-reloader');
  });
});

describe('inject keeps what it does not inject: JSON', () => {
  const input = readFileSync(join(FIXTURES, 'shop.json'), 'utf8');
  const result = injectManifests(input, options);

  it('writes the List item it does not inject byte for byte, and the injected one in the same JSON layout', () => {
    assert.deepEqual(result.errors, []);
    assert.equal(result.injectedDocuments, 1);
    const configMapText = input.slice(input.indexOf('        {'), input.indexOf('        },') + 10);
    assert.ok(result.output.includes(configMapText));
    const parsed = JSON.parse(result.output) as Obj;
    assert.deepEqual(parsed, read(result.output)[0]);
    const { removed, added } = lineDiff(input, result.output);
    assert.deepEqual(removed, [
      '                            "config-reloader.io/inject": "true"',
      '                                "configMap": {',
      '                                    "name": "web-config",',
      '                                    "defaultMode": 420',
    ]);
    for (const line of added) assert.equal((/^ */.exec(line)?.[0].length ?? 0) % 4, 0, line);
    assert.ok(added.includes('                            "config-reloader.io/status": "injected"'));
    assert.equal(parsed.items[1].spec.template.spec.containers[0].args[1], 'no');
  });

  it('writes a JSON stream of objects back as it came, the injected one edited in place', () => {
    const stream = `${JSON.stringify(JSON.parse(input).items[0])}\n${JSON.stringify(JSON.parse(input).items[1])}\n`;
    const out = injectManifests(stream, options);
    assert.deepEqual(out.errors, []);
    const [first, second] = out.output.split('\n');
    assert.equal(first, stream.split('\n')[0]);
    assert.equal(JSON.parse(second!).spec.template.spec.initContainers[0].name, 'config-reloader');
  });
});

describe('inject on every real-world pod fixture, written as YAML with comments and as JSON', () => {
  for (const name of podFixtureNames()) {
    it(name, () => {
      const raw = loadPod(name);
      const metadata = {
        ...(raw.metadata as Obj),
        annotations: { ...(raw.metadata as Obj)?.annotations, 'config-reloader.io/inject': 'true' },
      };
      const pod = { apiVersion: 'v1', kind: 'Pod', ...raw, metadata };
      const outcome = injectPod(pod, { optIn: 'annotation' }, DEFAULT_INJECTOR_CONFIG);
      const expected = outcome.action === 'patch' ? outcome.pod : pod;
      // As a GitOps repository would hold it: YAML 1.1 quoting ("no" quoted), a comment above and below.
      const yamlText = `# ${name}\n${stringify(pod, { version: '1.1' })}# end\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: untouched}  # keep\n`;
      for (const [text, json] of [
        [yamlText, false],
        [JSON.stringify(pod, null, 2), true],
      ] as const) {
        const result = injectManifests(text, options);
        assert.deepEqual(result.errors, [], `${json ? 'JSON' : 'YAML'}: ${result.errors.join('\n')}`);
        assert.deepEqual(read(result.output)[0], expected, json ? 'JSON' : 'YAML');
        if (json) assert.deepEqual(JSON.parse(result.output), expected);
        else {
          assert.ok(result.output.startsWith(`# ${name}\n`));
          assert.ok(
            result.output.endsWith(
              `# end\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: untouched}  # keep\n`,
            ),
          );
        }
      }
    });
  }

  it('049-argocd-redis keeps args [--appendonly, "no"] a string (a real API server once got a boolean)', () => {
    const raw = loadPod('049-argocd-redis.json');
    const pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      ...raw,
      metadata: { ...(raw.metadata as Obj), annotations: { 'config-reloader.io/inject': 'true' } },
    };
    const text = stringify(pod, { version: '1.1' });
    const out = read(injectManifests(text, options).output)[0]!;
    const args = (out.spec.containers as Obj[]).flatMap((c) => (c.args ?? []) as unknown[]);
    assert.ok(args.includes('--appendonly'));
    assert.equal(args[args.indexOf('--appendonly') + 1], 'no');
  });
});
