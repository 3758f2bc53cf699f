/**
 * Open-addressing hash table from a pair of token ids to (rank, merged id). A Map keyed by
 * `left * n + right` would hash heap numbers for large vocabularies (150k² > 2³¹); this keeps
 * 150k merges to a few typed arrays and makes building and lookups cheap.
 */
export class PairTable {
  private readonly lefts: Int32Array;
  private readonly rights: Int32Array;
  private readonly ranks: Int32Array;
  private readonly results: Int32Array;
  private readonly mask: number;

  constructor(capacity: number) {
    let size = 16;
    while (size < capacity * 2) size *= 2; // load factor <= 0.5
    this.mask = size - 1;
    this.lefts = new Int32Array(size).fill(-1);
    this.rights = new Int32Array(size);
    this.ranks = new Int32Array(size);
    this.results = new Int32Array(size);
  }

  private slot(left: number, right: number): number {
    let i = (Math.imul(left, 0x9e3779b1) ^ Math.imul(right, 0x85ebca6b)) & this.mask;
    while (this.lefts[i] !== -1 && (this.lefts[i] !== left || this.rights[i] !== right))
      i = (i + 1) & this.mask;
    return i;
  }

  /** Keeps the first value stored for a pair (the lowest rank when filled in rank order). */
  setIfAbsent(left: number, right: number, rank: number, result: number): void {
    const i = this.slot(left, right);
    if (this.lefts[i] !== -1) return;
    this.lefts[i] = left;
    this.rights[i] = right;
    this.ranks[i] = rank;
    this.results[i] = result;
  }

  /** Slot of the pair, or -1; read it with rankAt/resultAt. */
  find(left: number, right: number): number {
    const i = this.slot(left, right);
    return this.lefts[i] === -1 ? -1 : i;
  }

  rankAt(slot: number): number {
    return this.ranks[slot]!;
  }

  resultAt(slot: number): number {
    return this.results[slot]!;
  }
}
