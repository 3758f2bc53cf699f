/**
 * Work one request starts and others wait for (a variant load, a tokenizer read), in workerd, where
 * each request has its own I/O context: a request whose only pending work is a promise that another
 * request's I/O settles is cancelled as "hung", and promise reactions across contexts do not
 * reliably resume the waiter. So the starting request records the outcome in plain fields (from its
 * own context) and the others poll those fields with timers of their own, giving up after
 * `timeoutMs` in case the starting request's context went away and the work never ends.
 */
export class SharedWaitTimeout extends Error {
  override readonly name = "SharedWaitTimeout";
}

export class SharedTask<T> {
  /** For the request that started the work: await this directly. */
  readonly promise: Promise<T>;
  private outcome: { ok: true; value: T } | { ok: false; error: unknown } | null = null;

  constructor(run: () => Promise<T>) {
    this.promise = run();
    this.promise.then(
      (value) => {
        this.outcome = { ok: true, value };
      },
      (error: unknown) => {
        this.outcome = { ok: false, error };
      },
    );
  }

  get settled(): boolean {
    return this.outcome !== null;
  }

  /** For any other request: the outcome, polled every `pollMs`. */
  async wait(timeoutMs: number, pollMs = 5): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    while (this.outcome === null) {
      if (Date.now() > deadline) throw new SharedWaitTimeout(`gave up after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, pollMs));
    }
    if (this.outcome.ok) return this.outcome.value;
    throw this.outcome.error;
  }
}
