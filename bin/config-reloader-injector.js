#!/usr/bin/env node
// The `config-reloader-injector` command (package.json "bin"; what `npx config-reloader-injector` runs).
//
// Plain JavaScript that any Node from 18 on can parse, because the `node` that runs it is whichever the PATH
// gives: under npx or an npm script that is the repository's Node 24 (node_modules/.bin comes first), from
// a shell it may be an older system Node. It runs the CLI on Node 24 without a build step:
//
// - the entry point is src/cli.ts when it is there (a clone: the source as it is now, never a stale build),
//   else dist/cli.js (a tree with only the compiled output, as in the image);
// - on Node 24 or later it is imported into this process, so signals, stdin/stdout and the exit code are
//   the CLI's own;
// - on an older Node it runs in a child process on the Node 24 that `npm ci` installs (the `node`
//   devDependency, node_modules/node/bin/node), with the same stdio, the signals passed on and its exit
//   code (or signal) as this process's.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import process from 'node:process';
import { isatty } from 'node:tty';
import { fileURLToPath, URL } from 'node:url';

const MIN_NODE_MAJOR = 24;

// import.meta.url is the real path: Node resolves the node_modules/.bin symlink before loading a main module.
const root = new URL('../', import.meta.url);
const entry = [new URL('src/cli.ts', root), new URL('dist/cli.js', root)].find((u) => existsSync(u));

/** @param {string} message */
function fail(message) {
  process.stderr.write(`error: ${message}\n`);
  process.exit(1);
}

if (!entry) {
  fail(`neither src/cli.ts nor dist/cli.js is in ${fileURLToPath(root)}`);
} else if (Number(process.versions.node.split('.')[0]) >= MIN_NODE_MAJOR) {
  await import(entry.href);
} else {
  const node = fileURLToPath(new URL('node_modules/node/bin/node', root));
  if (!existsSync(node)) {
    fail(
      `config-reloader-injector needs Node ${MIN_NODE_MAJOR} or later, and this is Node ${process.version} ` +
        `(${process.execPath}). Run \`npm ci\` in ${fileURLToPath(root)} (it installs Node ${MIN_NODE_MAJOR} ` +
        `as the \`node\` devDependency) or put Node ${MIN_NODE_MAJOR} first on the PATH.`,
    );
  }
  runOn(node, fileURLToPath(entry));
}

/**
 * @param {string} node
 * @param {string} script
 */
function runOn(node, script) {
  const child = spawn(node, [script, ...process.argv.slice(2)], { stdio: 'inherit' });
  // A terminal sends ^C (SIGINT) and ^\ (SIGQUIT) to its whole foreground process group, the child
  // included: passing them on as well would deliver them twice, and the webhook and the reloader take a
  // second SIGINT as "stop now". So when this process has a terminal, those two are left to the terminal.
  const terminal = isatty(0) || isatty(1) || isatty(2);
  /** @type {Array<NodeJS.Signals>} */
  const signals = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGUSR2'];
  /** @param {NodeJS.Signals} signal */
  const pass = (signal) => {
    if (terminal && (signal === 'SIGINT' || signal === 'SIGQUIT')) return;
    child.kill(signal);
  };
  for (const signal of signals) process.on(signal, pass);
  child.on('error', (err) => fail(`cannot run ${node}: ${err.message}`));
  child.on('exit', (code, signal) => {
    for (const s of signals) process.off(s, pass);
    if (signal) {
      // Die of the same signal, so that a shell or a supervisor sees what the child saw.
      process.kill(process.pid, signal);
      return;
    }
    process.exit(code ?? 1);
  });
}
