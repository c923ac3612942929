/**
 * The knob tables of the docs, generated from src/injection/knob-table.ts: each sits between marker comments
 * `<!-- knobs:NAME -->` and `<!-- /knobs:NAME -->`. `npm run docs:knobs` rewrites them;
 * test/injection/knob-docs.test.ts fails when a file's block differs from what the table generates.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ANNOTATION_PREFIX } from '../src/injection/annotations.ts';
import { flagUsage } from '../src/injection/flags.ts';
import { KNOB_LIST, type ReadmeRow } from '../src/injection/knob-table.ts';
import { PRESETS, presetMetricsUrl, presetReloadUrl, type Preset } from '../src/injection/presets.ts';

type Knob = (typeof KNOB_LIST)[number];

const code = (text: string | number): string => `\`${text}\``;
const annotationKey = (knob: Knob): string => code(`${ANNOTATION_PREFIX}${knob.annotation}`);
const flagName = (knob: Knob): string => code(`--${knob.flag?.name}`);

/** A markdown table as prettier writes it: every column padded to its widest cell. */
export function markdownTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(3, h.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: string[]): string =>
    `| ${cells.map((cell, i) => cell.padEnd(widths[i] as number)).join(' | ')} |`;
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

/** The annotation's default as docs/annotations.md shows it: the flag that sets it and its default, or its own. */
function annotationDefault(knob: Knob): string {
  if (knob.docs.default !== undefined) return knob.docs.default;
  if (knob.flag === undefined) return code(knob.default as string | number);
  if (knob.default !== undefined) return `${flagName(knob)} (${code(knob.default)})`;
  return knob.unset !== undefined ? `${flagName(knob)} (${knob.unset})` : flagName(knob);
}

const flagDefault = (knob: Knob): string =>
  knob.default !== undefined ? code(knob.default) : (knob.unset ?? 'not set');

function readmeRows(kind: 'annotation' | 'flag'): string[][] {
  const rows: string[][] = [];
  for (const knob of KNOB_LIST) {
    if (kind === 'annotation' ? knob.annotation === undefined : knob.flag === undefined) continue;
    const row = knob.readme[kind];
    if (row === undefined)
      throw new Error(`knob ${knob.key}: readme.${kind} is missing (a row, or 'grouped')`);
    if (row === 'grouped') continue;
    const { name, default: given, meaning } = row as ReadmeRow;
    if (kind === 'annotation') {
      const fallback =
        knob.flag === undefined
          ? code(knob.default as string | number)
          : knob.default !== undefined
            ? `${flagName(knob)} (${code(knob.default)})`
            : flagName(knob);
      rows.push([name ?? annotationKey(knob), given ?? fallback, meaning]);
    } else {
      rows.push([name ?? flagName(knob), given ?? flagDefault(knob), meaning]);
    }
  }
  return rows;
}

/** docs/annotations.md's presets: what each one fills in, and where each fact comes from. */
function presetBlocks(): { presets: string; 'preset-sources': string } {
  const entries = Object.entries(PRESETS) as [string, Preset][];
  return {
    presets: markdownTable(
      ['Preset', 'App', 'Reload', 'Answer', 'Metrics', 'Success metric', 'Timestamp metric'],
      entries.map(([name, preset]) => [
        code(name),
        preset.app,
        `${preset.reloadMethod} ${code(presetReloadUrl(preset))}`,
        preset.answer === 'sync' ? 'after the reload (500 on failure)' : 'at once (200 before the reload)',
        code(presetMetricsUrl(preset, undefined)),
        code(preset.successMetric),
        code(preset.timestampMetric),
      ]),
    ),
    'preset-sources': entries
      .map(([name, preset]) => `- ${code(name)}: ${preset.citations.join('; ')}.`)
      .join('\n'),
  };
}

/** Every generated block, by file and marker name. */
export function knobBlocks(): Record<string, Record<string, string>> {
  const withAnnotation = KNOB_LIST.filter((knob) => knob.annotation !== undefined);
  const withFlag = KNOB_LIST.filter((knob) => knob.flag !== undefined);
  return {
    'docs/annotations.md': {
      annotations: markdownTable(
        ['Annotation', 'Default', 'Meaning', 'Example'],
        withAnnotation.map((knob) => [
          annotationKey(knob),
          annotationDefault(knob),
          knob.docs.meaning,
          knob.docs.example ?? '',
        ]),
      ),
      flags: markdownTable(
        ['Flag', 'Default', 'Meaning'],
        withFlag.map((knob) => [
          code(flagUsage(knob.flag as NonNullable<Knob['flag']>)),
          flagDefault(knob),
          knob.docs.flagMeaning ?? '',
        ]),
      ),
      ...presetBlocks(),
    },
    'README.md': {
      'readme-annotations': markdownTable(['annotation', 'default', 'meaning'], readmeRows('annotation')),
      'readme-flags': markdownTable(['sidecar default', 'default', 'meaning'], readmeRows('flag')),
    },
  };
}

const markers = (name: string): [string, string] => [`<!-- knobs:${name} -->\n`, `<!-- /knobs:${name} -->`];

/** The text between a block's markers; undefined when the file has no such block. */
export function readBlock(text: string, name: string): string | undefined {
  const [open, close] = markers(name);
  const start = text.indexOf(open);
  const end = text.indexOf(close, start);
  if (start < 0 || end < 0) return undefined;
  return text.slice(start + open.length, end);
}

/** The block's content as it is written between the markers (blank lines around the table, as prettier keeps). */
export const blockText = (table: string): string => `\n${table}\n\n`;

/** The text with the block between its markers replaced; an error when the markers are missing. */
export function writeBlock(text: string, name: string, table: string): string {
  const [open, close] = markers(name);
  const start = text.indexOf(open);
  const end = text.indexOf(close, start);
  if (start < 0 || end < 0) throw new Error(`markers ${open.trim()} ... ${close} not found`);
  return text.slice(0, start + open.length) + blockText(table) + text.slice(end);
}

/** Rewrites the blocks of the files under `root` (the repository). */
export function rewriteDocs(root: string): string[] {
  const changed: string[] = [];
  for (const [file, blocks] of Object.entries(knobBlocks())) {
    const path = `${root}/${file}`;
    const before = readFileSync(path, 'utf8');
    let after = before;
    for (const [name, table] of Object.entries(blocks)) after = writeBlock(after, name, table);
    if (after !== before) {
      writeFileSync(path, after);
      changed.push(file);
    }
  }
  return changed;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const root = fileURLToPath(new URL('..', import.meta.url)).replace(/\/$/, '');
  const changed = rewriteDocs(root);
  console.log(changed.length > 0 ? `rewrote ${changed.join(', ')}` : 'knob tables up to date');
}
