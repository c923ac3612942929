import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { runCli } from '../support/cli.ts';

/** The injection core's denials as `config-reloader-injector inject -f FILE` reports them. */

const dir = mkdtempSync(join(tmpdir(), 'injection-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));

let files = 0;
function manifest(text: string): string {
  const file = join(dir, `manifest-${++files}.yaml`);
  writeFileSync(file, text);
  return file;
}

function deployment(annotations: string): string {
  return `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  template:
    metadata:
      annotations:
        config-reloader.io/inject: "true"
${annotations}
    spec:
      containers:
        - name: web
          image: example/web:1
          volumeMounts:
            - {name: config, mountPath: /etc/web}
      volumes:
        - name: config
          configMap:
            name: web-config
`;
}

describe('inject -f FILE: every invalid annotation of a template at once', () => {
  it('exits 1, prints nothing, and names each invalid annotation with its value and fix', async () => {
    const file = manifest(
      deployment(`        config-reloader.io/port: "none"
        config-reloader.io/reload-url: http://10.0.0.1/reload
        config-reloader.io/gunzip: "yes"`),
    );
    const { code, stdout, stderr } = await runCli(['inject', '-f', file]);
    assert.equal(code, 1, stderr);
    assert.equal(stdout, '');
    assert.match(
      stderr,
      /Deployment\/shop\/web\): 3 problems with the pod's config-reloader settings, fix each of them:\n/,
    );
    assert.match(
      stderr,
      /\n1\. config-reloader\.io\/reload-url: host "10\.0\.0\.1" is not a loopback address.*; set it to/,
    );
    assert.match(
      stderr,
      /\n2\. config-reloader\.io\/port: "none" is not a port number from 1 to 65535; set a port/,
    );
    assert.match(
      stderr,
      /\n3\. config-reloader\.io\/gunzip: "yes" is neither "true" nor "false"; set it to "true" or "false"/,
    );
  });
});
