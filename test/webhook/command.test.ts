import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
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
      const token = api.addServiceAccount('config-reloader-injector', 'config-reloader-injector', [
        { verbs: ['get', 'list', 'watch'], resource: 'pods' },
        { verbs: ['get', 'list', 'watch'], resource: 'namespaces' },
        { verbs: ['create'], resource: 'events' },
      ]);
      await api.writeKubeconfig(join(dir, 'kubeconfig'), { token });
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

  it('rejects --kubeconfig without a feature that uses it', async () => {
    const { code, stderr } = await runCli(['webhook', '--kubeconfig', '/nope']);
    assert.equal(code, 2);
    assert.match(stderr, /--kubeconfig applies only with --self-managed-certs or --watch-missed-injections/);
  });
});
