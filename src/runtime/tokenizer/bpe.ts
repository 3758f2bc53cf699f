/**
 * The BPE model of Hugging Face tokenizers (models/bpe): a word starts as one symbol per character
 * (byte-fallback tokens or <unk> for characters outside the vocabulary) and the adjacent pair with the
 * lowest merge rank is merged first, ties to the leftmost pair.
 */
import { Heap } from "./heap.ts";
import { PairTable } from "./pair-table.ts";
import { TokenizerError } from "./types.ts";
import { bytePiece, utf8Bytes } from "./utf8.ts";

export interface BpeOptions {
  vocab: ReadonlyMap<string, number>;
  /** In rank order. */
  merges: readonly (readonly [string, string])[];
  unkId: number | null;
  /** Consecutive unknown characters become a single <unk>. */
  fuseUnk: boolean;
  /** Characters outside the vocabulary become their UTF-8 bytes as "<0xXX>" tokens. */
  byteFallback: boolean;
  /** A word that is itself in the vocabulary is emitted whole, without merging (Llama 3). */
  ignoreMerges: boolean;
  /**
   * llama.cpp (llm_tokenizer_bpe): a character outside the vocabulary (no byte token, no <unk>) stays
   * a symbol that nothing merges with, and is dropped only at the end; HF drops it before merging,
   * so its neighbours may merge across it (" \x14." is " ", "." in llama.cpp, " ." in HF).
   */
  unknownSplitsMerges?: boolean;
}

/** A symbol that never merges (an unknown character under unknownSplitsMerges). */
const BARRIER = -1;

interface Candidate {
  rank: number;
  left: number;
  right: number;
  leftId: number;
  rightId: number;
  result: number;
}

const candidateBefore = (a: Candidate, b: Candidate) =>
  a.rank < b.rank || (a.rank === b.rank && a.left < b.left);

const CACHE_LIMIT = 50_000;

export class BpeModel {
  private readonly merges: PairTable;
  private readonly byteIds: (number | undefined)[] = [];
  private readonly cache = new Map<string, number[]>();

  constructor(private readonly options: BpeOptions) {
    this.merges = new PairTable(options.merges.length);
    options.merges.forEach(([left, right], rank) => {
      const leftId = options.vocab.get(left);
      const rightId = options.vocab.get(right);
      const result = options.vocab.get(left + right);
      if (leftId === undefined || rightId === undefined || result === undefined) {
        throw new TokenizerError(
          `tokenizer.json model.merges: merge ${JSON.stringify([left, right])} uses a token that is not in the vocabulary`,
        );
      }
      // The first (lowest-rank) occurrence of a pair wins, as in HF.
      this.merges.setIfAbsent(leftId, rightId, rank, result);
    });
    if (options.byteFallback) {
      for (let b = 0; b < 256; b++) this.byteIds[b] = options.vocab.get(bytePiece(b));
    }
  }

  /** Appends the ids for one pre-tokenized word. */
  tokenize(word: string, out: number[]): void {
    if (word.length === 0) return;
    let ids = this.cache.get(word);
    if (!ids) {
      ids = this.tokenizeUncached(word);
      if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
      this.cache.set(word, ids);
    }
    for (const id of ids) out.push(id);
  }

  private tokenizeUncached(word: string): number[] {
    const { vocab, unkId } = this.options;
    if (this.options.ignoreMerges) {
      const whole = vocab.get(word);
      if (whole !== undefined) return [whole];
    }

    const symbols: number[] = [];
    let lastWasUnk = false;
    for (const ch of word) {
      const id = vocab.get(ch);
      if (id !== undefined) {
        symbols.push(id);
        lastWasUnk = false;
        continue;
      }
      const bytes = this.options.byteFallback ? this.byteTokens(ch) : null;
      if (bytes) {
        symbols.push(...bytes);
        lastWasUnk = false;
      } else if (unkId !== null) {
        if (!(this.options.fuseUnk && lastWasUnk)) symbols.push(unkId);
        lastWasUnk = true;
      }
      // No byte token and no <unk>: HF drops the character, llama.cpp keeps it as a barrier first.
      else if (this.options.unknownSplitsMerges) symbols.push(BARRIER);
    }
    const merged = this.mergeSymbols(symbols);
    return merged.includes(BARRIER) ? merged.filter((id) => id !== BARRIER) : merged;
  }

  private byteTokens(ch: string): number[] | null {
    const ids: number[] = [];
    for (const b of utf8Bytes(ch)) {
      const id = this.byteIds[b];
      if (id === undefined) return null;
      ids.push(id);
    }
    return ids;
  }

  private mergeSymbols(ids: number[]): number[] {
    const n = ids.length;
    if (n < 2) return ids;
    const prev = new Int32Array(n);
    const next = new Int32Array(n);
    const alive = new Uint8Array(n).fill(1);
    for (let i = 0; i < n; i++) {
      prev[i] = i - 1;
      next[i] = i + 1 < n ? i + 1 : -1;
    }
    const queue = new Heap<Candidate>(candidateBefore);
    const consider = (left: number, right: number) => {
      if (left < 0 || right < 0) return;
      const leftId = ids[left]!;
      const rightId = ids[right]!;
      if (leftId === BARRIER || rightId === BARRIER) return;
      const slot = this.merges.find(leftId, rightId);
      if (slot >= 0) {
        queue.push({
          rank: this.merges.rankAt(slot),
          left,
          right,
          leftId,
          rightId,
          result: this.merges.resultAt(slot),
        });
      }
    };
    for (let i = 0; i + 1 < n; i++) consider(i, i + 1);

    for (let c = queue.pop(); c; c = queue.pop()) {
      const { left, right } = c;
      // Skip candidates made stale by an earlier merge on either side.
      if (
        !alive[left] ||
        !alive[right] ||
        next[left] !== right ||
        ids[left] !== c.leftId ||
        ids[right] !== c.rightId
      ) {
        continue;
      }
      ids[left] = c.result;
      alive[right] = 0;
      next[left] = next[right]!;
      if (next[right]! >= 0) prev[next[right]!] = left;
      consider(prev[left]!, left);
      consider(left, next[left]!);
    }

    const out: number[] = [];
    for (let i = 0; i !== -1; i = next[i]!) out.push(ids[i]!);
    return out;
  }
}
