import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { loadClusterAccess } from '../../../src/reloader/kube/cluster-access.ts';
import { BearerToken } from '../../../src/reloader/kube/token.ts';
import { UsageError } from '../../../src/shared/cli.ts';
import { runCli } from '../../support/cli.ts';

function kubeconfig(
  cluster: Record<string, unknown>,
  user: Record<string, unknown>,
  context: Record<string, unknown> = {},
) {
  return {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'c', cluster }],
    users: [{ name: 'u', user }],
    contexts: [
      { name: 'other', context: { cluster: 'missing', user: 'u' } },
      { name: 'ctx', context: { cluster: 'c', user: 'u', ...context } },
    ],
    'current-context': 'ctx',
  };
}

void describe('loading cluster access', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'access-'));
    await mkdir(join(dir, 'pki'));
    await writeFile(join(dir, 'pki/ca.crt'), 'CA-FROM-FILE');
    await writeFile(join(dir, 'pki/client.crt'), 'CERT-FROM-FILE');
    await writeFile(join(dir, 'pki/client.key'), 'KEY-FROM-FILE');
    await writeFile(join(dir, 'token'), 'file-token\n');
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  void it('reads a YAML kubeconfig: server, inline CA, token and the context namespace', async () => {
    const path = join(dir, 'inline.yaml');
    await writeFile(
      path,
      stringify(
        kubeconfig(
          {
            server: 'https://10.0.0.1:6443/',
            'certificate-authority-data': Buffer.from('CA').toString('base64'),
          },
          { token: 'abc' },
          { namespace: 'shop' },
        ),
      ),
    );
    const a = await loadClusterAccess({ mode: 'kubeconfig', path });
    assert.equal(a.server.href, 'https://10.0.0.1:6443/');
    assert.equal(a.tls.ca?.toString(), 'CA');
    assert.equal(a.tls.rejectUnauthorized, true);
    assert.equal(a.token?.get(), 'abc');
    assert.equal(a.token?.rotates, false);
    assert.equal(a.namespace, 'shop');
    assert.match(a.origin, /context ctx/);
  });

  void it('reads file references relative to the kubeconfig, client certificates, tokenFile and insecure-skip-tls-verify (JSON too)', async () => {
    const path = join(dir, 'files.json');
    const doc = kubeconfig(
      {
        server: 'https://api:443',
        'certificate-authority': 'pki/ca.crt',
        'insecure-skip-tls-verify': true,
        'tls-server-name': 'kubernetes',
      },
      {
        'client-certificate': 'pki/client.crt',
        'client-key': join(dir, 'pki/client.key'),
        tokenFile: 'token',
      },
    );
    await writeFile(path, JSON.stringify(doc));
    const a = await loadClusterAccess({ mode: 'kubeconfig', path });
    assert.equal(a.tls.ca?.toString(), 'CA-FROM-FILE');
    assert.equal(a.tls.cert?.toString(), 'CERT-FROM-FILE');
    assert.equal(a.tls.key?.toString(), 'KEY-FROM-FILE');
    assert.equal(a.tls.rejectUnauthorized, false);
    assert.equal(a.tls.servername, 'kubernetes');
    assert.equal(a.token?.get(), 'file-token');
    assert.equal(a.token?.rotates, true);
    assert.equal(a.namespace, undefined);
  });

  void it('explains what is wrong with a kubeconfig it cannot use', async () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ ...kubeconfig({ server: 'https://x' }, {}), 'current-context': undefined }, /no current-context/],
      [
        { ...kubeconfig({ server: 'https://x' }, {}), 'current-context': 'nope' },
        /context "nope" is not defined/,
      ],
      [
        { ...kubeconfig({ server: 'https://x' }, {}), 'current-context': 'other' },
        /cluster "missing" of context "other"/,
      ],
      [kubeconfig({ server: 'not a url' }, {}), /no valid server URL/],
      [kubeconfig({ server: 'https://x' }, { exec: { command: 'aws' } }), /exec or auth-provider plugin/],
      [
        kubeconfig({ server: 'https://x', 'certificate-authority': 'nowhere.crt' }, {}),
        /cannot read certificate authority .*nowhere\.crt: ENOENT/,
      ],
    ];
    for (const [doc, message] of cases) {
      const path = join(dir, 'bad.yaml');
      await writeFile(path, stringify(doc));
      await assert.rejects(
        loadClusterAccess({ mode: 'kubeconfig', path }),
        (e: unknown) => e instanceof UsageError && message.test(e.message),
        String(message),
      );
    }
    await writeFile(join(dir, 'garbage.yaml'), 'a: [unclosed');
    await assert.rejects(
      loadClusterAccess({ mode: 'kubeconfig', path: join(dir, 'garbage.yaml') }),
      /neither valid YAML nor JSON/,
    );
    // The parsers quote the text around a syntax error; a kubeconfig's text holds tokens.
    for (const [name, text] of [
      ['broken.yaml', 'users:\n- name: u\n  user:\n    token: SECRET-TOKEN-4242: x: y\n'],
      ['broken.json', '{"users":[{"user":{"token":"SECRET-TOKEN-4242" bad}}]}'],
    ] as const) {
      await writeFile(join(dir, name), text);
      await assert.rejects(
        loadClusterAccess({ mode: 'kubeconfig', path: join(dir, name) }),
        (e: unknown) =>
          e instanceof UsageError &&
          /neither valid YAML nor JSON/.test(e.message) &&
          !e.message.includes('SECRET-TOKEN'),
        name,
      );
    }
    await assert.rejects(
      loadClusterAccess({ mode: 'kubeconfig', path: join(dir, 'absent') }),
      /cannot read kubeconfig .*ENOENT/,
    );
  });

  void it('reads the in-cluster service account files from the given directory', async () => {
    const sa = join(dir, 'sa');
    await mkdir(sa);
    await writeFile(join(sa, 'ca.crt'), 'IN-CLUSTER-CA');
    await writeFile(join(sa, 'token'), 'sa-token');
    await writeFile(join(sa, 'namespace'), 'shop\n');
    const a = await loadClusterAccess({
      mode: 'in-cluster',
      host: 'fd00::1',
      port: '443',
      serviceAccountDir: sa,
    });
    assert.equal(a.server.href, 'https://[fd00::1]/');
    assert.equal(a.tls.ca?.toString(), 'IN-CLUSTER-CA');
    assert.equal(a.token?.get(), 'sa-token');
    assert.equal(a.token?.rotates, true);
    assert.equal(a.namespace, 'shop');
    await assert.rejects(
      loadClusterAccess({ mode: 'in-cluster', host: 'h', port: '443', serviceAccountDir: join(dir, 'none') }),
      /cannot read the in-cluster CA/,
    );
  });
});

