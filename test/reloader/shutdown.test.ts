/**
 * SIGTERM ends the reloader at once, whatever its reload request is doing, and nothing is sent to the app after
 * it. The reloader runs with a 60 s backoff (hidden --backoff) and a 60 s reload timeout, and each test allows it
 * 5 s to exit: it can only pass by ending the wait or the request, not by outlasting it.
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { Harness, secret, secretValue, waitFor, waitReady, type ReloaderProcess } from './harness.ts';

/** Far shorter than the 60 s backoff and reload timeout the reloader is given. */
const BUDGET_MS = 5_000;
/** The warning of the first failed reload request. */
const FAILED_503 = /^reload request to POST \S+ failed \(HTTP 503\); retrying with backoff/;

void describe('SIGTERM with a reload pending', () => {
  let h: Harness;
  let n = 0;
  before(async () => {
    h = await Harness.start();
  });
  beforeEach(() => {
    h.receiver.status = 200;
    h.receiver.hang = false;
  });
  after(async () => {
    await h.close();
  });

  async function start(): Promise<{ r: ReloaderProcess; name: string }> {
    const name = `shutdown-${++n}`;
    h.api.create(secret(name, { k: secretValue(`${name}-0`) }));
    const r = await h.reloader([
      '--source',
      `secret/${name}=${h.dir(name)}`,
      '--backoff',
      '60s:60s',
      '--reload-timeout',
      '60s',
    ]);
    await waitReady(r);
    return { r, name };
  }

  /** SIGTERM, then the exit code, or 'still running' when it did not exit within the budget. */
  async function terminate(r: ReloaderProcess): Promise<number | null | 'still running'> {
    r.cli.child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      r.cli.exited.then((e) => e.code),
      new Promise<'still running'>(
        (resolve) => (timer = setTimeout(() => resolve('still running'), BUDGET_MS)),
      ),
    ]);
    clearTimeout(timer);
    return outcome;
  }

  void it('during the backoff after a failed reload: exits at once, no request after', async () => {
    const { r, name } = await start();
    h.receiver.status = 503;
    const hits = h.receiver.hits.length;
    h.api.update(secret(name, { k: secretValue(`${name}-1`) }));
    await r.cli.waitForLog((l) => FAILED_503.test(String(l.msg)));
    assert.equal(h.receiver.hits.length, hits + 1);
    const sentAt = Date.now();
    assert.equal(await terminate(r), 0, 'exits with 0 within the budget, long before the 60 s backoff ends');
    assert.deepEqual(
      h.receiver.hits.filter((x) => x.at >= sentAt),
      [],
      'no reload request after SIGTERM',
    );
  });

  void it('during a reload request the app does not answer, on a kept-alive connection: exits at once, no request after', async () => {
    const { r, name } = await start();
    // A first reload answered 503 on a kept-alive connection, then newer content (cutting the backoff short)
    // whose reload hangs on that same connection.
    h.receiver.status = 503;
    h.api.update(secret(name, { k: secretValue(`${name}-1`) }));
    await r.cli.waitForLog((l) => FAILED_503.test(String(l.msg)));
    h.receiver.hang = true;
    const hits = h.receiver.hits.length;
    h.api.update(secret(name, { k: secretValue(`${name}-2`) }));
    await waitFor(() => h.receiver.hits.length === hits + 1, 'the reload that hangs');
    const sentAt = Date.now();
    assert.equal(await terminate(r), 0, 'exits with 0 within the budget, long before the 60 s timeout');
    assert.deepEqual(
      h.receiver.hits.filter((x) => x.at >= sentAt),
      [],
      'no reload request after SIGTERM (the aborted one is not sent again)',
    );
  });
});
