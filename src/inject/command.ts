import { readFile } from 'node:fs/promises';
import { injectorConfigFromFlags, injectorFlags, INJECTOR_FLAGS_HELP } from '../injection/flags.ts';
import { parseFlags, UsageError } from '../shared/cli.ts';
import { injectManifests } from './manifests.ts';

const HELP = `Usage: config-reloader-injector inject [-f FILE|-] [flags]

Injects the config-reloader sidecar into manifests offline, as the webhook would (the same code): Pods and the
pod templates of Deployments, StatefulSets, DaemonSets, ReplicaSets, ReplicationControllers, Jobs and CronJobs
that opt in with the annotation config-reloader.io/inject: "true". Reads YAML (several documents) or JSON,
including kind: List, and prints the result; every other document is printed unchanged. Injected templates
carry config-reloader.io/status: injected, so the webhook leaves them alone.

A template whose annotations are invalid is reported on stderr with the document's kind and name, nothing is
printed, and the exit code is 1. Warnings go to stderr.

Flags:
  -f, --filename FILE          the manifests to read; "-" or none: standard input
  --namespace-injection        inject every template unless it says config-reloader.io/inject: "false"
                               (as the webhook does for namespaces labelled config-reloader.io/injection=enabled)
  -h, --help                   this help

${INJECTOR_FLAGS_HELP}
Example:
  config-reloader-injector inject -f deployment.yaml | kubectl apply -f -
`;

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags('inject', argv, {
    filename: { type: 'string', short: 'f' },
    'namespace-injection': { type: 'boolean' },
    ...injectorFlags,
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (positionals.length > 0)
    throw new UsageError(
      `unexpected argument "${positionals[0]}"; use -f FILE (see: config-reloader-injector inject --help)`,
    );
  const config = injectorConfigFromFlags(values);
  const file = values.filename;
  let text: string;
  try {
    text = file === undefined || file === '-' ? await readStdin() : await readFile(file, 'utf8');
  } catch (err) {
    process.stderr.write(`error: cannot read ${file ?? 'standard input'}: ${(err as Error).message}\n`);
    return 1;
  }
  const result = injectManifests(text, {
    optIn: values['namespace-injection'] ? 'namespace' : 'annotation',
    config,
  });
  for (const { target, outcome } of result.reports) {
    for (const warning of outcome.warnings) process.stderr.write(`warning: ${target}: ${warning}\n`);
    if (outcome.action === 'patch')
      process.stderr.write(
        `${target}: injected (${outcome.sources} source${outcome.sources === 1 ? '' : 's'})\n`,
      );
  }
  if (result.errors.length > 0) {
    for (const error of result.errors) process.stderr.write(`error: ${error}\n`);
    return 1;
  }
  process.stdout.write(result.output);
  return 0;
}
