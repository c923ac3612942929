import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

/**
 * The real-world test data: the project's copy of the shared fixtures (test/fixtures/real-world, with their
 * SOURCES.md), so that a clone made anywhere passes. When ../shared/fixtures grows, refresh the copy.
 */
export const FIXTURES_DIR = resolve(import.meta.dirname, '..', 'fixtures', 'real-world');

const cache = new Map<string, unknown>();

function fixturePath(relative: string): string {
  if (!existsSync(FIXTURES_DIR)) {
    throw new Error(
      `test fixtures not found at ${FIXTURES_DIR}: the repository's copy of the real-world fixtures is missing`,
    );
  }
  const path = join(FIXTURES_DIR, relative);
  if (!existsSync(path)) throw new Error(`test fixture ${relative} not found in ${FIXTURES_DIR}`);
  return path;
}

/** A fixture file parsed as JSON; every call hands out a fresh deep clone, so tests may mutate it. */
export function loadFixture<T = Record<string, unknown>>(relative: string): T {
  if (!cache.has(relative)) cache.set(relative, JSON.parse(readFileSync(fixturePath(relative), 'utf8')));
  return structuredClone(cache.get(relative)) as T;
}

/** File names of the pod fixtures, sorted. */
export function podFixtureNames(): string[] {
  return readdirSync(fixturePath('pods'))
    .filter((name) => name.endsWith('.json'))
    .sort();
}

export function loadPod(name: string): Record<string, unknown> {
  return loadFixture(join('pods', name));
}
