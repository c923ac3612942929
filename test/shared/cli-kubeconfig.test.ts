import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { findKubeconfig, UsageError } from '../../src/shared/cli.ts';

/** The one kubeconfig lookup of the webhook and the reloader (src/shared/cli.ts). */
describe('findKubeconfig: --kubeconfig, $KUBECONFIG, in-cluster, ~/.kube/config', () => {
  let home: string;
  let emptyHome: string;
  const inCluster = { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '6443' };

  before(async () => {
    home = await mkdtemp(join(tmpdir(), 'kubeconfig-home-'));
    await mkdir(join(home, '.kube'));
    await writeFile(join(home, '.kube', 'config'), 'apiVersion: v1\n');
    emptyHome = await mkdtemp(join(tmpdir(), 'kubeconfig-nohome-'));
  });

  after(async () => {
    await rm(home, { recursive: true, force: true });
    await rm(emptyHome, { recursive: true, force: true });
  });

  it('1. the flag wins over everything', () => {
    assert.deepEqual(findKubeconfig('/flag', { KUBECONFIG: '/env', HOME: home, ...inCluster }), {
      kind: 'file',
      path: '/flag',
      from: '--kubeconfig',
    });
  });

  it('2. then $KUBECONFIG, its first non-empty entry, even in a cluster', () => {
    assert.deepEqual(findKubeconfig(undefined, { KUBECONFIG: '::/a:/b', HOME: home, ...inCluster }), {
      kind: 'file',
      path: '/a',
      from: 'KUBECONFIG',
    });
  });

  it('3. then the in-cluster service account, before a home file (the pod keeps its own identity)', () => {
    assert.deepEqual(findKubeconfig(undefined, { KUBECONFIG: '', HOME: home, ...inCluster }), {
      kind: 'in-cluster',
      host: '10.96.0.1',
      port: '6443',
    });
    assert.deepEqual(findKubeconfig(undefined, { KUBERNETES_SERVICE_HOST: 'fd00::1' }), {
      kind: 'in-cluster',
      host: 'fd00::1',
      port: '443',
    });
  });

  it('4. then ~/.kube/config when it exists (outside a cluster, as kubectl)', () => {
    assert.deepEqual(findKubeconfig(undefined, { HOME: home }), {
      kind: 'file',
      path: join(home, '.kube', 'config'),
      from: '~/.kube/config',
    });
  });

  it('nothing: a UsageError (exit 2) that says what was looked at, never a default server', () => {
    for (const env of [{}, { HOME: emptyHome }, { HOME: emptyHome, KUBECONFIG: ':' }]) {
      assert.throws(
        () => findKubeconfig(undefined, env),
        (err: unknown) =>
          err instanceof UsageError &&
          /^no --kubeconfig, no KUBECONFIG and not running in a cluster \(KUBERNETES_SERVICE_HOST is unset\), and no .*\.kube\/config: there is no Kubernetes API to talk to; give --kubeconfig FILE$/.test(
            err.message,
          ),
      );
    }
    assert.throws(() => findKubeconfig('', { HOME: emptyHome }), UsageError, 'an empty flag is no flag');
  });
});
