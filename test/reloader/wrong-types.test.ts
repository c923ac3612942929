/**
 * A server that does not conform to the API sends data values of the wrong type (a number, an object, an array,
 * null, or `data` that is no map at all). The reloader refuses such an object, naming the key and the type, and no
 * part of the data reaches its output, at any log level.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { projectObject, ProjectionError } from '../../src/reloader/projection.ts';
import { parseSourceSpec } from '../../src/shared/source-spec.ts';
import { startCli, type CliChild } from '../support/cli.ts';
import { waitFor } from '../support/wait.ts';

/** Distinctive values: none of them may appear in any output. */
const NUMBER = 987654321987;
const NUMBER_2 = 123456789123;
const MARKERS = [
  String(NUMBER),
  String(NUMBER_2),
  'obj-leak-value',
  'arr-leak-value',
  'data-string-leak-value',
  'binary-leak-value',
];

/** The objects the non-conforming server holds, by `kind/name`. */
const OBJECTS: Record<string, Record<string, unknown>> = {
  'secrets/bad-number': { data: { good: 'b2s=', count: NUMBER } },
  'secrets/bad-object': { data: { nested: { inner: 'obj-leak-value' } } },
  'secrets/bad-array': { data: { list: ['arr-leak-value'] } },
  'secrets/bad-null': { data: { empty: null } },
  'configmaps/bad-text': { data: { 'app.yaml': NUMBER_2 } },
  'configmaps/bad-data': { data: 'data-string-leak-value' },
  'configmaps/bad-binary': { data: {}, binaryData: { blob: ['binary-leak-value'] } },
};

/** Lists answer with the object; watches stay open and quiet (a bookmark now and then). */
function nonConformingServer(): Server {
  return createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const resource = url.pathname.split('/')[5] ?? '';
    const name = (url.searchParams.get('fieldSelector') ?? '').replace('metadata.name=', '');
    const body = OBJECTS[`${resource}/${name}`];
    res.setHeader('content-type', 'application/json');
    if (url.searchParams.get('watch') === 'true') {
      res.write('');
      const timer = setInterval(
        () =>
          res.write(
            `${JSON.stringify({ type: 'BOOKMARK', object: { metadata: { resourceVersion: '7' } } })}\n`,
          ),
        200,
      );
      res.on('close', () => clearInterval(timer));
      return;
    }
    const items = body ? [{ metadata: { name, namespace: 'shop', resourceVersion: '7' }, ...body }] : [];
    res.end(JSON.stringify({ metadata: { resourceVersion: '7' }, items }));
  });
}

void describe('data values of the wrong type from a non-conforming server', () => {
  let server: Server;
  let root: string;
  let cli: CliChild | undefined;

  before(async () => {
    server = nonConformingServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    root = await mkdtemp(join(tmpdir(), 'reloader-types-'));
  });
  after(async () => {
    if (cli && cli.child.exitCode === null) cli.child.kill('SIGKILL');
    await cli?.exited;
    server.closeAllConnections();
    server.close();
    await rm(root, { recursive: true, force: true });
  });

  void it('are refused naming the key and the type, and never reach a log line', async () => {
    const kubeconfig = join(root, 'kubeconfig');
    const port = (server.address() as AddressInfo).port;
    await writeFile(
      kubeconfig,
      JSON.stringify({
        'current-context': 'c',
        contexts: [{ name: 'c', context: { cluster: 'k', user: 'u', namespace: 'shop' } }],
        clusters: [{ name: 'k', cluster: { server: `http://127.0.0.1:${port}` } }],
        users: [{ name: 'u', user: { token: 'not-a-secret' } }],
      }),
    );
    const sources = Object.keys(OBJECTS).map((key) => {
      const [resource, name] = key.split('/') as [string, string];
      return `${resource === 'secrets' ? 'secret' : 'configmap'}/${name}=${join(root, name)}`;
    });
    cli = startCli([
      'reloader',
      '--kubeconfig',
      kubeconfig,
      '--listen',
      '127.0.0.1:0',
      '--log-level',
      'trace',
      ...sources.flatMap((s) => ['--source', s]),
    ]);
    const lines = (): Array<Record<string, unknown>> =>
      cli!
        .stdout()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    const about = (name: string) => (l: Record<string, unknown>) => String(l.source).endsWith(`/${name}`);
    const names = Object.keys(OBJECTS).map((key) => key.split('/')[1] as string);
    // Each object handled: refused with an error line, or (wrongly) written.
    await waitFor(
      () =>
        names.every((name) =>
          lines().some(
            (l) => about(name)(l) && (l.level === 'error' || l.msg === 'content changed: files written'),
          ),
        ),
      'each object handled',
    );
    const output = cli.stdout() + cli.stderr();
    for (const marker of MARKERS) assert.ok(!output.includes(marker), `"${marker}" appeared in the output`);
    const errorOf = (name: string): string =>
      String(lines().find((l) => about(name)(l) && l.level === 'error')?.error);
    assert.equal(errorOf('bad-number'), 'key "count" holds a number, not a string');
    assert.equal(errorOf('bad-object'), 'key "nested" holds an object, not a string');
    assert.equal(errorOf('bad-array'), 'key "list" holds an array, not a string');
    assert.equal(errorOf('bad-null'), 'key "empty" holds null, not a string');
    assert.equal(errorOf('bad-text'), 'key "app.yaml" holds a number, not a string');
    assert.equal(errorOf('bad-data'), 'data is a string, not a map of keys to values');
    assert.equal(errorOf('bad-binary'), 'key "blob" in binaryData holds an array, not a string');
    // Nothing was written for any of them: the previous files (none) stay.
    for (const key of Object.keys(OBJECTS)) {
      const entries = await readdir(join(root, key.split('/')[1] as string)).catch(() => []);
      assert.deepEqual(entries, [], `${key}: nothing written`);
    }
    cli.child.kill('SIGTERM');
    assert.equal((await cli.exited).code, 0);
  });

  void it('projectObject refuses each wrong type with a ProjectionError that quotes no value', () => {
    const spec = parseSourceSpec('configmap/x=/tmp/x');
    const wrong = [
      { k: 5171 },
      { k: { v: 'ovalue' } },
      { k: ['avalue'] },
      { k: null },
      'svalue',
      ['bvalue'],
      1771,
      true,
    ];
    for (const data of wrong) {
      assert.throws(
        () => projectObject(spec, { data } as unknown as Parameters<typeof projectObject>[1]),
        (err: unknown) =>
          err instanceof ProjectionError && !/ovalue|avalue|svalue|bvalue|5171|1771|true/.test(err.message),
        JSON.stringify(data),
      );
    }
  });
});