void describe('BearerToken', () => {
  void it('re-reads its file once a minute and after invalidate(), keeping the last good token if the file vanishes', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'token-'));
    try {
      const file = join(dir, 'token');
      await writeFile(file, 'one');
      let now = 0;
      const t = new BearerToken({ file }, { now: () => now });
      assert.equal(t.get(), 'one');
      await writeFile(file, 'two');
      now = 59_999;
      assert.equal(t.get(), 'one');
      now = 60_000;
      assert.equal(t.get(), 'two');
      await writeFile(file, 'three');
      t.invalidate();
      assert.equal(t.get(), 'three');
      await rm(file);
      t.invalidate();
      assert.equal(t.get(), 'three');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

/**
 * Which kubeconfig the reloader process uses: the lookup the webhook shares (src/shared/cli.ts findKubeconfig),
 * --kubeconfig, $KUBECONFIG, in-cluster, ~/.kube/config; none is exit 2 before anything starts.
 */
void describe('the reloader process: where its API credentials come from', () => {
  let dir: string;
  let home: string;
  let bare: NodeJS.ProcessEnv;
  /** Nothing listens on port 1: the reloader logs where it connects, then --once gives up and exits 1. */
  const unreachable = stringify(
    kubeconfig({ server: 'https://127.0.0.1:1' }, { token: 't' }, { namespace: 'shop' }),
  );
  const once = (): string[] => [
    'reloader',
    '--source',
    `secret/app=${join(dir, 'out')}`,
    '--once',
    '--once-timeout',
    '500ms',
    '--listen',
    '127.0.0.1:0',
  ];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'reloader-lookup-'));
    home = join(dir, 'home');
    await mkdir(join(home, '.kube'), { recursive: true });
    bare = {
      KUBECONFIG: undefined,
      KUBERNETES_SERVICE_HOST: undefined,
      KUBERNETES_SERVICE_PORT: undefined,
      POD_NAMESPACE: undefined,
      HOME: join(dir, 'empty-home'),
    };
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const via = (stdout: string): unknown =>
    stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { msg?: string; via?: string })
      .find((l) => l.msg === 'starting')?.via;

  void it('none: exit 2 with the message the webhook gives too', async () => {
    const { code, stderr } = await runCli(once(), { env: bare });
    assert.equal(code, 2);
    assert.equal(
      stderr,
      'error: no --kubeconfig, no KUBECONFIG and not running in a cluster (KUBERNETES_SERVICE_HOST is unset), ' +
        `and no ${join(dir, 'empty-home', '.kube', 'config')}: there is no Kubernetes API to talk to; give --kubeconfig FILE\n`,
    );
  });

  void it('~/.kube/config when nothing else is there', async () => {
    await writeFile(join(home, '.kube', 'config'), unreachable);
    const { code, stdout } = await runCli(once(), { env: { ...bare, HOME: home } });
    assert.equal(code, 1);
    assert.equal(via(stdout), `kubeconfig ${join(home, '.kube', 'config')} (context ctx)`);
  });

  void it('$KUBECONFIG before the in-cluster service account and before ~/.kube/config', async () => {
    await writeFile(join(dir, 'env-kubeconfig'), unreachable);
    const { code, stdout } = await runCli(once(), {
      env: {
        ...bare,
        HOME: home,
        KUBECONFIG: join(dir, 'env-kubeconfig'),
        KUBERNETES_SERVICE_HOST: '127.0.0.1',
      },
    });
    assert.equal(code, 1);
    assert.equal(via(stdout), `kubeconfig ${join(dir, 'env-kubeconfig')} (context ctx)`);
  });

  void it('the in-cluster service account before ~/.kube/config', async () => {
    const { code, stderr } = await runCli([...once(), '--serviceaccount-dir', join(dir, 'no-sa')], {
      env: { ...bare, HOME: home, KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: '1' },
    });
    assert.equal(code, 2);
    assert.match(stderr, /^error: cannot read the in-cluster CA /);
  });
});
