import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseAllDocuments, stringify } from 'yaml';
import { runCli } from '../support/cli.ts';
import { loadPod, podFixtureNames } from '../support/fixtures.ts';
import type { Kube } from './kube.ts';
import { connect, createNamespace } from './kube.ts';
import type { TestCluster } from './test-cluster.ts';
import { startTestCluster } from './test-cluster.ts';

/** Pod Security Standards levels, strictest first. */
const LEVELS = ['restricted', 'baseline', 'privileged'] as const;
type Level = (typeof LEVELS)[number];

interface Case {
  fixture: string;
  pod: Record<string, unknown>;
  /** The strictest level whose namespace admits the pod as its authors wrote it. */
  level?: Level;
  original?: string;
}

const nsOf = (level: Level): string => `fixtures-${level}`;

/** The fixture as a Pod to create: a name of its own (controllers' pods have only a generateName), no namespace. */
function asPod(fixture: string, raw: Record<string, unknown>): Record<string, unknown> {
  const metadata = { ...(raw.metadata as Record<string, unknown>) };
  delete metadata.namespace;
  delete metadata.generateName;
  metadata.name = fixture.replace(/\.json$/, '').toLowerCase();
  metadata.annotations = {
    ...(metadata.annotations as Record<string, string> | undefined),
    'config-reloader.io/inject': 'true',
  };
  return { apiVersion: 'v1', kind: 'Pod', ...raw, metadata };
}

/**
 * Every real-world pod of the fixtures (test/fixtures/real-world/pods), opted in and injected offline by
 * `config-reloader-injector inject`, is accepted by the real API server (`kubectl create --dry-run=server`) in
 * a namespace that enforces the strictest Pod Security Standard its original passes: the injection never
 * makes a pod fail validation or lowers its PodSecurity level. The webhook is not installed here: what is
 * checked is inject's output as a GitOps pipeline would apply it.
 */
void describe('e2e (real kube-apiserver): real-world pods injected by `inject` pass server-side dry-run', () => {
  let cluster: TestCluster;
  let kube: Kube;
  const cases: Case[] = podFixtureNames().map((fixture) => ({
    fixture,
    pod: asPod(fixture, loadPod(fixture)),
  }));

  const dryRunCreate = async (namespace: string, pod: unknown): Promise<{ ok: boolean; message: string }> => {
    const res = await cluster.controlPlane.request(
      'POST',
      `/api/v1/namespaces/${namespace}/pods?dryRun=All`,
      pod,
    );
    return { ok: res.status === 201, message: (res.body as { message?: string }).message ?? res.text };
  };

  before(async () => {
    cluster = await startTestCluster();
    kube = connect(cluster.kubeconfig);
    const serviceAccounts = new Set(
      cases
        .map((c) => c.pod.spec as { serviceAccountName?: string; serviceAccount?: string })
        .map((s) => s.serviceAccountName ?? s.serviceAccount)
        .filter((s): s is string => Boolean(s) && s !== 'default'),
    );
    for (const level of LEVELS) {
      await createNamespace(kube, nsOf(level), {
        'pod-security.kubernetes.io/enforce': level,
        'pod-security.kubernetes.io/enforce-version': 'latest',
      });
      // The ServiceAccount admission plugin refuses a pod whose ServiceAccount does not exist.
      for (const name of serviceAccounts)
        await kube.core.createNamespacedServiceAccount({
          namespace: nsOf(level),
          body: { metadata: { name } },
        });
    }
    for (const c of cases)
      for (const level of LEVELS) {
        const { ok, message } = await dryRunCreate(nsOf(level), c.pod);
        if (ok) {
          c.level = level;
          break;
        }
        c.original = message;
      }
  });
  after(() => cluster?.close());

  void test('the real API server admits every fixture as written, at some Pod Security level', () => {
    const refused = cases.filter((c) => !c.level).map((c) => `${c.fixture}: ${c.original}`);
    assert.deepEqual(refused, []);
    const counts = Object.fromEntries(LEVELS.map((l) => [l, cases.filter((c) => c.level === l).length]));
    // The corpus has pods at every level; restricted ones are where the sidecar's own security context matters.
    for (const level of LEVELS)
      assert.ok(counts[level]! > 0, `no fixture at level ${level}: ${JSON.stringify(counts)}`);
  });

  void test('injected by `inject`, each is admitted at the same level by kubectl create --dry-run=server', async () => {
    for (const level of LEVELS) {
      const atLevel = cases.filter((c) => c.level === level);
      const input = join(cluster.dir, `${level}.yaml`);
      // Written as kubectl reads manifests (YAML 1.1: `no` and `on` are booleans, so strings like them are quoted).
      await writeFile(input, atLevel.map((c) => stringify(c.pod, { version: '1.1' })).join('---\n'));
      const injected = await runCli(['inject', '-f', input]);
      assert.equal(injected.code, 0, injected.stderr);
      const docs = parseAllDocuments(injected.stdout).map((d) => d.toJS() as Record<string, unknown>);
      assert.equal(docs.length, atLevel.length);
      const injectedCount = docs.filter(
        (d) =>
          (d.metadata as { annotations?: Record<string, string> }).annotations?.[
            'config-reloader.io/status'
          ] === 'injected',
      ).length;
      assert.ok(injectedCount > 0, `no ${level} fixture was injected`);

      const output = join(cluster.dir, `${level}-injected.yaml`);
      await writeFile(output, injected.stdout);
      const created = await cluster.kubectl([
        'create',
        '--dry-run=server',
        '-n',
        nsOf(level),
        '-o',
        'name',
        '-f',
        output,
      ]);
      assert.equal(created.code, 0, `${level}: ${created.stderr}`);
      assert.equal(created.stdout.trim().split('\n').length, atLevel.length, created.stdout);
    }
  });
});
