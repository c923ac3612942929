#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { InvalidSetting } from './injection/knobs.ts';
import { UsageError } from './shared/cli.ts';

/** Each subcommand lives in its own module, imported only when run, so the reloader never loads the webhook's dependencies. */
const COMMANDS: Record<
  string,
  { summary: string; load: () => Promise<{ run(argv: string[]): Promise<number> }> }
> = {
  webhook: {
    summary: 'serve the mutating admission webhook over HTTPS',
    load: () => import('./webhook/command.ts'),
  },
  reloader: {
    summary: 'watch Secrets/ConfigMaps, write them atomically, call the reload URL (the sidecar)',
    load: () => import('./reloader/command.ts'),
  },
  inject: {
    summary: 'inject the sidecar into manifests offline (YAML/JSON from a file or stdin)',
    load: () => import('./manifests/command.ts'),
  },
  certs: {
    summary: "write a CA and the webhook Service's serving certificate, print the caBundle",
    load: () => import('./certs/command.ts'),
  },
};

const USAGE = `Usage: config-reloader-injector <command> [flags]

Commands:
${Object.entries(COMMANDS)
  .map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`)
  .join('\n')}
  ${'version'.padEnd(10)} print the version (also --version)

Run 'config-reloader-injector <command> --help' for a command's flags.
`;

/** The package's version: package.json is one level up from both src/cli.ts and the image's dist/cli.js. */
function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(USAGE);
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === 'version') {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    process.stderr.write(`error: unknown command "${name}"\n\n${USAGE}`);
    return 2;
  }
  try {
    return await (await command.load()).run(rest);
  } catch (err) {
    // A bad injector flag is found by the core (InvalidSetting); to the user it is a usage error like any other.
    if (err instanceof UsageError || err instanceof InvalidSetting) {
      process.stderr.write(`error: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
}

process.exitCode = await main(process.argv.slice(2));
