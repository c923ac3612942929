import type { ChildProcess } from 'node:child_process';

export interface ChildLines {
  /** Every complete stdout line so far. */
  lines: string[];
  /** The first line equal to `line` (or matching it), now or later; rejects when the child exits first. */
  waitLine(line: string | RegExp): Promise<string>;
}

/** Collects a child's stdout lines, for tests that wait for what a process they started says. */
export function childLines(child: ChildProcess): ChildLines {
  const lines: string[] = [];
  const waiters = new Set<() => void>();
  let rest = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    const parts = (rest + chunk.toString()).split('\n');
    rest = parts.pop() ?? '';
    lines.push(...parts);
    for (const w of waiters) w();
  });
  child.on('exit', () => {
    for (const w of waiters) w();
  });
  const waitLine = (line: string | RegExp): Promise<string> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const found = lines.find((l) => (typeof line === 'string' ? l === line : line.test(l)));
        if (found !== undefined) resolve(found);
        else if (child.exitCode !== null || child.signalCode !== null)
          reject(new Error(`the process exited before it wrote "${String(line)}"`));
        else return;
        waiters.delete(check);
      };
      waiters.add(check);
      check();
    });
  return { lines, waitLine };
}
