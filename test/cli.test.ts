import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { REPO_ROOT, runCli } from './support/cli.ts';
import { waitFor } from './support/wait.ts';

/**
 * The command by its name: package.json's bin, linked the way npm links it for `npx config-reloader-injector`
 * (node_modules/.bin/NAME -> ../NAME/BIN, NAME -> the package), run by that path as a shell would, with
 * whatever `node` the PATH gives: the repository's Node 24 (npx and npm scripts put node_modules/.bin first)
 * or the system's (a shell outside npm, often an older Node).
 */

const pkg = JSON.parse(await readFile(join(REPO_ROOT, 'package.json'), 'utf8')) as {
  name: string;
  version: string;
  bin: Record<string, string>;
};
const BIN_FILE = join(REPO_ROOT, pkg.bin['config-reloader-injector'] ?? 'missing');

/** The PATH of a shell outside npm: no node_modules/.bin. */
const SYSTEM_PATH = (process.env.PATH ?? '')
  .split(delimiter)
  .filter((d) => d !== '' && !d.includes('node_modules'))
  .join(delimiter);

function nodeMajor(node: string): number | undefined {
  try {
    return Number(execFileSync(node, ['-p', 'process.versions.node.split(".")[0]'], { encoding: 'utf8' }));
  } catch {
    return undefined;
  }
}

