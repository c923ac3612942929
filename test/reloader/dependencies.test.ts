import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, relative, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ENTRY = resolve(ROOT, 'src/reloader/command.ts');
const STATIC_IMPORT = /^\s*(?:import|export)\s+(?!type\b)(?:[^'"]*?\sfrom\s+)?['"]([^'"]+)['"]/gm;
const DYNAMIC_IMPORT = /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g;

/** Every module the reloader loads at start or on demand (imports followed), and the packages it imports. */
function importGraph(): { files: string[]; staticPackages: Set<string>; dynamicPackages: Set<string> } {
  const files: string[] = [];
  const staticPackages = new Set<string>();
  const dynamicPackages = new Set<string>();
  const visit = (file: string): void => {
    if (files.includes(file)) return;
    files.push(file);
    const text = readFileSync(file, 'utf8');
    for (const [, spec] of text.matchAll(STATIC_IMPORT)) {
      if (spec?.startsWith('.')) visit(resolve(dirname(file), spec));
      else if (spec) staticPackages.add(spec);
    }
    // A relative dynamic import is reloader code loaded when its flag is given (events, confirmation, restarts,
    // signals): followed like the rest, so that it too stays in src/reloader and src/shared.
    for (const [, spec] of text.matchAll(DYNAMIC_IMPORT)) {
      if (spec?.startsWith('.')) visit(resolve(dirname(file), spec));
      else if (spec) dynamicPackages.add(spec);
    }
  };
  visit(ENTRY);
  return { files, staticPackages, dynamicPackages };
}

void describe('the reloader stays small', () => {
  void it('loads only node: built-ins and pino at start, yaml only on demand, and only src/reloader + src/shared code', () => {
    const { files, staticPackages, dynamicPackages } = importGraph();
    assert.ok(files.length > 10, 'the import scan found too few files to be right');
    for (const f of files) assert.match(relative(ROOT, f), /^src\/(reloader|shared)\//);
    for (const p of staticPackages)
      assert.ok(p.startsWith('node:') || p === 'pino', `static import of "${p}"`);
    for (const p of dynamicPackages) assert.ok(p === 'yaml', `dynamic import of "${p}"`);
  });
});
