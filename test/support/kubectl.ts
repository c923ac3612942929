import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

/**
 * kubectl from PATH (or /usr/bin, /usr/local/bin). The tests that need it (kustomize rendering, the e2e tests,
 * the test API server's fidelity tests) fail without it instead of skipping: .ci/run installs it where missing.
 */
export function kubectlPath(): string {
  for (const dir of (process.env.PATH ?? '').split(delimiter).concat('/usr/bin', '/usr/local/bin')) {
    const candidate = join(dir, 'kubectl');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // keep looking
    }
  }
  throw new Error(
    'kubectl is not installed: these tests need it (Debian: apt-get install kubernetes-client)',
  );
}
