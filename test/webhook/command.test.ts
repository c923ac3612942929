import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect } from 'node:tls';
import { httpsRequest } from '../support/https.ts';
import { runCli, startCli, type CliChild } from '../support/cli.ts';

const SAMPLE = await readFile(new URL('../fixtures/admission-review.json', import.meta.url), 'utf8');

/** The webhook on 127.0.0.1 (a free port unless given), its self-signed CA written into `dir`. */
const localWebhook = (dir: string, port = 0): string[] => [
  'webhook',
  '--host',
  '127.0.0.1',
  '--port',
  String(port),
  '--ca-out',
  join(dir, 'ca.crt'),
];

describe('config-reloader-injector webhook (the process)', () => {
  let dir: string;
  let proc: CliChild;
  let url: string;
  let ca: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'webhook-cmd-'));
    proc = startCli(localWebhook(dir));
    url = String((await proc.waitForLog((l) => l.msg === 'webhook listening')).url);
    ca = await readFile(join(dir, 'ca.crt'), 'utf8');
  });

  after(async () => {
    if (proc.child.exitCode === null) proc.child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  it('starts on a self-signed certificate whose CA it writes where the log says', async () => {
    const line = await proc.waitForLog((l) => typeof l.caFile === 'string');
    assert.equal(line.caFile, join(dir, 'ca.crt'));
    const res = await httpsRequest(`${url}/mutate`, { ca, method: 'POST', body: SAMPLE });
    assert.equal(res.status, 200);
    assert.equal(res.json<{ response: { patchType: string } }>().response.patchType, 'JSONPatch');
  });

  it('on SIGTERM finishes the review in flight, then exits 0', async () => {
    const { port } = new URL(url);
    const socket = connect({ host: '127.0.0.1', port: Number(port), ca, servername: 'localhost' });
    await new Promise((r) => socket.once('secureConnect', r));
    const body = Buffer.from(SAMPLE);
    socket.write(
      `POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n`,
    );
    socket.write(body.subarray(0, 100));
    let response = '';
    socket.on('data', (c: Buffer) => (response += c.toString()));
    await new Promise((r) => setTimeout(r, 200));
    proc.child.kill('SIGTERM');
    await proc.waitForLog((l) => String(l.msg).startsWith('shutting down'));
    socket.write(body.subarray(100));
    const { code } = await proc.exited;
    assert.equal(code, 0);
    assert.match(response, /^HTTP\/1\.1 200/);
    assert.match(response, /"patchType":"JSONPatch"/);
    socket.destroy();
  });
});

describe('config-reloader-injector webhook flags', () => {
  it('prints --help and exits 0', async () => {
    const { code, stdout } = await runCli(['webhook', '--help']);
    assert.equal(code, 0);
    for (const flag of ['--port', '--tls-cert-file', '--tls-key-file', '--reloader-image', '--sidecar-mode'])
      assert.match(stdout, new RegExp(flag));
  });

  for (const [args, needle] of [
    [['--port', 'abc'], /--port "abc" is not a port number/],
    [['--tls-cert-file', '/nope.crt'], /go together/],
    [['--tls-cert-file', '/nope.crt', '--tls-key-file', '/nope.key'], /cannot read --tls-cert-file/],
    [['--log-level', 'loud'], /--log-level "loud"/],
    [['--bogus'], /Unknown option '--bogus'/],
  ] as const) {
    it(`rejects ${args.join(' ')} with exit 2 and a clear message`, async () => {
      const { code, stderr } = await runCli(['webhook', ...args]);
      assert.equal(code, 2);
      assert.match(stderr, needle);
      assert.doesNotMatch(stderr, /\n\s+at /, 'no stack trace');
    });
  }
});

