/**
 * Reload by signal and restart on change, through the real command, to real processes that the reloader finds as
 * containers' main processes (test/reloader/container-process.ts): SIGHUP with confirmation, a missing process
 * retried with backoff (one warning, then a line when it recovers), and --restart-on-change SIGTERMing a
 * container when the data of an object it reads through env changes (not on the first sync, not on a deletion).
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { Harness, logLines, NS, POD_ENV, RW, secret, secretValue, waitFor, waitReady } from './harness.ts';
import { containerSkip, startContainerProcess, type ContainerProcess } from './container-process.ts';

void describe('reload by signal and restart on change, to real processes', { skip: containerSkip }, () => {
  let h: Harness;
  let n = 0;
  const containers: ContainerProcess[] = [];
  /** A container name no other test (nor another run) uses: the lookup is by name, machine-wide. */
  const unique = (label: string): string => `${label}-${process.pid}-${++n}`;
  const start = async (name: string, file: string, waitReady = true): Promise<ContainerProcess> => {
    const c = await startContainerProcess(name, file, { waitReady });
    containers.push(c);
    return c;
  };

  before(async () => {
    h = await Harness.start([
      { verbs: RW, resource: 'secrets', namespace: NS },
      { verbs: ['create'], resource: 'events', namespace: NS },
    ]);
  });
  afterEach(async () => {
    await Promise.all(containers.splice(0).map((c) => c.stop()));
  });
  after(async () => {
    await h.close();
  });

  void it('SIGHUP to the container main process, confirmed applied by its metrics', async () => {
    const name = unique('sig');
    const dir = h.dir('sig');
    h.api.create(secret(name, { 'config.yaml': secretValue(`good-${name}-0`) }));
    const app = await start(name, join(dir, 'config.yaml'));
    const metrics = `http://127.0.0.1:${app.port}/metrics`;
    const r = await h.reloader(
      [
        '--source',
        `secret/${name}=${dir}`,
        '--reload-signal',
        'hup',
        '--signal-container',
        name,
        '--confirm-metrics-url',
        metrics,
        '--confirm-success-metric',
        'app_config_last_reload_successful',
        '--confirm-timestamp-metric',
        'app_config_last_reload_success_timestamp_seconds',
      ],
      { reloadUrl: false },
    );
    await waitReady(r);
    assert.deepEqual(
      app.lines.filter((l) => l.startsWith('reloaded')),
      [],
      'no signal for the first sync',
    );
    h.api.update(secret(name, { 'config.yaml': secretValue(`good-${name}-1`) }));
    await app.waitLine('reloaded good');
    const sent = await r.cli.waitForLog((l) => l.msg === 'reload signal sent');
    assert.equal(sent.pid, app.child.pid);
    assert.equal(sent.signal, 'SIGHUP');
    assert.equal(sent.container, name);
    assert.equal(sent.delivery, 'signal');
    const applied = await r.cli.waitForLog((l) => l.msg === 'the app applied the new config');
    assert.equal(applied.delivery, 'signal');
    assert.equal(await r.metric('config_reloader_reload_delivery_info{delivery="signal"}'), 1);
    // A broken config: the app says no, the reloader says so once and does not signal again.
    h.api.update(secret(name, { 'config.yaml': secretValue(`broken-${name}-2`) }));
    await app.waitLine('reloaded bad');
    const rejected = await r.cli.waitForLog((l) => /^the app rejected the new config/.test(String(l.msg)));
    assert.equal(rejected.successValue, 0);
    assert.equal(app.lines.filter((l) => l.startsWith('reloaded')).length, 2);
    await r.stop();
  });

  void it('no process to signal: retried with backoff, one warning with the lookup sentence, a line when it recovers', async () => {
    const name = unique('late');
    const dir = h.dir('late');
    h.api.create(secret(name, { 'config.yaml': secretValue(`good-${name}-0`) }));
    const r = await h.reloader(
      [
        '--source',
        `secret/${name}=${dir}`,
        '--reload-signal',
        'SIGUSR2',
        '--signal-container',
        name,
        '--backoff',
        '20ms:40ms',
      ],
      { reloadUrl: false },
    );
    await waitReady(r);
    h.api.update(secret(name, { 'config.yaml': secretValue(`good-${name}-1`) }));
    const warn = await r.cli.waitForLog((l) => /^reload signal not delivered/.test(String(l.msg)));
    assert.equal(warn.level, 'warn');
    assert.match(String(warn.error), new RegExp(`^no process of container "${name}" among \\d+ processes`));
    await waitFor(
      () => logLines(r, /^reload not delivered again, same reason/).length >= 3,
      'three more failed attempts',
    );
    assert.equal(logLines(r, /^reload signal not delivered/).length, 1, 'one warning, repeats at debug');
    assert.ok(((await r.metric('config_reloader_reloads_total{result="failure"}')) ?? 0) >= 4);
    // The container comes up: the next retry reaches it.
    const app = await start(name, join(dir, 'config.yaml'));
    const sent = await r.cli.waitForLog((l) => l.msg === 'reload signal sent');
    await app.waitLine('got SIGUSR2');
    assert.equal(sent.pid, app.child.pid);
    assert.ok((sent.afterFailedAttempts as number) >= 4);
    await r.stop();
  });

  void it('--restart-on-change: SIGTERM when the data changes, not for the first sync, a deletion or a metadata change', async () => {
    const name = unique('env');
    const env = `${name}-env`;
    const dir = h.dir('env');
    const data = { PASSWORD: secretValue(`${name}-0`) };
    h.api.create(secret(env, data));
    const app = await start(name, join(dir, 'unused'));
    // The same object is also a --source: both watch it, apart.
    const r = await h.reloader(
      ['--source', `secret/${env}=${dir}`, '--restart-on-change', `${name}=secret/${env}`, '--events'],
      { env: POD_ENV },
    );
    await waitReady(r);
    await r.cli.waitForLog((l) => l.msg === 'first sync: the data the containers started with');
    h.api.delete('secrets', NS, env);
    await r.cli.waitForLog((l) => l.msg === 'the object was deleted: no restart (its data is unknown)');
    h.api.create(secret(env, data)); // back with the same data: the env the container has
    h.api.update(secret(env, data, { metadata: { name: env, namespace: NS, labels: { touched: 'yes' } } }));
    const marker = secretValue(`${name}-marker`);
    h.api.update(secret(env, { ...data, OTHER: marker }));
    assert.equal(await app.exited, 'SIGTERM');
    const line = await r.cli.waitForLog((l) => /^SIGTERM sent to the main process/.test(String(l.msg)));
    assert.equal(line.pid, app.child.pid);
    assert.equal(line.container, name);
    assert.deepEqual(line.objects, [`secret/${NS}/${env}`]);
    assert.equal(
      logLines(r, /^SIGTERM sent/).length,
      1,
      'one restart: the re-creation and the label changed nothing',
    );
    assert.equal(
      await r.metric(`config_reloader_container_restarts_total{container="${name}",result="success"}`),
      1,
    );
    const event = await waitFor(
      () => h.api.list('events', NS).find((e) => (e as { reason?: string }).reason === 'ContainerRestarted'),
      'a ContainerRestarted event',
    );
    assert.equal((event as unknown as { type: string }).type, 'Normal');
    assert.match(
      String((event as unknown as { message: string }).message),
      new RegExp(`^Sent SIGTERM to container ${name} \\(pid \\d+\\)`),
    );
    await r.stop();
  });

  void it('--restart-on-change alone (no --source): the container whose process is missing is retried until it is there', async () => {
    const name = unique('solo');
    const env = `${name}-env`;
    h.api.create(secret(env, { K: secretValue(`${name}-0`) }));
    const r = await h.reloader(['--restart-on-change', `${name}=secret/${env}`, '--backoff', '20ms:40ms']);
    await r.cli.waitForLog((l) => l.msg === 'first sync: the data the containers started with');
    h.api.update(secret(env, { K: secretValue(`${name}-1`) }));
    const warn = await r.cli.waitForLog((l) => /^cannot restart container/.test(String(l.msg)));
    assert.match(String(warn.error), /^no process of container/);
    const app = await start(name, '/nonexistent', false);
    assert.equal(await app.exited, 'SIGTERM');
    const ok = await r.cli.waitForLog((l) => /^SIGTERM sent to the main process/.test(String(l.msg)));
    assert.ok((ok.afterFailedAttempts as number) >= 1);
    assert.equal(logLines(r, /^cannot restart container/).length, 1);
    await r.stop();
  });

  void it('--restart-on-change: an object absent at the first sync and created later restarts (an optional env reference)', async () => {
    const name = unique('late-env');
    const env = `${name}-env`;
    const app = await start(name, '/nonexistent');
    const r = await h.reloader(['--restart-on-change', `${name}=secret/${env}`]);
    await r.cli.waitForLog((l) => l.msg === 'watch open');
    assert.equal(app.child.exitCode, null);
    h.api.create(secret(env, { K: secretValue(`${name}-0`) }));
    assert.equal(await app.exited, 'SIGTERM');
    await r.stop();
  });
});
