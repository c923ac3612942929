import { readFileSync } from 'node:fs';

/** How often a token file is re-read: bound service-account tokens rotate (the kubelet refreshes them hourly). */
export const TOKEN_REFRESH_MS = 60_000;

/**
 * A bearer token, either fixed (kubeconfig `token`) or read from a file (`tokenFile`, the in-cluster token)
 * and re-read once it is older than a minute or after the API server answered 401.
 */
export class BearerToken {
  private readonly file: string | undefined;
  private readonly refreshMs: number;
  private readonly now: () => number;
  private value: string | undefined;
  private readAt = -Infinity;

  constructor(
    source: { value: string } | { file: string },
    opts: { refreshMs?: number; now?: () => number } = {},
  ) {
    this.file = 'file' in source ? source.file : undefined;
    this.value = 'value' in source ? source.value : undefined;
    this.refreshMs = opts.refreshMs ?? TOKEN_REFRESH_MS;
    this.now = opts.now ?? Date.now;
  }

  /** True when invalidating can yield a different token (worth one retry after a 401). */
  get rotates(): boolean {
    return this.file !== undefined;
  }

  get(): string {
    if (this.file !== undefined && this.now() - this.readAt >= this.refreshMs) {
      try {
        this.value = readFileSync(this.file, 'utf8').trim();
      } catch (err) {
        // Keep the last good token rather than failing every request while a projected volume is updated.
        if (this.value === undefined)
          throw new Error(
            `cannot read the token file ${this.file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
          );
      }
      this.readAt = this.now();
    }
    return this.value ?? '';
  }

  invalidate(): void {
    this.readAt = -Infinity;
  }
}
