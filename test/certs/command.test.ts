import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCli } from '../support/cli.ts';

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
