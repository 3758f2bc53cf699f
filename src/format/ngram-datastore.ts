/**
 * A model-output n-gram datastore (issue 13's third free draft source, in the spirit of REST, He et
 * al. 2023, and lookahead decoding's n-gram pool): for short contexts (the last n = minN..maxN
 * tokens), the continuation the variant itself most often produced after them when it answered the
 * build's calibration chat prompts greedily. A draft from it only proposes tokens; verification
 * decides, so output stays exactly the variant's.
 *
 * Byte layout (little-endian), version 1:
 *   magic "SLMNGDS1" (8 bytes)
 *   u32 vocabSize, u32 entryCount, u8 tokenBytes (2 or 4), u8 minN, u8 maxN, u8 reserved (0)
 *   entryCount entries, sorted by (n, key tokens) with no duplicates:
 *     u8 n (minN..maxN), u8 len (1..MAX_CONTINUATION), u16 count (times the key occurred, saturated),
 *     u16 hits (times its continuation's first token followed it, 1..count),
 *     n key tokens, len continuation tokens (tokenBytes each, < vocabSize)
 * parseNgramDatastore checks every field and throws NgramDatastoreError on anything else.
 */
export const NGRAM_DATASTORE_MAGIC = "SLMNGDS1";
/** Longest continuation an entry may hold (the drafter drafts at most DraftSettings.maxDraft <= 15). */
export const MAX_CONTINUATION = 15;
const HEADER_BYTES = 8 + 4 + 4 + 4;

export class NgramDatastoreError extends Error {
  override name = "NgramDatastoreError";
}

/** One entry: after `key`, the variant most often went on with `continuation`. */
export interface NgramEntry {
  key: number[];
  continuation: number[];
  /** Times the key occurred in the calibration answers (saturated at 65535). */
  count: number;
  /** Times continuation[0] followed it (<= count). */
  hits: number;
}

/** Encodes entries in the layout above (sorted here). Throws NgramDatastoreError on entries the layout cannot hold. */
export function encodeNgramDatastore(entries: readonly NgramEntry[], vocabSize: number): Uint8Array {
  if (!Number.isInteger(vocabSize) || vocabSize <= 0)
    throw new NgramDatastoreError(`bad vocabSize ${vocabSize}`);
  if (entries.length === 0) throw new NgramDatastoreError("no entries");
  const tokenBytes = vocabSize <= 0x10000 ? 2 : 4;
  const sorted = [...entries].sort(compareEntries);
  let minN = 255;
  let maxN = 0;
  let size = HEADER_BYTES;
  for (const [i, e] of sorted.entries()) {
    checkEntry(e, vocabSize);
    if (i > 0 && compareEntries(sorted[i - 1]!, e) === 0)
      throw new NgramDatastoreError(`duplicate key ${e.key.join(",")}`);
    minN = Math.min(minN, e.key.length);
    maxN = Math.max(maxN, e.key.length);
    size += 6 + tokenBytes * (e.key.length + e.continuation.length);
  }
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  out.set(new TextEncoder().encode(NGRAM_DATASTORE_MAGIC), 0);
  dv.setUint32(8, vocabSize, true);
  dv.setUint32(12, sorted.length, true);
  out.set([tokenBytes, minN, maxN, 0], 16);
  let p = HEADER_BYTES;
  const put = (t: number) => {
    if (tokenBytes === 2) dv.setUint16(p, t, true);
    else dv.setUint32(p, t, true);
    p += tokenBytes;
  };
  for (const e of sorted) {
    out[p] = e.key.length;
    out[p + 1] = e.continuation.length;
    dv.setUint16(p + 2, e.count, true);
    dv.setUint16(p + 4, e.hits, true);
    p += 6;
    for (const t of e.key) put(t);
    for (const t of e.continuation) put(t);
  }
  return out;
}

