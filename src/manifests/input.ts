import { isUtf8 } from 'node:buffer';
import { lstat, readdir, readFile, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';

/** What kubectl -f reads in a directory: these extensions, compared as written (kubectl's FileExtensions). */
export const MANIFEST_EXTENSIONS = ['.json', '.yaml', '.yml'];

/** Inputs larger than this are refused before parsing: parsing keeps a node tree many times the text's size. */
export const MAX_INPUT_BYTES = 256 * 1024 * 1024;

/** A problem with an input that ends the run: printed as `error: MESSAGE`, exit code 1. */
export class InputError extends Error {}

export interface InputFile {
  /** The path as given or found in a directory; undefined for standard input. */
  name?: string;
  bytes: Buffer;
}

/** Where a byte offset is, for messages: `line 3, column 12` (1-based; the column counts characters). */
export function position(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = text.indexOf('\n'); i !== -1 && i < offset; i = text.indexOf('\n', i + 1)) {
    line++;
    lineStart = i + 1;
  }
  return { line, column: offset - lineStart + 1 };
}

const describeName = (name: string | undefined): string => name ?? 'standard input';
const convertHint = (name: string | undefined, from: string): string =>
  name === undefined
    ? `convert it to UTF-8 first (e.g. iconv -f ${from} -t UTF-8)`
    : `convert it to UTF-8 first (e.g. iconv -f ${from} -t UTF-8 ${name} > ${name}.utf8) and read that`;

/** The first byte offset where `bytes` stops being well-formed UTF-8 (as the WHATWG decoder defines it). */
function firstInvalidUtf8(bytes: Buffer): number {
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i] as number;
    if (b < 0x80) {
      i++;
      continue;
    }
    let need: number;
    let lower = 0x80;
    let upper = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) need = 1;
    else if (b >= 0xe0 && b <= 0xef) {
      need = 2;
      if (b === 0xe0) lower = 0xa0;
      if (b === 0xed) upper = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
      need = 3;
      if (b === 0xf0) lower = 0x90;
      if (b === 0xf4) upper = 0x8f;
    } else return i;
    for (let k = 1; k <= need; k++) {
      const c = bytes[i + k];
      if (c === undefined || c < (k === 1 ? lower : 0x80) || c > (k === 1 ? upper : 0xbf)) return i;
    }
    i += need + 1;
  }
  return -1;
}

/**
 * The text of an input, which must be UTF-8 (a UTF-8 byte order mark is dropped, as kubectl drops it). Anything
 * else is refused with the reason and the fix, never decoded into replacement characters: UTF-16 and UTF-32
 * (with or without a byte order mark), Latin-1 or other 8-bit text, and NUL bytes.
 */
export function decodeInput(file: InputFile): { text: string; bom: boolean } {
  const { bytes, name } = file;
  const what = describeName(name);
  const starts = (...prefix: number[]): boolean => prefix.every((b, i) => bytes[i] === b);
  if (starts(0x00, 0x00, 0xfe, 0xff) || starts(0xff, 0xfe, 0x00, 0x00))
    throw new InputError(
      `${what} is UTF-32 (it starts with a UTF-32 byte order mark); inject reads UTF-8 only: ${convertHint(name, 'UTF-32')}`,
    );
  if (starts(0xff, 0xfe) || starts(0xfe, 0xff))
    throw new InputError(
      `${what} is UTF-16 (it starts with a UTF-16 byte order mark); inject reads UTF-8 only: ${convertHint(name, 'UTF-16')}`,
    );
  const nul = bytes.indexOf(0);
  if (nul !== -1) {
    // ASCII text in UTF-16 has a NUL next to every character: after it (LE) or before it (BE).
    const sample = bytes.subarray(0, Math.min(bytes.length, 4096));
    let even = 0;
    let odd = 0;
    sample.forEach((b, i) => {
      if (b === 0) {
        if (i % 2 === 0) even++;
        else odd++;
      }
    });
    const half = sample.length / 2;
    if (odd > half * 0.6 && even < half * 0.1)
      throw new InputError(
        `${what} looks like UTF-16LE without a byte order mark (every other byte is NUL); inject reads UTF-8 only: ${convertHint(name, 'UTF-16LE')}`,
      );
    if (even > half * 0.6 && odd < half * 0.1)
      throw new InputError(
        `${what} looks like UTF-16BE without a byte order mark (every other byte is NUL); inject reads UTF-8 only: ${convertHint(name, 'UTF-16BE')}`,
      );
    const text = bytes.subarray(0, nul).toString('utf8');
    const { line, column } = position(text, text.length);
    throw new InputError(
      `${what} has a NUL byte at line ${line}, column ${column}: it is binary data or in an encoding other than UTF-8; manifests are UTF-8 text`,
    );
  }
  if (!isUtf8(bytes)) {
    const at = firstInvalidUtf8(bytes);
    const before = bytes.subarray(0, at).toString('utf8');
    const { line, column } = position(before, before.length);
    const byte = (bytes[at] ?? 0).toString(16).toUpperCase().padStart(2, '0');
    throw new InputError(
      `${what} is not UTF-8: byte 0x${byte} at line ${line}, column ${column} is not valid UTF-8 (Latin-1 or Windows-1252 text?); inject reads UTF-8 only: ${convertHint(name, 'LATIN1')}`,
    );
  }
  const bom = starts(0xef, 0xbb, 0xbf);
  return { text: bytes.toString('utf8', bom ? 3 : 0), bom };
}

