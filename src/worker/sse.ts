/**
 * The body of a streamed answer: server-sent events handed to the runtime only when it asks for
 * them (a ReadableStream with no queue of its own: each `pull` is the runtime wanting the next
 * bytes), with up to `bufferChunks` events waiting on our side so generation runs ahead of the
 * network.
 *
 * Knowing that the client is gone matters: the generation holds its engine's queue until it ends.
 * What says so, measured under `wrangler dev` (test/api-chat-abort.test.ts): the runtime cancelling
 * the body or the request's signal would, but neither fires there when a client disconnects; what
 * does happen is that the runtime stops asking for bytes within ~100 ms. A live client's runtime
 * asks again as soon as it has written the last bytes (a full socket buffer takes seconds of not
 * reading to build at token rates). So: bytes that wait `stallMs` without being asked for mean the
 * client is gone. The check runs on a timer, so it holds while generation waits for its turn (with
 * `comment()` heartbeats) and while it runs (it yields to the event loop every few tokens).
 */
export class ClientGoneError extends Error {
  override readonly name = "ClientGoneError";
}

export interface SseBodyOptions {
  /** Events that may wait for the runtime before `event()` waits too. */
  bufferChunks: number;
  /** How long bytes may wait for the runtime to ask for them before the client counts as gone, ms. */
  stallMs: number;
  /** Called once, when the client is found to be gone (cancelled or stalled). */
  onGone?: () => void;
}

export class SseBody {
  readonly stream: ReadableStream<Uint8Array>;
  private ctrl: ReadableStreamDefaultController<Uint8Array> | null = null;
  private gone: ClientGoneError | null = null;
  private closed = false;
  /** Encoded events the runtime has not asked for yet. */
  private pending: Uint8Array[] = [];
  /** Resolves the runtime's outstanding pull (it wants bytes now), or null. */
  private demand: (() => void) | null = null;
  /** Wakes a writer waiting for room. */
  private room: (() => void) | null = null;
  private stallTimer: ReturnType<typeof setTimeout> | null = null;
  private readonly encoder = new TextEncoder();

  constructor(private readonly opts: SseBodyOptions) {
    this.stream = new ReadableStream<Uint8Array>(
      {
        start: (ctrl) => {
          this.ctrl = ctrl;
        },
        pull: () =>
          new Promise<void>((resolve) => {
            this.demand = resolve;
            this.flush();
          }),
        cancel: () => {
          this.fail(new ClientGoneError("the client cancelled the stream"));
        },
      },
      new CountQueuingStrategy({ highWaterMark: 0 }),
    );
  }

  /** Whether the client went away. */
  get isGone(): boolean {
    return this.gone !== null;
  }

  /** Sends `data: <data>`; waits while `bufferChunks` events are waiting for the runtime. */
  async event(data: string): Promise<void> {
    await this.write(`data: ${data}\n\n`);
  }

  /** Sends an SSE comment (clients ignore it): a heartbeat that finds out whether anyone reads. */
  async comment(text: string): Promise<void> {
    await this.write(`: ${text}\n\n`);
  }

  private async write(text: string): Promise<void> {
    if (this.gone) throw this.gone;
    if (this.closed) throw new Error("the stream is closed");
    this.pending.push(this.encoder.encode(text));
    this.flush();
    if (this.pending.length > 0 && this.stallTimer === null) {
      this.stallTimer = setTimeout(() => {
        this.stallTimer = null;
        if (this.pending.length > 0)
          this.fail(new ClientGoneError(`the client took nothing for ${this.opts.stallMs} ms`));
      }, this.opts.stallMs);
    }
    while (this.pending.length > this.opts.bufferChunks && !this.gone) {
      await new Promise<void>((resolve) => {
        this.room = resolve;
      });
    }
    if (this.gone) throw this.gone;
  }

  /** Hands what is pending to an outstanding pull, as one chunk. */
  private flush(): void {
    if (!this.demand || this.pending.length === 0 || this.gone) {
      if (this.closed && this.pending.length === 0) this.finish();
      return;
    }
    const parts = this.pending;
    this.pending = [];
    const bytes = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      bytes.set(p, at);
      at += p.length;
    }
    this.ctrl!.enqueue(bytes);
    const resolve = this.demand;
    this.demand = null;
    resolve();
    if (this.stallTimer !== null) {
      clearTimeout(this.stallTimer);
      this.stallTimer = null;
    }
    this.room?.();
    this.room = null;
    if (this.closed) this.finish();
  }

  /** Ends the stream normally, once what was written has been taken. */
  close(): void {
    if (this.closed || this.gone) return;
    this.closed = true;
    if (this.pending.length === 0) this.finish();
  }

  private finish(): void {
    try {
      this.ctrl!.close();
    } catch {
      // already closed or errored
    }
  }

  private fail(e: ClientGoneError): void {
    if (this.gone) return;
    this.gone = e;
    this.pending = [];
    if (this.stallTimer !== null) clearTimeout(this.stallTimer);
    this.stallTimer = null;
    this.room?.();
    this.room = null;
    this.demand?.();
    this.demand = null;
    try {
      this.ctrl!.error(e);
    } catch {
      // cancelled streams cannot be errored; nothing to do
    }
    this.opts.onGone?.();
  }
}
