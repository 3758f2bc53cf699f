/**
 * The body of a streamed answer: server-sent events in a ReadableStream that the runtime pulls,
 * with room for `bufferChunks` events so generation runs ahead of the network.
 *
 * Knowing that the client is gone matters: the generation holds its engine's queue until it ends.
 * The runtime cancelling the body says so, and so does the request's signal (enable_request_signal)
 * where it fires; but workerd can also just stop pulling the body of a client that disconnected,
 * without cancelling it. So a write waits while the buffer is full, and a client that takes nothing
 * for `stallMs` counts as gone: the write rejects with ClientGoneError and the stream errors.
 */
export class ClientGoneError extends Error {
  override readonly name = "ClientGoneError";
}

export interface SseBodyOptions {
  bufferChunks: number;
  stallMs: number;
  /** Called once, when the client is found to be gone (cancelled or stalled). */
  onGone?: () => void;
}

export class SseBody {
  readonly stream: ReadableStream<Uint8Array>;
  private ctrl: ReadableStreamDefaultController<Uint8Array> | null = null;
  private gone: ClientGoneError | null = null;
  private closed = false;
  private wake: (() => void) | null = null;
  private readonly encoder = new TextEncoder();

  constructor(private readonly opts: SseBodyOptions) {
    this.stream = new ReadableStream<Uint8Array>(
      {
        start: (ctrl) => {
          this.ctrl = ctrl;
        },
        pull: () => {
          this.wake?.();
        },
        cancel: () => {
          this.fail(new ClientGoneError("the client cancelled the stream"));
        },
      },
      new CountQueuingStrategy({ highWaterMark: opts.bufferChunks }),
    );
  }

  /** Whether the client went away. */
  get isGone(): boolean {
    return this.gone !== null;
  }

  /** Sends `data: <data>` and waits while the buffer is full. */
  async event(data: string): Promise<void> {
    if (this.gone) throw this.gone;
    if (this.closed) throw new Error("the stream is closed");
    const ctrl = this.ctrl!;
    ctrl.enqueue(this.encoder.encode(`data: ${data}\n\n`));
    while ((ctrl.desiredSize ?? 0) <= 0) {
      const drained = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => {
          this.wake = null;
          resolve(false);
        }, this.opts.stallMs);
        this.wake = () => {
          clearTimeout(timer);
          this.wake = null;
          resolve(true);
        };
      });
      if (this.gone) throw this.gone;
      if (!drained && (ctrl.desiredSize ?? 0) <= 0) {
        this.fail(new ClientGoneError(`the client read nothing for ${this.opts.stallMs} ms`));
        throw this.gone!;
      }
    }
  }

  /** Ends the stream normally (what was written is still delivered). */
  close(): void {
    if (this.closed || this.gone) return;
    this.closed = true;
    try {
      this.ctrl!.close();
    } catch {
      // already closed or errored
    }
  }

  private fail(e: ClientGoneError): void {
    if (this.gone) return;
    this.gone = e;
    this.wake?.();
    try {
      this.ctrl!.error(e);
    } catch {
      // cancelled streams cannot be errored; nothing to do
    }
    this.opts.onGone?.();
  }
}