function checkEntry(e: NgramEntry, vocabSize: number): void {
  const what = `entry ${e.key.join(",")}`;
  if (e.key.length < 1 || e.key.length > 8)
    throw new NgramDatastoreError(`${what}: key length ${e.key.length} not in 1..8`);
  if (e.continuation.length < 1 || e.continuation.length > MAX_CONTINUATION)
    throw new NgramDatastoreError(
      `${what}: continuation length ${e.continuation.length} not in 1..${MAX_CONTINUATION}`,
    );
  for (const t of [...e.key, ...e.continuation])
    if (!Number.isInteger(t) || t < 0 || t >= vocabSize)
      throw new NgramDatastoreError(`${what}: token ${t} outside the vocabulary (${vocabSize})`);
  if (!Number.isInteger(e.count) || e.count < 1 || e.count > 0xffff)
    throw new NgramDatastoreError(`${what}: count ${e.count} not in 1..65535`);
  if (!Number.isInteger(e.hits) || e.hits < 1 || e.hits > e.count)
    throw new NgramDatastoreError(`${what}: hits ${e.hits} not in 1..count`);
}

function compareEntries(a: NgramEntry, b: NgramEntry): number {
  if (a.key.length !== b.key.length) return a.key.length - b.key.length;
  for (let i = 0; i < a.key.length; i++) if (a.key[i] !== b.key[i]) return a.key[i]! - b.key[i]!;
  return 0;
}

/** A lookup's result: the stored continuation of the longest matching key (n = its length; 0 = none). */
export interface DatastoreMatch {
  tokens: number[];
  n: number;
  /** hits / count of the entry: how often its first token followed the key in calibration. */
  confidence: number;
}

const NO_MATCH: DatastoreMatch = { tokens: [], n: 0, confidence: 0 };

/**
 * A parsed datastore, held compactly so a Worker isolate pays little for it: the tokens at the
 * layout's width and ~18 bytes per entry (offsets, lengths, counts, an open-addressing hash of the
 * keys): about 1.7x the blob's bytes in all (a 1 MiB blob of 3-token keys and 8-token continuations).
 */
export class NgramDatastore {
  private constructor(
    readonly vocabSize: number,
    readonly minN: number,
    readonly maxN: number,
    /** Per entry: start of its key in `tokens`, then key length and continuation length. */
    private readonly starts: Uint32Array,
    private readonly lens: Uint8Array,
    private readonly counts: Uint16Array,
    private readonly hitCounts: Uint16Array,
    /** Keys and continuations back to back, at the layout's width (Uint16Array for vocabularies <= 65536). */
    private readonly tokens: Uint16Array | Uint32Array,
    /** Open addressing: entry index + 1, 0 = empty; size a power of two >= 2 x entries. */
    private readonly slots: Int32Array,
  ) {}

  get size(): number {
    return this.counts.length;
  }

