import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseJson } from '../../src/manifests/read.ts';
import { TestApiServer } from '../support/kube-apiserver/index.ts';
import { kubectlPath } from '../support/kubectl.ts';

export type Obj = Record<string, any>;

/**
 * What kubectl itself reads from manifests: `kubectl create --dry-run=client -o json --validate=false -f PATH`.
 * Nothing is created, but kubectl still maps each kind to a resource through discovery, so it talks to the
 * test API server (127.0.0.1, which serves Pods, ConfigMaps, Secrets and a few more kinds).
 */
export class KubectlReader {
  private readonly api: TestApiServer;
  private readonly dir: string;
  private readonly kubectl: string;

  private constructor(api: TestApiServer, dir: string) {
    this.api = api;
    this.dir = dir;
    this.kubectl = kubectlPath();
  }

  static async start(): Promise<KubectlReader> {
    const api = await TestApiServer.start();
    const dir = await mkdtemp(join(tmpdir(), 'inject-kubectl-'));
    await api.writeKubeconfig(join(dir, 'kubeconfig'));
    return new KubectlReader(api, dir);
  }

  /** Runs kubectl with its own kubeconfig, HOME and cache; resolves with its exit code and output. */
  run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      execFile(
        this.kubectl,
        [`--kubeconfig=${join(this.dir, 'kubeconfig')}`, `--cache-dir=${join(this.dir, 'cache')}`, ...args],
        {
          env: { PATH: process.env.PATH ?? '/usr/bin', HOME: this.dir },
          timeout: 60_000,
          maxBuffer: 64 << 20,
        },
        (err, stdout, stderr) =>
          resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });
  }

  /**
   * The objects kubectl reads from the paths (files, directories with -R), in its order, as JSON. kubectl adds
   * the kubeconfig's namespace ("default") where the manifest has none; that is taken out again.
   */
  async read(paths: string[], opts: { recursive?: boolean } = {}): Promise<Obj[]> {
    const args = ['create', '--dry-run=client', '-o', 'json', '--validate=false'];
    if (opts.recursive) args.push('-R');
    for (const path of paths) args.push('-f', path);
    const { code, stdout, stderr } = await this.run(args);
    if (code !== 0) throw new Error(`kubectl ${args.join(' ')} failed: ${stderr}`);
    // One JSON object after the other, each pretty-printed from a "{" line to a "}" line. Not JSON.parse: V8's
    // misreads some escaped keys (nodejs/node#63785).
    const objects =
      stdout.trim() === '' ? [] : (parseJson(`[${stdout.replace(/\n}\n{/g, '\n},{')}]`) as Obj[]);
    for (const object of objects) {
      if (object.metadata?.namespace === 'default') delete object.metadata.namespace;
    }
    return objects;
  }

  async close(): Promise<void> {
    await this.api.close();
    await rm(this.dir, { recursive: true, force: true });
  }
}
