import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { MANIFESTS } from './sample-manifests.ts';

const ROOT = resolve(import.meta.dirname, '..', '..');
const NODE = join(ROOT, 'node_modules', '.bin', 'node');
const dir = mkdtempSync(join(tmpdir(), 'inject-command-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Runs the real CLI as a child process; resolves when it exits. */
function cli(
  args: string[],
  stdin?: string,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(NODE, ['src/cli.ts', 'inject', ...args], {
      cwd: ROOT,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolvePromise({ code, stdout, stderr }));
    child.stdin.end(stdin ?? '');
  });
}

describe('config-reloader-injector inject (child process)', () => {
  it('injects a file and prints every document, reporting to stderr', async () => {
    const file = join(dir, 'manifests.yaml');
    writeFileSync(file, MANIFESTS);
    const { code, stdout, stderr } = await cli(['-f', file, '--reloader-image=registry.local/cri:9']);
    assert.equal(code, 0, stderr);
    const docs = parseAllDocuments(stdout).map((d) => (Array.isArray(d) ? null : d.toJS()));
    assert.equal(docs.length, 4);
    assert.equal(docs[0].spec.template.spec.initContainers[0].image, 'registry.local/cri:9');
    assert.equal(docs[1].kind, 'Service');
    assert.match(stderr, /document 1 \(Deployment\/shop\/web\): injected \(1 source\)/);
    assert.match(stderr, /document 3 \(CronJob\/report\): injected/);
  });

  it('reads standard input with -f - and legacy mode from the flag', async () => {
    const { code, stdout } = await cli(['-f', '-', '--sidecar-mode', 'legacy'], MANIFESTS);
    assert.equal(code, 0);
    const [deployment] = parseAllDocuments(stdout).map((d) => (Array.isArray(d) ? null : d.toJS()));
    assert.equal(deployment.spec.template.spec.initContainers[0].name, 'config-reloader-init');
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
    assert.match(badFlag.stderr, /error: --sidecar-mode "sidecar" is neither native nor legacy/);
    const missing = await cli(['-f', join(dir, 'nope.yaml')]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /error: cannot read .*nope\.yaml/);
  });

  it('prints help', async () => {
    const { code, stdout } = await cli(['--help']);
    assert.equal(code, 0);
    for (const flag of [
      '--filename',
      '--namespace-injection',
      '--reloader-image',
      '--sidecar-mode',
      '--reloader-port',
      '--cpu-request',
      '--memory-limit',
      '--allow-any-reload-host',
    ]) {
      assert.ok(stdout.includes(flag), flag);
    }
  });
});
