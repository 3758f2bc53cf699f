/**
 * A FIFO lock: one generation at a time per engine (an engine has one KV cache), served in arrival
 * order. Bounded: past `maxWaiting` callers the isolate is overloaded and says so (429).
 */
export class OverloadedError extends Error {}

export class FairQueue {
  private busy = false;
  private readonly waiting: (() => void)[] = [];

  constructor(readonly maxWaiting: number) {}

  get length(): number {
    return this.waiting.length + (this.busy ? 1 : 0);
  }

  /** Resolves with a release function once it is the caller's turn. */
  async acquire(signal?: AbortSignal): Promise<() => void> {
    if (this.busy) {
      if (this.waiting.length >= this.maxWaiting) throw new OverloadedError("too many requests queued");
      await new Promise<void>((resolve, reject) => {
        const turn = () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        };
        const onAbort = () => {
          const i = this.waiting.indexOf(turn);
          if (i >= 0) this.waiting.splice(i, 1);
          reject(signal!.reason);
        };
        signal?.addEventListener("abort", onAbort, { once: true });
        this.waiting.push(turn);
      });
    }
    this.busy = true;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next) next();
      else this.busy = false;
    };
  }
}