async function readBytes(path: string): Promise<Buffer> {
  const info = await stat(path);
  if (info.size > MAX_INPUT_BYTES)
    throw new InputError(
      `"${path}" is ${Math.round(info.size / 1024 / 1024)} MiB; inject reads at most ${MAX_INPUT_BYTES / 1024 / 1024} MiB per file: split it`,
    );
  return readFile(path);
}

function describeFsError(path: string, err: unknown): InputError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new InputError(`the path "${path}" does not exist`);
  if (code === 'EACCES' || code === 'EPERM')
    return new InputError(`the path "${path}" cannot be read: permission denied`);
  if (code === 'EISDIR') return new InputError(`the path "${path}" is a directory`);
  if (err instanceof InputError) return err;
  return new InputError(`the path "${path}" cannot be read: ${(err as Error).message}`);
}

/**
 * The files `kubectl -f PATH` reads: the file itself (whatever its name), or in a directory its .json, .yaml and
 * .yml files in lexical order, with `recursive` those of every subdirectory too (symbolic links to directories
 * are not followed below the path given, as in kubectl). `skipped` counts subdirectories left out without `-R`.
 */
export async function expandPath(
  path: string,
  recursive: boolean,
): Promise<{ files: string[]; skippedDirs: number }> {
  let info;
  try {
    info = await stat(path);
  } catch (err) {
    throw describeFsError(path, err);
  }
  if (!info.isDirectory()) return { files: [path], skippedDirs: 0 };
  const files: string[] = [];
  let skippedDirs = 0;
  const walk = async (dir: string): Promise<void> => {
    let names: string[];
    try {
      names = (await readdir(dir)).sort();
    } catch (err) {
      throw describeFsError(dir, err);
    }
    for (const name of names) {
      const full = join(dir, name);
      let entry;
      try {
        entry = await lstat(full);
      } catch (err) {
        throw describeFsError(full, err);
      }
      if (entry.isDirectory()) {
        if (recursive) await walk(full);
        else skippedDirs++;
      } else if (MANIFEST_EXTENSIONS.includes(extname(name))) files.push(full);
    }
  };
  await walk(path);
  return { files, skippedDirs };
}

/** Reads one file, with the errors worded for the user. */
export async function readInputFile(path: string): Promise<InputFile> {
  try {
    return { name: path, bytes: await readBytes(path) };
  } catch (err) {
    throw describeFsError(path, err);
  }
}

/** Reads standard input to the end, refusing more than MAX_INPUT_BYTES. */
export async function readStdin(stream: NodeJS.ReadableStream = process.stdin): Promise<InputFile> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    const buffer = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
    size += buffer.length;
    if (size > MAX_INPUT_BYTES)
      throw new InputError(
        `standard input is larger than ${MAX_INPUT_BYTES / 1024 / 1024} MiB; inject reads at most that much: split it`,
      );
    chunks.push(buffer);
  }
  return { bytes: Buffer.concat(chunks) };
}