  /** Parses the byte layout above; throws NgramDatastoreError with the first problem found. */
  static parse(bytes: Uint8Array): NgramDatastore {
    if (bytes.byteLength < HEADER_BYTES)
      throw new NgramDatastoreError(`${bytes.byteLength} bytes: shorter than the header`);
    if (new TextDecoder().decode(bytes.subarray(0, 8)) !== NGRAM_DATASTORE_MAGIC)
      throw new NgramDatastoreError("not an n-gram datastore (bad magic)");
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const vocabSize = dv.getUint32(8, true);
    const count = dv.getUint32(12, true);
    const [tokenBytes, minN, maxN, reserved] = [bytes[16]!, bytes[17]!, bytes[18]!, bytes[19]!];
    if (vocabSize === 0) throw new NgramDatastoreError("vocabSize 0");
    if (tokenBytes !== (vocabSize <= 0x10000 ? 2 : 4))
      throw new NgramDatastoreError(`token width ${tokenBytes} does not fit vocabSize ${vocabSize}`);
    if (minN < 1 || maxN > 8 || minN > maxN || reserved !== 0)
      throw new NgramDatastoreError(`bad key lengths ${minN}..${maxN}`);
    // Each entry takes at least 6 + 2 token widths: a count the bytes cannot hold is garbage.
    if (count === 0 || count > (bytes.byteLength - HEADER_BYTES) / (6 + 2 * tokenBytes))
      throw new NgramDatastoreError(`entry count ${count} does not fit ${bytes.byteLength} bytes`);
    const starts = new Uint32Array(count);
    const lens = new Uint8Array(2 * count);
    const counts = new Uint16Array(count);
    const hitCounts = new Uint16Array(count);
    const room = Math.floor((bytes.byteLength - HEADER_BYTES) / tokenBytes);
    const tokens = tokenBytes === 2 ? new Uint16Array(room) : new Uint32Array(room);
    let p = HEADER_BYTES;
    let t = 0;
    let prev: NgramEntry | null = null;
    for (let i = 0; i < count; i++) {
      if (p + 6 > bytes.byteLength) throw new NgramDatastoreError(`entry ${i}: truncated`);
      const n = bytes[p]!;
      const len = bytes[p + 1]!;
      const e: NgramEntry = {
        key: [],
        continuation: [],
        count: dv.getUint16(p + 2, true),
        hits: dv.getUint16(p + 4, true),
      };
      p += 6;
      if (n < minN || n > maxN)
        throw new NgramDatastoreError(`entry ${i}: key length ${n} not in ${minN}..${maxN}`);
      if (p + (n + len) * tokenBytes > bytes.byteLength)
        throw new NgramDatastoreError(`entry ${i}: truncated`);
      starts[i] = t;
      lens[2 * i] = n;
      lens[2 * i + 1] = len;
      for (let j = 0; j < n + len; j++) {
        const v = tokenBytes === 2 ? dv.getUint16(p, true) : dv.getUint32(p, true);
        p += tokenBytes;
        tokens[t++] = v;
        (j < n ? e.key : e.continuation).push(v);
      }
      checkEntry(e, vocabSize);
      if (prev && compareEntries(prev, e) >= 0)
        throw new NgramDatastoreError(`entry ${i}: keys out of order or repeated`);
      prev = e;
      counts[i] = e.count;
      hitCounts[i] = e.hits;
    }
    if (p !== bytes.byteLength)
      throw new NgramDatastoreError(`${bytes.byteLength - p} bytes after the last entry`);
    let size = 2;
    while (size < 2 * count) size *= 2;
    const slots = new Int32Array(size);
    const store = new NgramDatastore(
      vocabSize,
      minN,
      maxN,
      starts,
      lens,
      counts,
      hitCounts,
      tokens.slice(0, t),
      slots,
    );
    for (let i = 0; i < count; i++) {
      let s = hashKey(store.tokens, starts[i]!, lens[2 * i]!) & (size - 1);
      while (slots[s] !== 0) s = (s + 1) & (size - 1);
      slots[s] = i + 1;
    }
    return store;
  }

  /**
   * The continuation (at most `k` tokens) stored for the longest suffix of `history` of length
   * maxN down to minN that is a key; n = 0 when none is.
   */
  lookup(history: readonly number[], k: number): DatastoreMatch {
    if (k <= 0) return NO_MATCH;
    const L = history.length;
    const mask = this.slots.length - 1;
    for (let n = Math.min(this.maxN, L); n >= this.minN; n--) {
      let h = 0x811c9dc5 ^ n;
      for (let j = L - n; j < L; j++) h = Math.imul(h ^ history[j]!, 0x01000193);
      for (let s = h & mask; this.slots[s] !== 0; s = (s + 1) & mask) {
        const i = this.slots[s]! - 1;
        if (this.lens[2 * i] !== n) continue;
        const start = this.starts[i]!;
        let j = 0;
        while (j < n && this.tokens[start + j] === history[L - n + j]) j++;
        if (j < n) continue;
        const len = Math.min(k, this.lens[2 * i + 1]!);
        return {
          tokens: Array.from(this.tokens.subarray(start + n, start + n + len)),
          n,
          confidence: this.hitCounts[i]! / this.counts[i]!,
        };
      }
    }
    return NO_MATCH;
  }

  /** All entries (tests, tools). */
  entries(): NgramEntry[] {
    return Array.from(this.counts, (count, i) => {
      const s = this.starts[i]!;
      const n = this.lens[2 * i]!;
      return {
        key: Array.from(this.tokens.subarray(s, s + n)),
        continuation: Array.from(this.tokens.subarray(s + n, s + n + this.lens[2 * i + 1]!)),
        count,
        hits: this.hitCounts[i]!,
      };
    });
  }
}

/** FNV-1a over the key length and tokens (the same as lookup's inline hash). */
function hashKey(tokens: Uint16Array | Uint32Array, start: number, n: number): number {
  let h = 0x811c9dc5 ^ n;
  for (let j = start; j < start + n; j++) h = Math.imul(h ^ tokens[j]!, 0x01000193);
  return h;
}
