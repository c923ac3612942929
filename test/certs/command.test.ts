import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { spawn } from 'node:child_process';
import { chmod, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { httpsRequest } from '../support/https.ts';
import { runCli, startCli } from '../support/cli.ts';

const SAMPLE_PATH = new URL('../fixtures/admission-review.json', import.meta.url);

const curlOnPath = async (): Promise<boolean> => {
  for (const d of (process.env.PATH ?? '').split(delimiter)) {
    if (d && (await stat(join(d, 'curl')).catch(() => undefined))?.isFile()) return true;
  }
  return false;
};

/** The README's curl, against `url`, trusting `caFile`: resolves with its exit code and output. */
function curl(caFile: string, url: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('curl', [
      '--silent',
      '--show-error',
      '--max-time',
      '20',
      '--cacert',
      caFile,
      '-H',
      'content-type: application/json',
      '--data',
      `@${decodeURIComponent(SAMPLE_PATH.pathname)}`,
      url,
    ]);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('config-reloader-injector certs', () => {
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'certs-cmd-'));
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes ca.crt, tls.crt and a 0600 tls.key for the Service, and prints the caBundle on stdout', async () => {
    const out = join(dir, 'out');
    const { code, stdout, stderr } = await runCli([
      'certs',
      '--service',
      'hook',
      '--namespace',
      'tools',
      '--out',
      out,
      '--host',
      '10.0.0.7',
      '--days',
      '30',
    ]);
    assert.equal(code, 0, stderr);
    assert.deepEqual((await readdir(out)).sort(), ['ca.crt', 'tls.crt', 'tls.key']);
    assert.equal((await stat(join(out, 'tls.key'))).mode & 0o777, 0o600);

    const caPem = await readFile(join(out, 'ca.crt'), 'utf8');
    assert.equal(
      stdout.trim(),
      Buffer.from(caPem).toString('base64'),
      'stdout is exactly the base64 caBundle',
    );
    assert.match(stderr, /wrote .*ca\.crt/);

    const ca = new X509Certificate(caPem);
    const leaf = new X509Certificate(await readFile(join(out, 'tls.crt'), 'utf8'));
    assert.ok(ca.ca);
    assert.ok(leaf.checkIssued(ca) && leaf.verify(ca.publicKey), 'tls.crt is signed by ca.crt');
    assert.ok(
      leaf.checkPrivateKey(createPrivateKey(await readFile(join(out, 'tls.key'), 'utf8'))),
      'tls.key belongs to tls.crt',
    );
    assert.equal(
      leaf.subjectAltName,
      'DNS:hook, DNS:hook.tools, DNS:hook.tools.svc, DNS:hook.tools.svc.cluster.local, IP Address:10.0.0.7',
    );
    assert.equal(leaf.publicKey.asymmetricKeyType, 'ec');
    const days = (new Date(leaf.validTo).getTime() - Date.now()) / 86_400_000;
    assert.ok(days > 29 && days <= 30, `valid for 30 days, not ${days}`);
  });

  it('--local adds the names of a webhook run on this machine: localhost, 127.0.0.1 and ::1', async () => {
    const out = join(dir, 'local');
    const { code, stderr } = await runCli(['certs', '--out', out, '--local', '--host', 'localhost']);
    assert.equal(code, 0, stderr);
    const leaf = new X509Certificate(await readFile(join(out, 'tls.crt'), 'utf8'));
    assert.equal(
      leaf.subjectAltName,
      'DNS:config-reloader-injector, DNS:config-reloader-injector.config-reloader-injector, ' +
        'DNS:config-reloader-injector.config-reloader-injector.svc, ' +
        'DNS:config-reloader-injector.config-reloader-injector.svc.cluster.local, ' +
        'DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1',
      'each name once, --host localhost included',
    );
    assert.match(stderr, /names: .*localhost, 127\.0\.0\.1, ::1/);
  });

  describe("a local webhook on the certificate of certs --local (the README's curl)", () => {
    let out: string;
    let webhook: ReturnType<typeof startCli>;
    let url: string;

    before(async () => {
      out = join(dir, 'local-run');
      const made = await runCli(['certs', '--out', out, '--local']);
      assert.equal(made.code, 0, made.stderr);
      webhook = startCli([
        'webhook',
        '--host',
        '127.0.0.1',
        '--port',
        '0',
        '--tls-cert-file',
        join(out, 'tls.crt'),
        '--tls-key-file',
        join(out, 'tls.key'),
      ]);
      url = String((await webhook.waitForLog((l) => l.msg === 'webhook listening')).url);
    });

    after(async () => {
      webhook.child.kill('SIGTERM');
      await webhook.exited;
    });

    it('answers https://127.0.0.1:PORT/mutate and https://localhost:PORT/mutate trusting ca.crt', async () => {
      const ca = await readFile(join(out, 'ca.crt'), 'utf8');
      const body = await readFile(SAMPLE_PATH, 'utf8');
      const { port } = new URL(url);
      for (const host of ['127.0.0.1', 'localhost']) {
        const res = await httpsRequest(`https://${host}:${port}/mutate`, { ca, method: 'POST', body });
        assert.equal(res.status, 200, host);
        assert.equal(res.json<{ response: { patchType: string } }>().response.patchType, 'JSONPatch');
      }
    });

    it("answers the README's curl --cacert", async (t) => {
      if (!(await curlOnPath())) return t.skip('no curl on the PATH');
      const { port } = new URL(url);
      const r = await curl(join(out, 'ca.crt'), `https://127.0.0.1:${port}/mutate`);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /"patchType":"JSONPatch"/);
    });
  });

  describe('an existing CA is never replaced silently', () => {
    it('refuses with exit 2 naming the files and --force, and leaves them as they were', async () => {
      const out = join(dir, 'existing');
      assert.equal((await runCli(['certs', '--out', out])).code, 0);
      const before = await Promise.all(['ca.crt', 'tls.crt', 'tls.key'].map((f) => readFile(join(out, f))));
      const { code, stdout, stderr } = await runCli(['certs', '--out', out, '--local']);
      assert.equal(code, 2);
      assert.equal(stdout, '');
      assert.match(stderr, /^error: /);
      assert.ok(
        stderr.includes(
          `${join(out, 'ca.crt')}, ${join(out, 'tls.crt')}, ${join(out, 'tls.key')} already exist`,
        ),
        stderr,
      );
      assert.match(stderr, /caBundle/);
      assert.match(stderr, /Pass --force to replace them, or --out another directory/);
      const now = await Promise.all(['ca.crt', 'tls.crt', 'tls.key'].map((f) => readFile(join(out, f))));
      assert.deepEqual(now, before);
    });

    it('refuses a lone ca.crt too (the CA a cluster trusts, its key kept elsewhere)', async () => {
      const out = join(dir, 'lone-ca');
      assert.equal((await runCli(['certs', '--out', out])).code, 0);
      await rm(join(out, 'tls.crt'));
      await rm(join(out, 'tls.key'));
      const { code, stderr } = await runCli(['certs', '--out', out]);
      assert.equal(code, 2);
      assert.ok(stderr.includes(`${join(out, 'ca.crt')} already exists`), stderr);
      assert.deepEqual(await readdir(out), ['ca.crt']);
    });

    it('--force replaces them: a new CA, and tls.key mode 0600 even when the old one was not', async () => {
      const out = join(dir, 'forced');
      assert.equal((await runCli(['certs', '--out', out])).code, 0);
      const oldCa = await readFile(join(out, 'ca.crt'), 'utf8');
      await chmod(join(out, 'tls.key'), 0o644);
      await writeFile(join(out, 'unrelated'), 'kept');
      const { code, stdout, stderr } = await runCli(['certs', '--out', out, '--force', '--local']);
      assert.equal(code, 0, stderr);
      assert.match(stderr, /--force: replacing what was there/);
      const newCa = await readFile(join(out, 'ca.crt'), 'utf8');
      assert.notEqual(newCa, oldCa);
      assert.equal(stdout.trim(), Buffer.from(newCa).toString('base64'));
      assert.equal((await stat(join(out, 'tls.key'))).mode & 0o777, 0o600);
      assert.deepEqual((await readdir(out)).sort(), ['ca.crt', 'tls.crt', 'tls.key', 'unrelated']);
      const leaf = new X509Certificate(await readFile(join(out, 'tls.crt'), 'utf8'));
      assert.ok(leaf.checkIssued(new X509Certificate(newCa)));
    });
  });

  it('prints --help and exits 0', async () => {
    const { code, stdout } = await runCli(['certs', '--help']);
    assert.equal(code, 0);
    assert.match(stdout, /--service NAME/);
  });

  for (const [args, message] of [
    [['--service', 'Bad_Name'], /--service "Bad_Name" is not a valid DNS label/],
    [['--namespace', 'a.b'], /--namespace "a\.b" is not a valid DNS label/],
    [['--days', '0'], /--days "0" must be a whole number from 1 to 3650/],
    [['--days', 'many'], /--days "many"/],
    [['--bogus'], /Unknown option '--bogus'.*see: config-reloader-injector certs --help/],
    [['stray'], /unexpected argument "stray"/],
    [['--host', 'https://127.0.0.1:8443'], /--host "https:\/\/127\.0\.0\.1:8443" is a URL or a path/],
    [['--host', '127.0.0.1:8443'], /--host "127\.0\.0\.1:8443" has a port/],
    [['--host', '[::1]'], /--host "\[::1\]" has brackets/],
    [['--host', '1.2.3'], /--host "1\.2\.3" is not a valid IP address/],
    [['--host', 'bad name'], /--host "bad name" is neither an IP address nor a DNS name/],
    [['--host', 'Upper.Example'], /--host "Upper\.Example" is neither/],
  ] as const) {
    it(`rejects ${args.join(' ')} with exit 2 and a message, writing nothing`, async () => {
      const out = join(dir, `bad-${args.join('')}`);
      const { code, stdout, stderr } = await runCli(['certs', '--out', out, ...args]);
      assert.equal(code, 2);
      assert.match(stderr, /^error: /);
      assert.match(stderr, message);
      assert.equal(stdout, '');
      await assert.rejects(stat(out), { code: 'ENOENT' });
    });
  }
});
