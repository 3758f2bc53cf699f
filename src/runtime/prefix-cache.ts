/**
 * Prefix cache (issue 13): the KV rows of recent sequences on one engine (one variant), so a request
 * whose prompt starts like a cached sequence (the next turn of a conversation) prefills only the rest.
 * KV row i depends only on tokens 0..i, so any common prefix is reusable, not only an exact extension.
 * Bounded by bytes, least recently used first out.
 */

/** KV rows of positions 0..length-1 as an engine exported them (layout private to that engine). */
export interface KvSnapshot {
  length: number;
  bytes: Uint8Array;
}

/** What an engine offers so a prefix cache can save and restore its KV rows. */
export interface KvTransfer<S> {
  exportKv(state: S, length?: number): KvSnapshot;
  /** Writes the first `length` positions of `kv` into a fresh state. */
  importKv(state: S, kv: KvSnapshot, length: number): void;
}

export function supportsKvTransfer<S>(model: object): model is KvTransfer<S> {
  const m = model as Partial<KvTransfer<S>>;
  return typeof m.exportKv === "function" && typeof m.importKv === "function";
}

interface Entry {
  tokens: number[];
  kv: KvSnapshot;
}

export interface PrefixHit {
  kv: KvSnapshot;
  /** Prompt tokens whose KV rows the snapshot holds (at most prompt length - 1: the last is run for logits). */
  reuse: number;
}

export class PrefixCache {
  /** Most recently used last. */
  private readonly entries: Entry[] = [];
  private used = 0;

  /**
   * @param maxBytes budget for all snapshots (bytes of KV rows); a sequence bigger than it is not kept.
   * @param minTokens sequences shorter than this are not worth a slot.
   */
  constructor(
    readonly maxBytes: number,
    readonly minTokens = 8,
  ) {
    if (!(maxBytes >= 0)) throw new RangeError(`maxBytes must be >= 0, got ${maxBytes}`);
  }

  get bytes(): number {
    return this.used;
  }

  get size(): number {
    return this.entries.length;
  }

  /** The entry sharing the longest prefix with `prompt`, or null when none shares a token. */
  lookup(prompt: readonly number[]): PrefixHit | null {
    const hit = this.longest(prompt);
    if (!hit) return null;
    this.touch(hit.entry);
    return { kv: hit.entry.kv, reuse: hit.reuse };
  }

  /** Prompt tokens `lookup` would serve now (0 when none), without marking the entry used: for planning. */
  peek(prompt: readonly number[]): number {
    return this.longest(prompt)?.reuse ?? 0;
  }

  private longest(prompt: readonly number[]): { entry: Entry; reuse: number } | null {
    let best: Entry | null = null;
    let bestLen = 0;
    for (const e of this.entries) {
      const n = commonPrefix(e.tokens, prompt);
      if (n > bestLen) {
        best = e;
        bestLen = n;
      }
    }
    const reuse = Math.min(bestLen, prompt.length - 1);
    return best && reuse > 0 ? { entry: best, reuse } : null;
  }

  /** Keeps the KV rows of `tokens` (snapshot length must equal tokens.length); evicts LRU to fit. */
  store(tokens: readonly number[], kv: KvSnapshot): void {
    if (kv.length !== tokens.length)
      throw new RangeError(`snapshot of ${kv.length} positions for ${tokens.length} tokens`);
    if (tokens.length < this.minTokens || kv.bytes.byteLength > this.maxBytes) return;
    // An entry this one extends (the previous turn) or duplicates is redundant now.
    for (let i = this.entries.length - 1; i >= 0; i--) {
      const e = this.entries[i]!;
      if (commonPrefix(e.tokens, tokens) === e.tokens.length) this.remove(i);
    }
    while (this.used + kv.bytes.byteLength > this.maxBytes && this.entries.length > 0) this.remove(0);
    this.entries.push({ tokens: [...tokens], kv });
    this.used += kv.bytes.byteLength;
  }

  clear(): void {
    this.entries.length = 0;
    this.used = 0;
  }

  private touch(e: Entry): void {
    const i = this.entries.indexOf(e);
    this.entries.splice(i, 1);
    this.entries.push(e);
  }

  private remove(i: number): void {
    const [e] = this.entries.splice(i, 1);
    this.used -= e!.kv.bytes.byteLength;
  }
}

function commonPrefix(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

/** What an engine offers to continue from the KV rows its last sequence left in place. */
export interface KvResume<S> {
  /**
   * A new sequence holding the first `keep` positions of `prev` (no copy: the rows are still in the
   * engine's KV cache), or null when `prev` is no longer the engine's latest sequence (its rows may
   * have been overwritten since).
   */
  resumeState(prev: S, maxTokens: number, keep: number): S | null;
}

export function supportsKvResume<S>(model: object): model is KvResume<S> {
  return typeof (model as Partial<KvResume<S>>).resumeState === "function";
}

/**
 * A prefix cache of zero extra bytes: the engine's own KV rows of its last finished sequence. Where
 * no room is left for a PrefixCache (the isolate budget holds the engine and little more), the next
 * turn of a conversation still prefills only its new tokens, as long as no other sequence ran on the
 * engine in between (the engine's state generation says so: ../runtime/engine-core.ts).
 */
export class ResidentPrefix<S = unknown> {
  /** The last sequence that ran on the engine and the tokens its rows hold. */
  last: { state: S; tokens: number[] } | null = null;

  /** Prompt tokens the last sequence's rows can serve (at most prompt length - 1: the last is run for logits). */
  reusable(prompt: readonly number[]): number {
    const t = this.last?.tokens;
    if (!t) return 0;
    const max = Math.min(t.length, prompt.length - 1);
    let n = 0;
    while (n < max && t[n] === prompt[n]) n++;
    return n;
  }
}
