import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { httpsRequest } from '../support/https.ts';

/**
 * No Docker engine runs here, so this builds the artefact the Dockerfile builds, the same way: a clean
 * `npm ci --omit=dev` of the lockfile in an empty directory, the TypeScript compiled into dist/ there, and
 * the CLI run from it on Node 24 (this process's binary) with nothing of the repository on its module path.
 */

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const SAMPLE = await readFile(new URL('../fixtures/admission-review.json', import.meta.url), 'utf8');

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], cwd: string, timeoutMs: number): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd,
      env: {
        ...process.env,
        npm_config_audit: 'false',
        npm_config_fund: 'false',
        npm_config_update_notifier: 'false',
      },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

describe('the production artefact (what the Dockerfile builds)', () => {
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'production-artefact-'));
    await copyFile(join(REPO, 'package.json'), join(dir, 'package.json'));
    await copyFile(join(REPO, 'package-lock.json'), join(dir, 'package-lock.json'));
    let install: Run;
    try {
      // --prefer-offline: the local npm cache serves what it has; the registry only what it lacks.
      install = await run('npm', ['ci', '--omit=dev', '--ignore-scripts', '--prefer-offline'], dir, 600_000);
    } catch (err) {
      throw new Error(`cannot run npm (is it on PATH?): ${(err as Error).message}`);
    }
    assert.equal(install.code, 0, `npm ci --omit=dev failed:\n${install.stderr.slice(-3000)}`);
    const tsc = await run(
      process.execPath,
      [
        join(REPO, 'node_modules/typescript/bin/tsc'),
        '-p',
        join(REPO, 'tsconfig.build.json'),
        '--outDir',
        join(dir, 'dist'),
      ],
      REPO,
      300_000,
    );
    assert.equal(
      tsc.code,
      0,
      `tsc -p tsconfig.build.json failed (the Dockerfile's npm run build would too):\n${tsc.stdout.slice(-3000)}`,
    );
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('holds production dependencies only: nothing the lockfile marks dev-only, in particular not the node binary package', async () => {
    const pkg = JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
    };
    const lock = JSON.parse(await readFile(join(REPO, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, { dev?: boolean }>;
    };
    const installed = new Set<string>();
    for (const entry of await readdir(join(dir, 'node_modules'))) {
      if (entry.startsWith('@'))
        for (const scoped of await readdir(join(dir, 'node_modules', entry)))
          installed.add(`${entry}/${scoped}`);
      else installed.add(entry);
    }
    for (const dep of Object.keys(pkg.dependencies))
      assert.ok(installed.has(dep), `dependency ${dep} installed`);
    const devOnly = [...installed].filter((name) => lock.packages[`node_modules/${name}`]?.dev === true);
    assert.deepEqual(devOnly, [], 'no dev-only package in the artefact');
    for (const name of ['node', 'typescript', 'kubernetes-models', 'eslint'])
      assert.ok(!installed.has(name), `${name} is not in the artefact`);
    assert.ok((await readdir(join(dir, 'dist'))).includes('cli.js'));
  });

  it('is what the Dockerfile ships: Node 24, production dependencies, a numeric non-root user, the CLI as entrypoint', async () => {
    const dockerfile = await readFile(join(REPO, 'Dockerfile'), 'utf8');
    const stages = dockerfile.split(/^FROM /m).slice(1);
    const final = stages.at(-1) ?? '';
    assert.match(dockerfile, /^ARG NODE_IMAGE=node:24[-\w.]*$/m);
    assert.ok(
      stages.every((s) => s.startsWith('${NODE_IMAGE}')),
      'every stage on the Node 24 image',
    );
    assert.match(dockerfile, /npm ci --omit=dev --ignore-scripts/);
    assert.match(final, /COPY --from=deps \/app\/node_modules \.\/node_modules/);
    assert.match(final, /COPY --from=build \/src\/dist \.\/dist/);
    assert.doesNotMatch(final, /npm (ci|install)/, 'the final stage installs nothing');
    const user = /^USER (\d+)(?::(\d+))?$/m.exec(final);
    assert.ok(user && Number(user[1]) > 0, 'USER is numeric and not root');
    assert.match(final, /^ENTRYPOINT \["node", "\/app\/dist\/cli\.js"\]$/m);
    assert.match(final, /^CMD \["webhook"\]$/m);
    const ignored = (await readFile(join(REPO, '.dockerignore'), 'utf8')).split('\n');
    assert.equal(
      ignored.find((l) => l && !l.startsWith('#')),
      '*',
      '.dockerignore starts from nothing',
    );
  });

  it('prints the package version from dist/ (the image has package.json beside dist/)', async () => {
    const { version } = JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')) as { version: string };
    const r = await run(process.execPath, [join(dir, 'dist/cli.js'), '--version'], dir, 60_000);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${version}\n`);
  });

  it("runs package.json's bin on dist/ when there is no src/ (a compiled tree, no build step at run time)", async () => {
    const pkg = JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')) as {
      bin: Record<string, string>;
    };
    const bin = pkg.bin['config-reloader-injector'] ?? 'missing';
    await mkdir(dirname(join(dir, bin)), { recursive: true });
    await copyFile(join(REPO, bin), join(dir, bin));
    const r = await run(process.execPath, [join(dir, bin), 'reloader', '--help'], dir, 60_000);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Usage: config-reloader-injector reloader/);
  });

  for (const command of ['webhook', 'reloader']) {
    it(`runs dist/cli.js ${command} --help`, async () => {
      const r = await run(process.execPath, [join(dir, 'dist/cli.js'), command, '--help'], dir, 60_000);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`^Usage: config-reloader-injector ${command}`));
    });
  }

  it('answers a real admission review with a JSONPatch, then exits 0 on SIGTERM', async () => {
    const child = spawn(
      process.execPath,
      [
        join(dir, 'dist/cli.js'),
        'webhook',
        '--host',
        '127.0.0.1',
        '--port',
        '0',
        '--ca-out',
        join(dir, 'ca.crt'),
      ],
      { cwd: dir },
    );
    let out = '';
    let err = '';
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      const url = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`the webhook did not start; stdout: ${out.slice(-2000)} stderr: ${err}`)),
          60_000,
        );
        child.stdout.on('data', (c: Buffer) => {
          out += c.toString();
          for (const line of out.split('\n')) {
            if (!line.startsWith('{')) continue;
            const parsed = JSON.parse(line) as { msg?: string; url?: string };
            if (parsed.msg === 'webhook listening' && parsed.url) {
              clearTimeout(timer);
              resolve(parsed.url);
            }
          }
        });
        child.on('exit', (code) =>
          reject(new Error(`the webhook exited (${code}) before listening; stderr: ${err}`)),
        );
      });
      const res = await httpsRequest(`${url}/mutate`, {
        ca: await readFile(join(dir, 'ca.crt'), 'utf8'),
        method: 'POST',
        body: SAMPLE,
      });
      assert.equal(res.status, 200);
      const response = res.json<{ response: { allowed: boolean; patchType?: string; patch?: string } }>()
        .response;
      assert.equal(response.allowed, true);
      assert.equal(response.patchType, 'JSONPatch');
      const patch = JSON.parse(Buffer.from(response.patch ?? '', 'base64').toString('utf8')) as unknown[];
      assert.ok(Array.isArray(patch) && patch.length > 0);
      child.kill('SIGTERM');
      assert.equal(await exited, 0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
