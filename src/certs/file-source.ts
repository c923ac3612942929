import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { Logger } from '../shared/log.ts';
import { checkPair, trackServed, untrackServed, type TlsMaterial, type TlsSource } from './source.ts';

/**
 * How often fileTlsSource re-reads the files whatever fs.watch says. A Secret volume changes by an atomic swap of
 * its `..data` symlink, which a watch can miss (an inotify queue overflow, a watch limit reached, a directory
 * watched through a symlink that the swap replaces); one missed event used to mean serving the old certificate
 * until it expired. 30 s: the kubelet itself takes a minute or two to project a renewed Secret into the pod and
 * cert-manager renews 30 days before expiry, so 30 s more after a missed event costs nothing that matters (a CA
 * replaced by cainjector is the tightest case: pods admitted in that window may skip injection), while reading
 * two small files twice a minute costs nothing measurable.
 */
export const FILE_POLL_INTERVAL_MS = 30_000;

export interface FileTlsOptions {
  /** Re-read and compare the files this often, for the changes fs.watch misses (default FILE_POLL_INTERVAL_MS). */
  pollIntervalMs?: number;
}

/**
 * Certificates from files, re-read when they change. cert-manager and the kubelet replace Secret-backed files
 * by swapping a symlink in the directory, so the directories are watched, not the files; and since a watch
 * can miss a change, the files are also read again every `pollIntervalMs` and compared with what is served.
 */
export async function fileTlsSource(
  certFile: string,
  keyFile: string,
  log: Logger,
  opts: FileTlsOptions = {},
): Promise<TlsSource> {
  const pollIntervalMs = opts.pollIntervalMs ?? FILE_POLL_INTERVAL_MS;
  const read = async (): Promise<TlsMaterial> => ({
    cert: await readFile(certFile, 'utf8'),
    key: await readFile(keyFile, 'utf8'),
  });
  let material: TlsMaterial;
  try {
    material = await read();
  } catch (err) {
    throw new Error(
      `cannot read --tls-cert-file ${certFile} / --tls-key-file ${keyFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  try {
    checkPair(material);
  } catch (err) {
    throw new Error(`--tls-cert-file ${certFile} / --tls-key-file ${keyFile}: ${(err as Error).message}`);
  }
  const listeners: Array<(m: TlsMaterial) => void> = [];
  let timer: NodeJS.Timeout | undefined;
  /** The last pair found unusable, so that a poll does not warn about the same files every interval. */
  let rejected: TlsMaterial | undefined;
  let closed = false;
  const reloadOnce = async (via: 'watch' | 'poll'): Promise<void> => {
    let next: TlsMaterial;
    try {
      next = await read();
    } catch (err) {
      // Mid-swap, or the volume went away: the next event or poll tries again.
      log.debug(
        { certFile, keyFile, via, code: (err as NodeJS.ErrnoException).code },
        'cannot read the certificate files',
      );
      return;
    }
    if (closed || (next.cert === material.cert && next.key === material.key)) return;
    if (rejected && next.cert === rejected.cert && next.key === rejected.key) return;
    try {
      const cert = checkPair(next);
      material = next;
      rejected = undefined;
      log.info(
        { certFile, via, notAfter: cert.validTo, fingerprint256: cert.fingerprint256 },
        'serving certificate reloaded',
      );
      for (const l of listeners) l(material);
    } catch (err) {
      // A half-written rotation: keep serving the previous pair and try again on the next change or poll.
      rejected = next;
      log.warn(
        { certFile, keyFile, via, problem: (err as Error).message },
        'new certificate files are not usable yet; still serving the previous certificate',
      );
    }
  };
  // One read at a time: a poll and a watch event never interleave their reads.
  let reading: Promise<void> = Promise.resolve();
  const reload = (via: 'watch' | 'poll'): Promise<void> => (reading = reading.then(() => reloadOnce(via)));
  const schedule = (): void => {
    clearTimeout(timer);
    timer = setTimeout(() => void reload('watch'), 200);
  };
  const watchers: FSWatcher[] = [];
  for (const dir of new Set([dirname(resolve(certFile)), dirname(resolve(keyFile))])) {
    try {
      watchers.push(
        watch(dir, { persistent: false }, schedule).on('error', (err) =>
          log.warn({ dir, err }, 'cannot watch certificate directory; relying on the poll'),
        ),
      );
    } catch (err) {
      // ENOSPC (the inotify watch limit) and the like: the poll alone still finds every change.
      log.warn({ dir, err, pollIntervalMs }, 'cannot watch certificate directory; relying on the poll');
    }
  }
  const poll = setInterval(() => void reload('poll'), pollIntervalMs).unref();
  const source: TlsSource = {
    get material() {
      return material;
    },
    onChange: (l) => listeners.push(l),
    close: () => {
      closed = true;
      clearTimeout(timer);
      clearInterval(poll);
      for (const w of watchers) w.close();
      untrackServed(source);
    },
  };
  trackServed(source);
  return source;
}
