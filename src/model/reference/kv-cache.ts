/**
 * fp32 key/value cache for one sequence: per layer, `capacity` rows of numKvHeads*headDim values.
 * Its capacity is fixed at creation so memory use is known up front (Workers have hard limits);
 * running past it is an error, never a silent reallocation or eviction.
 */

export class KVCacheFullError extends Error {
  override readonly name = "KVCacheFullError";
  constructor(readonly capacity: number) {
    super(`KV cache is full: all ${capacity} positions are used (create a state with more tokens)`);
  }
}

export class KVCache {
  /** keys[layer] is [capacity, kvDim] row-major; row p holds the (roped) key of position p. */
  readonly keys: Float32Array[];
  readonly values: Float32Array[];
  /** Positions 0..length-1 hold valid entries. */
  private used = 0;

  constructor(
    readonly numLayers: number,
    readonly kvDim: number,
    readonly capacity: number,
  ) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`KV cache capacity must be a positive integer, got ${capacity}`);
    }
    this.keys = Array.from({ length: numLayers }, () => new Float32Array(capacity * kvDim));
    this.values = Array.from({ length: numLayers }, () => new Float32Array(capacity * kvDim));
  }

  get length(): number {
    return this.used;
  }

  /** Throws unless one more position fits. Called before any work for that position is done. */
  ensureRoom(): void {
    if (this.used >= this.capacity) throw new KVCacheFullError(this.capacity);
  }

  /** Stores layer `layer`'s key and value for the position being computed (index `length`). */
  write(layer: number, key: Float32Array, value: Float32Array): void {
    this.ensureRoom();
    this.keys[layer]!.set(key, this.used * this.kvDim);
    this.values[layer]!.set(value, this.used * this.kvDim);
  }

  /** Marks the position written by the last round of `write`s as valid. */
  advance(): void {
    this.ensureRoom();
    this.used++;
  }

  /** Forgets positions >= n (to re-decode from an earlier position). */
  truncate(n: number): void {
    if (!Number.isInteger(n) || n < 0 || n > this.used) {
      throw new RangeError(`cannot truncate a KV cache of ${this.used} positions to ${n}`);
    }
    this.used = n;
  }
}