/** The directory of the first `node` on the system PATH that is older than 24, if there is one. */
function olderNodeDir(): string | undefined {
  for (const d of SYSTEM_PATH.split(delimiter)) {
    const node = join(d, 'node');
    try {
      accessSync(node, constants.X_OK);
    } catch {
      continue;
    }
    const major = nodeMajor(node);
    return major !== undefined && major < 24 ? d : undefined;
  }
  return undefined;
}

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function start(file: string, args: string[], path: string, cwd: string) {
  const child = spawn(file, args, { cwd, env: { ...process.env, PATH: path } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const done = new Promise<Run>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return { child, done, stdout: () => stdout };
}

function run(file: string, args: string[], path: string, cwd: string, input = ''): Promise<Run> {
  const c = start(file, args, path, cwd);
  c.child.stdin.end(input);
  return c.done;
}

const POD = `apiVersion: v1
kind: Pod
metadata:
  name: app
  annotations:
    config-reloader.io/inject: "true"
spec:
  containers:
    - name: app
      image: app:1
      volumeMounts: [{ name: config, mountPath: /etc/app }]
  volumes:
    - name: config
      configMap: { name: app-config }
`;

describe('package.json bin', () => {
  it('points at an executable file that starts with #!/usr/bin/env node', async () => {
    assert.ok(pkg.bin['config-reloader-injector'], 'bin has the entry config-reloader-injector');
    const { mode } = await stat(BIN_FILE);
    assert.ok((mode & 0o111) !== 0, `${BIN_FILE} is executable (git keeps the mode; npm links it as is)`);
    assert.match(await readFile(BIN_FILE, 'utf8'), /^#!\/usr\/bin\/env node\n/);
  });
});

describe('--version', () => {
  for (const arg of ['--version', 'version']) {
    it(`${arg} prints the package version and exits 0`, async () => {
      const r = await runCli([arg]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `${pkg.version}\n`);
    });
  }

  it('is listed in the usage', async () => {
    const r = await runCli(['--help']);
    assert.match(r.stdout, /^ {2}version +print the version \(also --version\)$/m);
  });
});

describe('config-reloader-injector by its name (node_modules/.bin, as npm links it)', () => {
  let dir: string;
  let linked: string;
  const older = olderNodeDir();
  const node24Path = [dirname(process.execPath), SYSTEM_PATH].join(delimiter);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cli-bin-'));
    await mkdir(join(dir, 'node_modules', '.bin'), { recursive: true });
    await symlink(REPO_ROOT, join(dir, 'node_modules', 'config-reloader-injector'));
    linked = join(dir, 'node_modules', '.bin', 'config-reloader-injector');
    await symlink(
      join('..', 'config-reloader-injector', pkg.bin['config-reloader-injector'] ?? 'missing'),
      linked,
    );
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const cases: Array<{ name: string; path: () => string; skip: string | false }> = [
    { name: 'with Node 24 first on the PATH (as under npx)', path: () => node24Path, skip: false },
    {
      name: 'with an older system Node first on the PATH (a plain shell)',
      path: () => [older ?? '', SYSTEM_PATH].join(delimiter),
      skip: older ? false : 'no Node older than 24 on the system PATH',
    },
  ];

  for (const c of cases) {
    describe(c.name, { skip: c.skip }, () => {
      it('prints the version', async () => {
        const r = await run(linked, ['--version'], c.path(), dir);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout, `${pkg.version}\n`);
      });

      it("passes the CLI's exit code and stderr through", async () => {
        const r = await run(linked, ['no-such-command'], c.path(), dir);
        assert.equal(r.code, 2);
        assert.match(r.stderr, /^error: unknown command "no-such-command"/);
      });

      it('passes stdin and stdout through (inject reads a Pod on stdin)', async () => {
        const r = await run(linked, ['inject'], c.path(), dir, POD);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /config-reloader\.io\/status['"]?: *['"]?injected/);
      });

      for (const signal of ['SIGTERM', 'SIGINT'] as const) {
        it(`passes ${signal} on: the webhook shuts down cleanly and the exit code is 0`, async () => {
          const w = start(
            linked,
            ['webhook', '--host', '127.0.0.1', '--port', '0', '--ca-out', join(dir, 'ca.crt')],
            c.path(),
            dir,
          );
          try {
            await waitFor(() => w.stdout().includes('"webhook listening"'), 'the webhook to listen');
            w.child.kill(signal);
            const r = await w.done;
            assert.equal(r.code, 0, r.stderr);
            assert.match(r.stdout, /"msg":"shutting down: finishing in-flight reviews"/);
            assert.match(r.stdout, /"msg":"stopped"/);
          } finally {
            if (w.child.exitCode === null) w.child.kill('SIGKILL');
          }
        });
      }

      it('dies of the signal that ended the CLI (SIGUSR2: the webhook has no handler for it)', async () => {
        const w = start(
          linked,
          ['webhook', '--host', '127.0.0.1', '--port', '0', '--ca-out', join(dir, 'ca.crt')],
          c.path(),
          dir,
        );
        try {
          await waitFor(() => w.stdout().includes('"webhook listening"'), 'the webhook to listen');
          w.child.kill('SIGUSR2');
          const r = await w.done;
          assert.equal(r.signal, 'SIGUSR2', r.stderr);
          assert.doesNotMatch(r.stdout, /"msg":"stopped"/);
        } finally {
          if (w.child.exitCode === null) w.child.kill('SIGKILL');
        }
      });
    });
  }

  it('run by npx itself: `npx config-reloader-injector --version` in the repository (offline)', async () => {
    const r = await run(
      'npx',
      ['--offline', 'config-reloader-injector', '--version'],
      SYSTEM_PATH,
      REPO_ROOT,
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${pkg.version}\n`);
  });
});

describe('the bin picks the entry point', () => {
  let dir: string;
  const node24Path = [dirname(process.execPath), SYSTEM_PATH].join(delimiter);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cli-entry-'));
    await mkdir(join(dir, 'bin'));
    await mkdir(join(dir, 'src'));
    await mkdir(join(dir, 'dist'));
    await writeFile(join(dir, 'package.json'), '{ "type": "module" }\n');
    await copyFile(BIN_FILE, join(dir, 'bin', 'cli.js'));
    await writeFile(join(dir, 'src', 'cli.ts'), "const from: string = 'src';\nconsole.log(from);\n");
    await writeFile(join(dir, 'dist', 'cli.js'), "console.log('dist');\n");
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('src/cli.ts when the tree has it (a clone: never a stale dist/)', async () => {
    const r = await run(process.execPath, [join(dir, 'bin', 'cli.js')], node24Path, dir);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'src\n');
  });

  it('dist/cli.js when there is no src/ (the compiled tree, as in the image)', async () => {
    await rm(join(dir, 'src'), { recursive: true });
    const r = await run(process.execPath, [join(dir, 'bin', 'cli.js')], node24Path, dir);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'dist\n');
  });

  it('on an older Node without the Node 24 of `npm ci`: exit 1 with what to do', async (t) => {
    const older = olderNodeDir();
    if (!older) return t.skip('no Node older than 24 on the system PATH');
    const r = await run(join(older, 'node'), [join(dir, 'bin', 'cli.js')], SYSTEM_PATH, dir);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^error: config-reloader-injector needs Node 24 or later, and this is Node v\d+/);
    assert.match(r.stderr, /Run `npm ci` in /);
  });

  it('neither: exit 1 naming both', async () => {
    await rm(join(dir, 'dist'), { recursive: true });
    const r = await run(process.execPath, [join(dir, 'bin', 'cli.js')], node24Path, dir);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^error: neither src\/cli\.ts nor dist\/cli\.js is in /);
  });
});