describe('config-reloader-injector webhook on a port already in use', () => {
  it('exits 2 with a message naming the address and the fix', async () => {
    const { createServer } = await import('node:net');
    const holder = createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const port = (holder.address() as { port: number }).port;
    const dir = await mkdtemp(join(tmpdir(), 'webhook-busy-'));
    try {
      const { code, stderr } = await runCli(localWebhook(dir, port));
      assert.equal(code, 2);
      assert.match(stderr, new RegExp(`127\\.0\\.0\\.1:${port} is already in use: .*--port`));
    } finally {
      await new Promise((resolve) => holder.close(resolve));
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('config-reloader-injector webhook --watch-missed-injections (the process, against the test API server)', () => {
  it('counts an opted-in pod that started without the sidecar and records an Event on it', async () => {
    const { TestApiServer } = await import('../support/kube-apiserver/index.ts');
    const api = await TestApiServer.start();
    const dir = await mkdtemp(join(tmpdir(), 'webhook-missed-'));
    let proc: CliChild | undefined;
    try {
      // deploy/components/missed-injections' RBAC; the Lease lives in the kubeconfig context's namespace.
      api.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'config-reloader-injector' } });
      const token = api.addServiceAccount('config-reloader-injector', 'config-reloader-injector', [
        { verbs: ['list'], resource: 'pods' },
        { verbs: ['list'], resource: 'namespaces' },
        { verbs: ['create'], resource: 'events' },
        {
          verbs: ['get', 'update'],
          resource: 'leases',
          group: 'coordination.k8s.io',
          namespace: 'config-reloader-injector',
          names: ['config-reloader-injector-missed-injections'],
        },
        {
          verbs: ['create'],
          resource: 'leases',
          group: 'coordination.k8s.io',
          namespace: 'config-reloader-injector',
        },
      ]);
      await api.writeKubeconfig(join(dir, 'kubeconfig'), { token, namespace: 'config-reloader-injector' });
      const pod = JSON.parse(SAMPLE).request.object;
      pod.metadata = { ...pod.metadata, name: 'vmagent-0', namespace: 'shop' };
      delete pod.metadata.generateName;
      api.create(pod); // straight into the store: as if the webhook had been down
      proc = startCli([
        ...localWebhook(dir),
        '--watch-missed-injections',
        '--kubeconfig',
        join(dir, 'kubeconfig'),
      ]);
      const url = String((await proc.waitForLog((l) => l.msg === 'webhook listening')).url);
      const ca = await readFile(join(dir, 'ca.crt'), 'utf8');
      let metrics = '';
      for (let i = 0; i < 200 && !/config_reloader_webhook_missed_injections 1\b/.test(metrics); i++) {
        await new Promise((r) => setTimeout(r, 100));
        metrics = (await httpsRequest(`${url}/metrics`, { ca })).body;
      }
      assert.match(metrics, /config_reloader_webhook_missed_injections 1\b/);
      // The Event is created after the pod is counted: wait for it too.
      type Ev = { reason?: string; message?: string; involvedObject?: { name?: string } };
      let events: Ev[] = [];
      for (let i = 0; i < 200 && events.length === 0; i++) {
        events = api.list('events', 'shop') as Ev[];
        if (events.length === 0) await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(events.length, 1);
      assert.equal(events[0]?.reason, 'ConfigReloaderNotInjected');
      assert.equal(events[0]?.involvedObject?.name, 'vmagent-0');
      proc.child.kill('SIGTERM');
      assert.equal((await proc.exited).code, 0);
    } finally {
      if (proc && proc.child.exitCode === null) proc.child.kill('SIGKILL');
      await api.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('exits 2 on an unparsable kubeconfig without quoting it (it holds tokens), before listening', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'webhook-badkc-'));
    try {
      await writeFile(
        join(dir, 'kubeconfig'),
        'users:\n- name: u\n  user:\n    token: SECRET-TOKEN-4242: x: y\n',
      );
      const { code, stderr } = await runCli([
        ...localWebhook(dir),
        '--watch-missed-injections',
        '--kubeconfig',
        join(dir, 'kubeconfig'),
      ]);
      assert.equal(code, 2);
      assert.match(stderr, /not a valid kubeconfig/);
      assert.doesNotMatch(stderr, /SECRET-TOKEN/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('--missed-injections-interval: only with --watch-missed-injections, and not below 1s', async () => {
    const alone = await runCli(['webhook', '--missed-injections-interval', '1m']);
    assert.equal(alone.code, 2);
    assert.match(alone.stderr, /--missed-injections-interval applies only with --watch-missed-injections/);
    const short = await runCli([
      'webhook',
      '--watch-missed-injections',
      '--missed-injections-interval',
      '100ms',
    ]);
    assert.equal(short.code, 2);
    assert.match(short.stderr, /--missed-injections-interval "100ms" is shorter than 1s/);
  });

  it('rejects --kubeconfig without a feature that uses it', async () => {
    const { code, stderr } = await runCli(['webhook', '--kubeconfig', '/nope']);
    assert.equal(code, 2);
    assert.match(stderr, /--kubeconfig applies only with --self-managed-certs or --watch-missed-injections/);
  });
});

/** A kubeconfig for `server` (nothing needs to answer: the webhook loads it before listening). */
const kubeconfigFor = (server: string, currentContext = 'ctx'): string =>
  JSON.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'c', cluster: { server, 'insecure-skip-tls-verify': false } }],
    users: [{ name: 'u', user: { token: 'SECRET-TOKEN-4242' } }],
    contexts: [{ name: 'ctx', context: { cluster: 'c', user: 'u' } }],
    'current-context': currentContext,
  });

/**
 * The webhook's API credentials come from the lookup the reloader uses too (src/shared/cli.ts findKubeconfig):
 * --kubeconfig, $KUBECONFIG, in-cluster, ~/.kube/config. Without a usable one it exits 2 before listening.
 */
describe('config-reloader-injector webhook: API credentials', () => {
  let dir: string;
  let home: string;
  /** An environment with none of the places the lookup reads, HOME an empty directory. */
  let bare: NodeJS.ProcessEnv;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'webhook-kubeconfig-'));
    home = join(dir, 'home');
    await mkdir(home);
    bare = {
      KUBECONFIG: undefined,
      KUBERNETES_SERVICE_HOST: undefined,
      KUBERNETES_SERVICE_PORT: undefined,
      HOME: home,
    };
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** Runs the webhook to its exit, killing it (and failing) if it is still running after 20 s. */
  async function exitOf(args: string[], env: NodeJS.ProcessEnv) {
    const proc = startCli(args, { env });
    const timer = setTimeout(() => proc.child.kill('SIGKILL'), 20_000);
    const { code, signal } = await proc.exited;
    clearTimeout(timer);
    assert.equal(signal, null, `still running after 20 s (stdout: ${proc.stdout().slice(-1500)})`);
    return { code, stdout: proc.stdout(), stderr: proc.stderr() };
  }

  it('--watch-missed-injections with no kubeconfig anywhere: exit 2 with a message, before listening', async () => {
    const { code, stdout, stderr } = await exitOf([...localWebhook(dir), '--watch-missed-injections'], bare);
    assert.equal(code, 2);
    assert.equal(
      stderr,
      'error: no --kubeconfig, no KUBECONFIG and not running in a cluster (KUBERNETES_SERVICE_HOST is unset), ' +
        `and no ${join(home, '.kube', 'config')}: there is no Kubernetes API to talk to; give --kubeconfig FILE\n`,
    );
    assert.doesNotMatch(stdout, /webhook listening/);
  });

  it('--self-managed-certs with no kubeconfig anywhere: the same exit 2', async () => {
    const { code, stderr } = await exitOf(
      [...localWebhook(dir), '--self-managed-certs', '--namespace', 'config-reloader-injector'],
      bare,
    );
    assert.equal(code, 2);
    assert.match(stderr, /^error: no --kubeconfig, no KUBECONFIG and not running in a cluster/);
  });

  it(
    'in a cluster (KUBERNETES_SERVICE_HOST set) without the service account token: exit 2 naming the file',
    { skip: existsSync('/var/run/secrets/kubernetes.io/serviceaccount/token') && 'this machine has one' },
    async () => {
      const { code, stderr } = await exitOf([...localWebhook(dir), '--watch-missed-injections'], {
        ...bare,
        KUBERNETES_SERVICE_HOST: '127.0.0.1',
        KUBERNETES_SERVICE_PORT: '1',
      });
      assert.equal(code, 2);
      assert.match(
        stderr,
        /^error: running in a cluster \(KUBERNETES_SERVICE_HOST is set\) but \/var\/run\/secrets\/kubernetes\.io\/serviceaccount\/token cannot be read \(ENOENT\): .*give --kubeconfig\n$/,
      );
    },
  );

  for (const [name, text, message] of [
    [
      'no current cluster',
      kubeconfigFor('https://127.0.0.1:1', 'nowhere'),
      /no current-context, or its cluster is not defined/,
    ],
    [
      'a plain HTTP server',
      kubeconfigFor('http://127.0.0.1:1'),
      /cluster "c" has the plain HTTP server http:\/\/127\.0\.0\.1:1, which the API client refuses; use https/,
    ],
  ] as const) {
    it(`a kubeconfig with ${name}: exit 2 with a message, not an API client retrying forever`, async () => {
      const file = join(dir, `kubeconfig-${name.replaceAll(' ', '-')}`);
      await writeFile(file, text);
      const { code, stdout, stderr } = await exitOf(
        [...localWebhook(dir), '--watch-missed-injections', '--kubeconfig', file],
        bare,
      );
      assert.equal(code, 2);
      assert.ok(
        stderr.startsWith(`error: cannot load the API credentials from --kubeconfig ${file}: `),
        stderr,
      );
      assert.match(stderr, message);
      assert.doesNotMatch(stderr + stdout, /SECRET-TOKEN/);
      assert.doesNotMatch(stdout, /webhook listening/);
    });
  }

  for (const c of [
    {
      name: '$KUBECONFIG before the in-cluster service account',
      env: (file: string) => ({
        ...bare,
        KUBECONFIG: `:${file}:/elsewhere`,
        KUBERNETES_SERVICE_HOST: '127.0.0.1',
      }),
      via: (file: string) => `${file} (KUBECONFIG), context ctx`,
    },
    {
      name: '~/.kube/config when nothing else is there',
      env: () => bare,
      via: () => `${join(home, '.kube', 'config')} (~/.kube/config), context ctx`,
    },
  ]) {
    it(`looks up ${c.name}, and logs where the credentials came from`, async () => {
      const file = join(dir, 'kubeconfig-env');
      await writeFile(file, kubeconfigFor('https://127.0.0.1:1'));
      await mkdir(join(home, '.kube'), { recursive: true });
      await writeFile(join(home, '.kube', 'config'), kubeconfigFor('https://127.0.0.1:1'));
      const proc = startCli([...localWebhook(dir), '--watch-missed-injections'], { env: c.env(file) });
      try {
        const line = await proc.waitForLog((l) => l.msg === 'Kubernetes API access');
        assert.equal(line.via, c.via(file));
        assert.equal(line.apiServer, 'https://127.0.0.1:1');
        await proc.waitForLog((l) => l.msg === 'webhook listening');
        proc.child.kill('SIGTERM');
        assert.equal((await proc.exited).code, 0);
      } finally {
        if (proc.child.exitCode === null) proc.child.kill('SIGKILL');
        await rm(join(home, '.kube'), { recursive: true, force: true });
      }
    });
  }
});
