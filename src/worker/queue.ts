/**
 * A FIFO lock: one generation at a time per engine (an engine has one KV cache), served in arrival
 * order. Bounded: past `maxWaiting` callers the isolate is overloaded and says so (429).
 *
 * Waiters are other requests, and in workerd every request has its own I/O context, which shapes
 * this lock:
 * - A request whose only pending work is a promise that another request will resolve is cancelled
 *   by workerd as "hung" (a plain promise-based lock 500s requests that have to wait), and a promise
 *   resolved from another request's context does not reliably resume its waiter either (under load,
 *   waiters woken that way were cancelled as hung too). So no request touches another's promises or
 *   timers: a waiter polls for its turn with its own timer, the next in line often (`headPollMs`,
 *   which bounds the hand-over delay), the others less (`pollMs`).
 * - A waiter's context can vanish (workerd dropped the request: its code never runs again). A turn
 *   handed to a waiter that does not take it within `claimMs` (while the other waiters kept
 *   polling: a busy event loop delays everyone alike and takes no turn away) is taken back and
 *   passed on, so a dead waiter cannot stall the queue for good.
 * The holder's side is the caller's job: release in a `finally`, and keep the holding work alive
 * past a client disconnect (ctx.waitUntil) so that `finally` runs.
 */
export class OverloadedError extends Error {}

interface Ticket {
  state: "waiting" | "granted" | "held" | "revoked";
  grantedAt: number;
  /** The queue's poll count when the turn was granted. */
  grantedAtPoll: number;
}

/** Polls by other waiters since a grant before an untaken turn can be taken back. */
const CLAIM_POLLS = 20;

export interface FairQueueOptions {
  /** How often the next waiter in line checks for its turn, ms. */
  headPollMs?: number;
  /** How often the waiters behind it check, ms. */
  pollMs?: number;
  /** How long a granted turn may go untaken before it passes to the next waiter, ms. */
  claimMs?: number;
}

export class FairQueue {
  private holder: Ticket | null = null;
  private readonly waiting: Ticket[] = [];
  /** Waiter polls so far (evidence that the event loop ran). */
  private polls = 0;
  private readonly headPollMs: number;
  private readonly pollMs: number;
  private readonly claimMs: number;

  constructor(
    readonly maxWaiting: number,
    opts: FairQueueOptions = {},
  ) {
    this.headPollMs = opts.headPollMs ?? 2;
    this.pollMs = opts.pollMs ?? 25;
    this.claimMs = opts.claimMs ?? 2000;
  }

  /** Requests holding or waiting for the lock. */
  get length(): number {
    return this.waiting.length + (this.holder ? 1 : 0);
  }

  /** Resolves with a release function once it is the caller's turn. */
  async acquire(signal?: AbortSignal): Promise<() => void> {
    signal?.throwIfAborted();
    this.reclaim();
    const t: Ticket = { state: "waiting", grantedAt: 0, grantedAtPoll: 0 };
    if (!this.holder && this.waiting.length === 0) {
      t.state = "held";
      this.holder = t;
      return this.releaser(t);
    }
    if (this.waiting.length >= this.maxWaiting) throw new OverloadedError("too many requests queued");
    this.waiting.push(t);
    try {
      for (;;) {
        if (t.state === "granted") {
          t.state = "held";
          return this.releaser(t);
        }
        if (t.state !== "waiting")
          throw new OverloadedError("the turn passed on before this request took it");
        signal?.throwIfAborted();
        const ms = this.waiting[0] === t ? this.headPollMs : this.pollMs;
        await new Promise<void>((resolve) => setTimeout(resolve, ms));
        this.polls++;
        if (t.state === "waiting") this.reclaim(); // a turn that came meanwhile is taken above
      }
    } catch (e) {
      this.abandon(t);
      throw e;
    }
  }

  private releaser(t: Ticket): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (this.holder === t) this.handOff();
    };
  }

  /** Gives the lock to the next waiter (or frees it). */
  private handOff(): void {
    const next = this.waiting.shift() ?? null;
    this.holder = next;
    if (next) {
      next.state = "granted"; // it sees this on its next poll
      next.grantedAt = Date.now();
      next.grantedAtPoll = this.polls;
    }
  }

  /** Takes back a turn that was handed out but not taken in time. */
  private reclaim(): void {
    const now = Date.now();
    while (
      this.holder?.state === "granted" &&
      now - this.holder.grantedAt > this.claimMs &&
      this.polls - this.holder.grantedAtPoll >= CLAIM_POLLS
    ) {
      this.holder.state = "revoked";
      this.handOff();
    }
  }

  /** A waiter that gives up (aborted, or its turn was revoked) leaves the queue. */
  private abandon(t: Ticket): void {
    const i = this.waiting.indexOf(t);
    if (i >= 0) this.waiting.splice(i, 1);
    if (this.holder === t) this.handOff();
    t.state = "revoked";
  }
}
