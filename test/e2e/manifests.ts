import { execFile } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import type { KubeObject } from '../support/kube-apiserver/index.ts';
import { REPO_ROOT } from '../support/cli.ts';
import { kubectlPath } from '../support/kubectl.ts';

const run = promisify(execFile);

/** `kubectl kustomize DIR` (DIR relative to the repository), parsed into objects. */
export async function renderKustomize(dir: string): Promise<KubeObject[]> {
  const { stdout } = await run(kubectlPath(), ['kustomize', join(REPO_ROOT, dir)], {
    cwd: REPO_ROOT,
    maxBuffer: 16 * 1024 * 1024,
    env: { PATH: process.env.PATH ?? '/usr/bin', HOME: tmpdir() },
  });
  return parseAllDocuments(stdout)
    .map((doc) => doc.toJS() as KubeObject | null)
    .filter((o): o is KubeObject => o !== null);
}

/** The one object of a kind in rendered manifests. */
export function findObject(objects: KubeObject[], kind: string, name?: string): KubeObject {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (found.length !== 1)
    throw new Error(
      `expected one ${kind}${name ? ` "${name}"` : ''} in the rendered manifests, found ${found.length}`,
    );
  return structuredClone(found[0] as KubeObject);
}
