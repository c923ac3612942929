import { DEFAULT_RELOADER_IMAGE } from '../injection/config.ts';
import { injectorConfigFromFlags, injectorFlags, INJECTOR_FLAGS_HELP } from '../injection/flags.ts';
import { parseFlags, UsageError } from '../shared/cli.ts';
import {
  decodeInput,
  expandPath,
  InputError,
  MANIFEST_EXTENSIONS,
  readInputFile,
  readStdin,
  type InputFile,
} from './input.ts';
import { injectInputs, type ManifestInput } from './manifests.ts';

const HELP = `Usage: config-reloader-injector inject [-f FILE|DIR|-]... [-R] [flags]

Injects the config-reloader sidecar into manifests offline, as the webhook would (the same code): Pods and the
pod templates of Deployments, StatefulSets, DaemonSets, ReplicaSets, ReplicationControllers, Jobs and CronJobs
that opt in with the annotation config-reloader.io/inject: "true", also inside a kind: List. Prints the result
on standard output; messages go to standard error. See docs/inject.md.

Reads manifests as kubectl does: YAML documents split at lines that start with ---, with YAML 1.1 values
(defaultMode: 0644 is 420, yes/no/on/off are booleans), or a stream of JSON objects; UTF-8 only.

Writes documents with no injected template byte for byte as they were (comments, quoting, flow style,
indentation, --- lines); in an injected document only the fields injection adds or changes are new, in the
style around them, and comments and formatting elsewhere stay. Strings YAML 1.1 would read as something else
("no", "0644", "1e3") are written quoted. Injected templates carry config-reloader.io/status: injected, so the
webhook and a second run leave them alone. Several inputs are written as one YAML stream, --- between them.

On standard error: a line per injected template, warnings (an inject annotation on a workload's own
metadata.annotations instead of its pod template's, a volume that stays as it is), a note when the sidecar
image is the default one, and last "N of M documents injected". A denied template (invalid annotations) or
unreadable input is an "error:" line naming the file, document or line; then nothing is printed and the exit
code is 1 (2 for a bad flag).

Flags:
  -f, --filename PATH          a file, a directory (its ${MANIFEST_EXTENSIONS.join(', ')} files) or "-" for standard
                               input (the default); repeatable
  -R, --recursive              with a directory, read its subdirectories too
  --namespace-injection        inject every template unless it says config-reloader.io/inject: "false"
                               (as the webhook does for namespaces labelled config-reloader.io/injection=enabled)
  -h, --help                   this help

${INJECTOR_FLAGS_HELP}
Examples:
  config-reloader-injector inject -f deployment.yaml --reloader-image registry.example.com/config-reloader-injector:0.1.0 | kubectl apply -f -
  kustomize build overlays/prod | config-reloader-injector inject --reloader-image IMAGE > rendered.yaml
  config-reloader-injector inject -R -f manifests/ --reloader-image IMAGE
`;

const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

/** The files named by the -f flags (directories expanded as kubectl does), in order; "-" is standard input. */
async function readInputs(
  paths: string[],
  recursive: boolean,
  warn: (message: string) => void,
): Promise<InputFile[]> {
  const inputs: InputFile[] = [];
  for (const path of paths) {
    if (path === '-') {
      inputs.push(await readStdin());
      continue;
    }
    const { files, skippedDirs } = await expandPath(path, recursive);
    if (files.length === 0 || skippedDirs > 0) {
      const subdirectories = skippedDirs === 1 ? '1 subdirectory' : `${skippedDirs} subdirectories`;
      const skipped = skippedDirs > 0 ? `; ${subdirectories} not read without -R` : '';
      if (files.length === 0)
        warn(`the directory "${path}" has no ${MANIFEST_EXTENSIONS.join(', ')} files${skipped}`);
      else warn(`the directory "${path}": ${skipped.slice(2)}`);
    }
    for (const file of files) inputs.push(await readInputFile(file));
  }
  return inputs;
}

/**
 * Writes the manifests to standard output. A reader that goes away early (`inject ... | head`) ends the run
 * quietly with exit code 1, as a closed pipe should, not with an unhandled EPIPE and its stack trace.
 */
function writeOutput(text: string): void {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE')
      process.stderr.write(`error: cannot write to standard output: ${err.message}\n`);
    process.exitCode = 1;
    process.stdout.destroy();
  });
  process.stdout.write(text);
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags('inject', argv, {
    filename: { type: 'string', short: 'f', multiple: true },
    recursive: { type: 'boolean', short: 'R' },
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
  const stderr = (line: string): void => void process.stderr.write(`${line}\n`);
  try {
    const warnings: string[] = [];
    const files = await readInputs(values.filename ?? ['-'], values.recursive === true, (w) =>
      warnings.push(w),
    );
    const inputs: ManifestInput[] = files.map((file) => {
      const { text, bom } = decodeInput(file);
      return { ...(file.name !== undefined ? { name: file.name } : {}), text, bom };
    });
    const result = injectInputs(inputs, {
      optIn: values['namespace-injection'] ? 'namespace' : 'annotation',
      config,
    });
    for (const warning of [...warnings, ...result.warnings]) stderr(`warning: ${warning}`);
    for (const { target, outcome } of result.reports) {
      for (const warning of outcome.warnings) stderr(`warning: ${target}: ${warning}`);
      if (outcome.action === 'patch') stderr(`${target}: injected (${plural(outcome.sources, 'source')})`);
    }
    if (result.errors.length > 0) {
      for (const error of result.errors) stderr(`error: ${error}`);
      return 1;
    }
    if (result.documents === 0) {
      const what =
        files.length === 0
          ? 'no input files'
          : files.length === 1
            ? `${files[0]?.name ?? 'standard input'} has no Kubernetes objects (it is empty or only comments)`
            : 'the inputs have no Kubernetes objects (they are empty or only comments)';
      stderr(`warning: ${what}; nothing to inject`);
    }
    writeOutput(result.output);
    if (result.injectedDocuments > 0 && values['reloader-image'] === undefined)
      stderr(
        `note: the sidecar image is the default ${DEFAULT_RELOADER_IMAGE}, which no registry serves, so no cluster can pull it: build and push the image (see docs/install.md) and pass --reloader-image REGISTRY/config-reloader-injector:TAG`,
      );
    stderr(`${result.injectedDocuments} of ${plural(result.documents, 'document')} injected`);
    return 0;
  } catch (err) {
    if (err instanceof UsageError) throw err;
    // Never a stack trace: whatever went wrong is one line.
    const message = err instanceof InputError ? err.message : `internal error: ${(err as Error).message}`;
    stderr(`error: ${message}`);
    return 1;
  }
}
