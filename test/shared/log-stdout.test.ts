import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const LOG_MODULE = fileURLToPath(new URL('../../src/shared/log.ts', import.meta.url));

/**
 * Runs `body` in a child Node process with a logger on the default destination (stdout), counting the write
 * system calls on fd 1 (sonic-boom writes with fs.writeSync); returns the lines and that count (on stderr).
 */
function runChild(body: string): {
  lines: Array<Record<string, unknown>>;
  writes: number;
  status: number | null;
} {
  const script = `
    const fs = process.getBuiltinModule('node:fs');
    const writeSync = fs.writeSync;
    let writes = 0;
    fs.writeSync = function (fd, ...rest) { if (fd === 1) writes++; return writeSync.call(this, fd, ...rest); };
    process.on('exit', () => process.stderr.write('writes=' + writes + '\\n'));
    const { createLogger } = await import(${JSON.stringify(LOG_MODULE)});
    const log = createLogger({ name: 'test' });
    const other = createLogger({ name: 'other' });
    ${body}
  `;
  const res = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: 20_000,
  });
  const writes = Number(/writes=(\d+)/.exec(res.stderr)?.[1] ?? NaN);
  const lines = res.stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { lines, writes, status: res.status };
}

describe('logging to stdout', () => {
  it('writes the lines of one event-loop turn together, every logger in order', () => {
    const { lines, writes, status } = runChild(`
      for (let i = 0; i < 50; i++) (i % 2 ? other : log).info({ i }, 'first turn');
      setTimeout(() => { log.info({ i: 50 }, 'second turn'); other.info({ i: 51 }, 'second turn'); }, 10);
    `);
    assert.equal(status, 0);
    assert.deepEqual(
      lines.map((l) => l.i),
      Array.from({ length: 52 }, (_, i) => i),
    );
    assert.equal(lines[1]?.name, 'other');
    assert.equal(writes, 2, 'one write per event-loop turn that logged');
  });

  it('loses no line when the process exits in the turn that logged it', () => {
    const { lines, status } = runChild(`
      log.info('before exit');
      process.exit(3);
    `);
    assert.equal(status, 3);
    assert.deepEqual(
      lines.map((l) => l.msg),
      ['before exit'],
    );
  });

  it('loses no line when an uncaught exception ends the process', () => {
    const { lines, status } = runChild(`
      log.error('about to fail');
      throw new Error('boom');
    `);
    assert.equal(status, 1);
    assert.deepEqual(
      lines.map((l) => l.msg),
      ['about to fail'],
    );
  });

  it('writes what is pending when logger.flush() is called', () => {
    const { lines, status } = runChild(`
      log.info('one');
      log.flush();
      if (writes !== 1) process.exitCode = 9;
    `);
    assert.equal(status, 0, 'the line was written by flush(), not at exit');
    assert.deepEqual(
      lines.map((l) => l.msg),
      ['one'],
    );
  });
});
