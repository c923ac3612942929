import { CONTENT_HASH_PREFIX_CHARS, type ConfirmMetrics } from './metrics.ts';

/** A source as the tracker sees it: its metrics label and the digest of its files on disk now. */
interface TrackedSource {
  id: string;
  digest(): string | undefined;
}

/**
 * Per source, whether the content on disk is what the app last confirmed applying: `config_reloader_source_applied`
 * and `config_reloader_source_applied_content_info`. The content a source had when it first synced counts as
 * applied (the app read it when it started), unless the reloader had to change it first; after that, only a
 * delivery the app confirmed moves the applied content.
 */
export class AppliedTracker {
  private readonly sources: readonly TrackedSource[];
  private readonly metrics: ConfirmMetrics;
  private readonly applied: Array<string | undefined>;
  private readonly pending: boolean[];

  constructor(sources: readonly TrackedSource[], metrics: ConfirmMetrics) {
    this.sources = sources;
    this.metrics = metrics;
    this.applied = sources.map(() => undefined);
    this.pending = sources.map(() => false);
  }

  /** Source `i` first synced: what it holds is what the app started with, unless a change is already pending. */
  synced(i: number): void {
    if (this.pending[i] || this.applied[i] !== undefined) return;
    this.record(i, this.sources[i]?.digest());
  }

  /** Source `i` changed on disk: not applied until the app confirms a delivery that included it. */
  changed(i: number): void {
    this.pending[i] = true;
    this.metrics.sourceApplied.set(0, { source: (this.sources[i] as TrackedSource).id });
  }

  /** What every source holds now, taken just before a delivery. */
  snapshot(): Array<string | undefined> {
    return this.sources.map((s) => s.digest());
  }

  /** The app confirmed the delivery of `snapshot`: that is the applied content of every source. */
  confirmed(snapshot: ReadonlyArray<string | undefined>): void {
    snapshot.forEach((digest, i) => this.record(i, digest));
  }

  private record(i: number, digest: string | undefined): void {
    const source = this.sources[i] as TrackedSource;
    this.applied[i] = digest;
    if (digest !== undefined)
      this.metrics.appliedContent.replaceFor(source.id, digest.slice(0, CONTENT_HASH_PREFIX_CHARS));
    // A change written after the snapshot is still pending.
    const current = source.digest() === digest;
    this.pending[i] = !current;
    this.metrics.sourceApplied.set(current ? 1 : 0, { source: source.id });
  }
}
