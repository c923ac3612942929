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

function job(kind: 'Job' | 'CronJob', annotations: string, restartPolicy: string): string {
  const pod = `metadata:
  annotations:
    config-reloader.io/inject: "true"
${annotations}
spec:
  restartPolicy: ${restartPolicy}
  containers:
    - name: report
      image: example/report:1
      volumeMounts:
        - {name: config, mountPath: /etc/report}
  volumes:
    - name: config
      secret:
        secretName: report-config
`;
  const indent = (text: string, by: number): string =>
    text
      .split('\n')
      .map((line) => (line ? ' '.repeat(by) + line : line))
      .join('\n');
  return kind === 'Job'
    ? `apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: report\nspec:\n  template:\n${indent(pod, 4)}`
    : `apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: report\nspec:\n  schedule: "0 * * * *"\n  jobTemplate:\n    spec:\n      template:\n${indent(pod, 8)}`;
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

describe('inject -f FILE: legacy sidecar mode and pods that run to completion', () => {
  it('denies a Job in legacy mode from --sidecar-mode=legacy, saying why and to use native mode (1.29+)', async () => {
    const file = manifest(job('Job', '', 'Never'));
    const { code, stdout, stderr } = await runCli(['inject', '-f', file, '--sidecar-mode=legacy']);
    assert.equal(code, 1, stderr);
    assert.equal(stdout, '');
    assert.match(
      stderr,
      /Job\/report\): the injector flag --sidecar-mode=legacy cannot be used for this pod: the pod has restartPolicy: Never .*never exits, so the pod would never complete and its Job would hang; set the annotation config-reloader\.io\/sidecar-mode: "native" .*Kubernetes 1\.29 and later/,
    );
  });

  it('denies a CronJob whose template asks for legacy mode, naming the annotation', async () => {
    const file = manifest(job('CronJob', '    config-reloader.io/sidecar-mode: legacy', 'OnFailure'));
    const { code, stderr } = await runCli(['inject', '-f', file]);
    assert.equal(code, 1, stderr);
    assert.match(
      stderr,
      /CronJob\/report\): config-reloader\.io\/sidecar-mode: "legacy" cannot be used here: the pod has restartPolicy: OnFailure .*remove the annotation or set it to "native"/,
    );
  });

  it('still injects a Job in native mode, and a Deployment in legacy mode', async () => {
    const jobFile = manifest(job('Job', '', 'Never'));
    const native = await runCli(['inject', '-f', jobFile]);
    assert.equal(native.code, 0, native.stderr);
    assert.match(native.stdout, /restartPolicy: Always/);
    const deploymentFile = manifest(deployment(''));
    const legacy = await runCli(['inject', '-f', deploymentFile, '--sidecar-mode=legacy']);
    assert.equal(legacy.code, 0, legacy.stderr);
    assert.match(legacy.stdout, /name: config-reloader-init/);
  });
});
