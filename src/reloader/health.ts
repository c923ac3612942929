/**
 * The watch's health, for /healthz: healthy while at least one watch is open or the API server answered
 * successfully within the timeout. A watch that died silently ends at its idle timeout, reconnects fail,
 * and the kubelet restarts the container instead of trusting a process that merely runs.
 */
export class ApiHealth {
  private readonly timeoutMs: number;
  private readonly now: () => number;
  private open = 0;
  private lastContact: number;

  constructor(timeoutMs: number, now: () => number = Date.now) {
    this.timeoutMs = timeoutMs;
    this.now = now;
    this.lastContact = now(); // a process that just started gets the full timeout to connect
  }

  watchOpened(): void {
    this.open++;
    this.lastContact = this.now();
  }

  watchClosed(): void {
    this.open--;
    this.lastContact = this.now();
  }

  /** A successful answer or a watch event from the API server. */
  contact(): void {
    this.lastContact = this.now();
  }

  get openWatches(): number {
    return this.open;
  }

  check(): { healthy: boolean; openWatches: number; lastContactSecondsAgo: number } {
    const ago = this.now() - this.lastContact;
    return {
      healthy: this.open > 0 || ago <= this.timeoutMs,
      openWatches: this.open,
      lastContactSecondsAgo: Math.round(ago / 100) / 10,
    };
  }
}
