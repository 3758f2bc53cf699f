/**
 * TypeScript side of the WASM SIMD kernels (src/kernels/wasm/assembly/index.ts, built by
 * `npm run build:wasm` into build/wasm/kernels.wasm).
 *
 * Instantiate from a `WebAssembly.Module` (Workers: `import mod from ".../kernels.wasm"`; runtime
 * compilation from bytes is not allowed there) or from bytes (Node; see ./node.ts). Three builds, same
 * exports and bit-identical results (./build.ts): kernels.wasm (SIMD128, everywhere), kernels-relaxed.wasm
 * (+ relaxed SIMD's i32 dot-add: workerd, browsers) and kernels-relaxed-i16.wasm (+ relaxed SIMD's i16
 * dot: Node 20 behind --experimental-wasm-relaxed-simd).
 *
 * Memory: one growable linear memory managed by a bump allocator (`alloc`, `mark`/`release`). All op
 * methods take byte offsets ("pointers"). Typed-array views (`f32()` etc.) are invalidated whenever the
 * memory grows, so take them right before use and never keep them across an `alloc`.
 */

import {
  BLOB_HEADER_BYTES,
  hasMins,
  int4BlobGeometry,
  int8BlobGeometry,
  type PackedInt4,
  type PackedInt8,
} from "../../format/int4.ts";
import type { RopeStyle } from "../../format/model.ts";
import type { instantiate } from "./kernels.generated.js";

/**
 * The module's exports, typed by the declarations the AssemblyScript compiler generates for them
 * (kernels.generated.d.ts, written by `npm run build:wasm`; a kernel test fails when it is stale).
 */
export type RawExports = Awaited<ReturnType<typeof instantiate>>;

/** An int4 tensor resident in wasm memory (layout: src/format/int4.ts). */
export interface Int4Tensor {
  readonly N: number;
  readonly K: number;
  readonly kPadded: number;
  readonly groupSize: number;
  readonly nGroups: number;
  readonly qweight: number;
  readonly scales: number;
  /** Packed uint4 zero points; 0 = none (symmetric, zero point 8, or fp16 mins). */
  readonly zeros: number;
  /** fp16 per-group mins (w = q * scale + min, ggml Q4_1), laid out like scales; 0 = none. */
  readonly mins: number;
}

/** An int8 tensor resident in wasm memory (layout: src/format/int4.ts). */
export interface Int8Tensor {
  readonly N: number;
  readonly K: number;
  readonly kPadded: number;
  /** Elements per scale; kPadded when perRow. */
  readonly groupSize: number;
  readonly perRow: boolean;
  readonly nGroups: number;
  /** N * kPadded int8 codes, row-major, k order. */
  readonly data: number;
  /** N * nGroups fp16 scales. */
  readonly scales: number;
}

/**
 * Activations quantized per 32-block (layout: src/kernels/wasm/assembly/quantize.ts): int8 codes in k
 * order (q, kPadded bytes), the SIMD128 int4 kernel's i16 operand vectors (w, 2 * kPadded bytes; unused by
 * the relaxed build), per-block f32 scales (d = amax / 127) and scale * sum(codes) (ds). Quantize once,
 * reuse for every matvec that reads the same input (q/k/v, gate/up).
 */
export interface Q8Activations {
  readonly kPadded: number;
  readonly q: number;
  readonly w: number;
  readonly d: number;
  readonly ds: number;
}

/**
 * `rows` activation vectors quantized like Q8Activations, row i at q + i * kPadded, w + 2 * i * kPadded,
 * d / ds + i * kPadded / 8 (quantizeQ8Batch). Row i alone is `q8Row(batch, i)`.
 */
export interface Q8Batch {
  readonly kPadded: number;
  readonly rows: number;
  readonly q: number;
  readonly w: number;
  readonly d: number;
  readonly ds: number;
}

/** Row i of a Q8Batch as single-vector Q8Activations (for matvecInt4Q8 and friends). */
export function q8Row(b: Q8Batch, i: number): Q8Activations {
  if (!Number.isInteger(i) || i < 0 || i >= b.rows)
    throw new RangeError(`q8Row: row ${i} not in 0..${b.rows - 1}`);
  return {
    kPadded: b.kPadded,
    q: b.q + i * b.kPadded,
    w: b.w + 2 * i * b.kPadded,
    d: b.d + (i * b.kPadded) / 8,
    ds: b.ds + (i * b.kPadded) / 8,
  };
}

/** Largest prefill block matmulInt4 accepts. */
export const MAX_MATMUL_ROWS = 16;
const PAGE = 65536;
/** Kernel scratch: matvec group sums, matmul accumulators and unpacked chunks, attention blocks. */
export const SCRATCH_BYTES = 128 * 1024;
/** Addressable bytes a blob used in place (int4At / int8At) needs after its end (see src/format/int4.ts). */
export const BLOB_SLACK_BYTES = 16;

function checkInt(name: string, v: number, min: number, max = Number.MAX_SAFE_INTEGER): void {
  if (!Number.isInteger(v) || v < min || v > max)
    throw new RangeError(`${name} = ${v} not an integer in ${min}..${max}`);
}

export class WasmKernels {
  readonly raw: RawExports;
  private top: number;
  /** ng floats for matvec group sums / 16 bytes per row for matmul accumulators. */
  private readonly scratch: number;

  private constructor(instance: WebAssembly.Instance) {
    this.raw = instance.exports as unknown as RawExports;
    this.top = (this.raw.heap_base() + 15) & ~15;
    this.scratch = this.alloc(SCRATCH_BYTES);
    if (this.raw.dot_add_exact(this.scratch) !== 1) {
      throw new Error(
        "kernels-relaxed.wasm: this runtime computes i32x4.relaxed_dot_i8x16_i7x16_add_s inexactly " +
          "(Node 20's baseline tier does); load kernels.wasm or kernels-relaxed-i16.wasm here",
      );
    }
  }

  /** From a compiled module (Workers) or the .wasm bytes (Node). The module imports nothing. */
  static async create(source: WebAssembly.Module | BufferSource): Promise<WasmKernels> {
    if (source instanceof WebAssembly.Module) {
      return new WasmKernels(await WebAssembly.instantiate(source, {}));
    }
    const { instance } = await WebAssembly.instantiate(source, {});
    return new WasmKernels(instance);
  }

  // ---- memory ------------------------------------------------------------------------------

  /** True for the relaxed-SIMD builds (kernels-relaxed.wasm, kernels-relaxed-i16.wasm). */
  get relaxedSimd(): boolean {
    return this.raw.relaxed_simd() === 1;
  }

  /** True for kernels-relaxed.wasm (the int4 x Q8 kernels use the i32 dot-add). */
  get relaxedDotAdd(): boolean {
    return this.raw.relaxed_dot_add() === 1;
  }

  get memory(): WebAssembly.Memory {
    return this.raw.memory;
  }

  /** Bytes handed out so far (high-water mark of the bump allocator). */
  get heapTop(): number {
    return this.top;
  }

  /** Bump-allocates `bytes` (contents unspecified unless never used before), growing memory as needed. */
  alloc(bytes: number, align = 16): number {
    const ptr = (this.top + align - 1) & ~(align - 1);
    const end = ptr + bytes;
    const have = this.raw.memory.buffer.byteLength;
    if (end > have) this.raw.memory.grow(Math.ceil((end - have) / PAGE));
    this.top = end;
    return ptr;
  }

  /** alloc + zero fill. */
  allocZeroed(bytes: number, align = 16): number {
    const ptr = this.alloc(bytes, align);
    new Uint8Array(this.raw.memory.buffer, ptr, bytes).fill(0);
    return ptr;
  }

  mark(): number {
    return this.top;
  }

  /** Frees everything allocated after `mark()` returned m. */
  release(m: number): void {
    if (m > this.top) throw new Error("release: mark is above the heap top");
    this.top = m;
  }

  f32(ptr: number, length: number): Float32Array {
    return new Float32Array(this.raw.memory.buffer, ptr, length);
  }
  u8(ptr: number, length: number): Uint8Array {
    return new Uint8Array(this.raw.memory.buffer, ptr, length);
  }
  i8(ptr: number, length: number): Int8Array {
    return new Int8Array(this.raw.memory.buffer, ptr, length);
  }

  /** Copies fp32 values into new memory, zero-padded to `paddedLength` floats. */
  uploadF32(data: Float32Array, paddedLength = data.length): number {
    const ptr = this.alloc(paddedLength * 4);
    const view = this.f32(ptr, paddedLength);
    view.set(data);
    view.fill(0, data.length);
    return ptr;
  }

  /**
   * Copies the three planar arrays into 16-byte aligned wasm memory. Scales and zero points get 16 bytes
   * of slack: the kernels read them 4 groups at a time and may overrun a row's last group.
   */
  uploadInt4(p: PackedInt4): Int4Tensor {
    const qweight = this.alloc(p.qweight.byteLength);
    this.u8(qweight, p.qweight.byteLength).set(p.qweight);
    const scales = this.allocZeroed(p.scales.byteLength + 16);
    new Uint16Array(this.raw.memory.buffer, scales, p.scales.length).set(p.scales);
    let zeros = 0;
    if (p.zeros) {
      zeros = this.allocZeroed(p.zeros.byteLength + 16);
      this.u8(zeros, p.zeros.byteLength).set(p.zeros);
    }
    let mins = 0;
    if (hasMins(p)) {
      if (p.zeros) throw new Error("uploadInt4: a tensor has zero points or mins, not both");
      mins = this.allocZeroed(p.mins.byteLength + 16);
      new Uint16Array(this.raw.memory.buffer, mins, p.mins.length).set(p.mins);
    }
    const { N, K, kPadded, groupSize, nGroups } = p;
    return { N, K, kPadded, groupSize, nGroups, qweight, scales, zeros, mins };
  }

  /** Copies an int8 tensor's codes and scales into 16-byte aligned wasm memory. */
  uploadInt8(p: PackedInt8): Int8Tensor {
    const data = this.alloc(p.data.byteLength);
    this.i8(data, p.data.length).set(p.data);
    const scales = this.allocZeroed(p.scales.byteLength + 16);
    new Uint16Array(this.raw.memory.buffer, scales, p.scales.length).set(p.scales);
    const { N, K, kPadded, groupSize, perRow, nGroups } = p;
    return { N, K, kPadded, groupSize, perRow, nGroups, data, scales };
  }

  /**
   * The int4 tensor of a `serializeInt4` blob that already sits in wasm memory at `ptr` (no copy): reads
   * and validates the 32-byte header, returns pointers into the blob. `ptr` must be 16-byte aligned (so
   * every section is v128-aligned), and BLOB_SLACK_BYTES (16) of memory must follow the blob: the
   * matvec kernels read up to 8 bytes past the scales / zeros sections (values there are never used).
   */
  int4At(ptr: number): Int4Tensor {
    const g = int4BlobGeometry(this.blobHeader(ptr, "int4At"));
    this.checkBlobEnd(ptr, g.byteLength, "int4At");
    const { N, K, kPadded, groupSize, nGroups } = g;
    return {
      N,
      K,
      kPadded,
      groupSize,
      nGroups,
      qweight: ptr + g.qweightOffset,
      scales: ptr + g.scalesOffset,
      zeros: g.zeroPoint ? ptr + g.zerosOffset : 0,
      mins: g.mins ? ptr + g.zerosOffset : 0,
    };
  }

  /** The int8 tensor of a `serializeInt8` blob at `ptr` in wasm memory (no copy); same rules as int4At. */
  int8At(ptr: number): Int8Tensor {
    const g = int8BlobGeometry(this.blobHeader(ptr, "int8At"));
    this.checkBlobEnd(ptr, g.byteLength, "int8At");
    const { N, K, kPadded, groupSize, perRow, nGroups } = g;
    return {
      N,
      K,
      kPadded,
      groupSize,
      perRow,
      nGroups,
      data: ptr + g.dataOffset,
      scales: ptr + g.scalesOffset,
    };
  }

  private blobHeader(ptr: number, what: string): Uint8Array {
    checkInt(`${what}: ptr`, ptr, 0);
    if (ptr % 16 !== 0) throw new Error(`${what}: blob at ${ptr} is not 16-byte aligned`);
    if (ptr + BLOB_HEADER_BYTES > this.raw.memory.buffer.byteLength)
      throw new RangeError(`${what}: ${ptr} is out of memory`);
    return this.u8(ptr, BLOB_HEADER_BYTES);
  }

  private checkBlobEnd(ptr: number, byteLength: number, what: string): void {
    if (ptr + byteLength + BLOB_SLACK_BYTES > this.raw.memory.buffer.byteLength) {
      throw new RangeError(
        `${what}: blob of ${byteLength} bytes at ${ptr} (+${BLOB_SLACK_BYTES} slack) runs past memory`,
      );
    }
  }

  /** Space for one Q8-quantized activation vector of kPadded values. */
  allocQ8(kPadded: number): Q8Activations {
    if (kPadded % 32 !== 0) throw new Error(`allocQ8: ${kPadded} is not a multiple of 32`);
    const q = this.alloc(kPadded);
    const w = this.alloc(2 * kPadded);
    const d = this.alloc(kPadded / 8);
    const ds = this.alloc(kPadded / 8);
    return { kPadded, q, w, d, ds };
  }

  // ---- int4 kernels --------------------------------------------------------------------------

  /** y[N] = W x; x: w.kPadded floats, zero beyond w.K. */
  matvecInt4(w: Int4Tensor, x: number, y: number): void {
    if (128 + 4 * (w.nGroups + 3) > SCRATCH_BYTES)
      throw new Error(`matvecInt4: ${w.nGroups} groups exceed scratch`);
    this.raw.matvec_q4_f32(
      w.qweight,
      w.scales,
      w.zeros,
      w.mins,
      x,
      y,
      w.N,
      w.kPadded,
      w.groupSize,
      this.scratch,
    );
  }

  /** Space for `rows` Q8-quantized activation vectors of kPadded values. */
  allocQ8Batch(kPadded: number, rows: number): Q8Batch {
    if (kPadded % 32 !== 0) throw new Error(`allocQ8Batch: ${kPadded} is not a multiple of 32`);
    checkInt("allocQ8Batch: rows", rows, 1);
    const q = this.alloc(rows * kPadded);
    const w = this.alloc(2 * rows * kPadded);
    const d = this.alloc((rows * kPadded) / 8);
    const ds = this.alloc((rows * kPadded) / 8);
    return { kPadded, rows, q, w, d, ds };
  }

  /** Quantizes out.rows activation rows (x: rows of out.kPadded floats, zero-padded) into out. */
  quantizeQ8Batch(x: number, out: Q8Batch): Q8Batch {
    for (let i = 0; i < out.rows; i++) {
      const r = q8Row(out, i);
      this.raw.quantize_q8(x + i * out.kPadded * 4, out.kPadded, r.q, r.w, r.d, r.ds);
    }
    return out;
  }

  /** Quantizes kPadded floats at x (a multiple of 32, zero-padded) to int8 per 32-block. */
  quantizeQ8(x: number, out: Q8Activations): Q8Activations {
    this.raw.quantize_q8(x, out.kPadded, out.q, out.w, out.d, out.ds);
    return out;
  }

  /** y[N] = W x with x given as Q8 activations (quantizeQ8 once, reuse for q/k/v or gate/up). */
  matvecInt4Q8(w: Int4Tensor, x: Q8Activations, y: number): void {
    if (x.kPadded !== w.kPadded)
      throw new Error(`matvecInt4Q8: activations ${x.kPadded} vs weights ${w.kPadded}`);
    if (160 + 4 * (w.nGroups + 3) > SCRATCH_BYTES)
      throw new Error(`matvecInt4Q8: ${w.nGroups} groups exceed scratch`);
    this.raw.matvec_q4_q8(
      w.qweight,
      w.scales,
      w.zeros,
      w.mins,
      x.q,
      x.w,
      x.d,
      x.ds,
      y,
      w.N,
      w.kPadded,
      w.groupSize,
      this.scratch,
    );
  }

  /** Y[m][N] = X[m][:] W^T for m <= 16 rows; X rows are w.kPadded floats apart, zero-padded. */
  matmulInt4(w: Int4Tensor, x: number, y: number, m: number): void {
    if (m < 1 || m > MAX_MATMUL_ROWS) throw new Error(`matmulInt4: m = ${m} not in 1..${MAX_MATMUL_ROWS}`);
    // a single row: the 4-output-row matvec is ~3x faster than the M-row kernel
    if (m === 1) this.matvecInt4(w, x, y);
    else
      this.raw.matmul_q4_f32(
        w.qweight,
        w.scales,
        w.zeros,
        w.mins,
        x,
        y,
        m,
        w.N,
        w.kPadded,
        w.groupSize,
        this.scratch,
      );
  }

  /**
   * Y[m][N] = X W^T for the first m rows of a Q8Batch (default all; prefill, speculative verification):
   * each weight chunk is unpacked once for all m rows. Bit-identical to m matvecInt4Q8 calls. Every
   * (row, weight) pair still pays its integer dot, so the per-row saving comes from the weight stream:
   * `npm run bench` prints the per-row cost against m (about 0.5x a matvec at m = 4 on streamed weights).
   * m is limited by scratch (~450 rows at K = 2048, g32).
   */
  matmulInt4Q8(w: Int4Tensor, x: Q8Batch, y: number, m: number = x.rows): void {
    if (x.kPadded !== w.kPadded)
      throw new Error(`matmulInt4Q8: activations ${x.kPadded} vs weights ${w.kPadded}`);
    checkInt("matmulInt4Q8: m", m, 1, x.rows);
    if (m === 1) {
      this.matvecInt4Q8(w, q8Row(x, 0), y);
      return;
    }
    const need = this.raw.matmul_q4_q8_scratch(m, w.nGroups);
    if (need > SCRATCH_BYTES) throw new RangeError(`matmulInt4Q8: m = ${m} needs ${need} bytes of scratch`);
    this.raw.matmul_q4_q8(
      w.qweight,
      w.scales,
      w.zeros,
      w.mins,
      x.q,
      x.w,
      x.d,
      x.ds,
      y,
      m,
      w.N,
      w.kPadded,
      w.groupSize,
      this.scratch,
    );
  }

  // ---- int8 kernels --------------------------------------------------------------------------

  /** y[N] = W x, int8 weights, Q8 activations of w.kPadded values (quantizeQ8). The fast path for the head. */
  matvecInt8Q8(w: Int8Tensor, x: Q8Activations, y: number): void {
    if (x.kPadded !== w.kPadded)
      throw new Error(`matvecInt8Q8: activations ${x.kPadded} vs weights ${w.kPadded}`);
    this.raw.matvec_q8w_q8(w.data, w.scales, x.q, x.d, y, w.N, w.kPadded, w.groupSize);
  }

  /**
   * Y[m][N] = X W^T, int8 weights, the first m rows of a Q8Batch (default all; the batched head of
   * speculative verification): each weight row is read once for all m rows. Row i is bit-identical to
   * matvecInt8Q8 of row i.
   */
  matmulInt8Q8(w: Int8Tensor, x: Q8Batch, y: number, m: number = x.rows): void {
    if (x.kPadded !== w.kPadded)
      throw new Error(`matmulInt8Q8: activations ${x.kPadded} vs weights ${w.kPadded}`);
    checkInt("matmulInt8Q8: m", m, 1, x.rows);
    this.raw.matmul_q8w_q8(w.data, w.scales, x.q, x.d, y, m, w.N, w.kPadded, w.groupSize);
  }

  /** y[N] = W x, int8 weights, fp32 activations x (w.kPadded floats, zero beyond w.K). ~2x slower than Q8. */
  matvecInt8(w: Int8Tensor, x: number, y: number): void {
    this.raw.matvec_q8w_f32(w.data, w.scales, x, y, w.N, w.kPadded, w.groupSize);
  }

  // ---- embeddings ----------------------------------------------------------------------------

  /** out[0..kPadded) = row `row` of w dequantized (zero beyond w.K). */
  embedRowInt4(w: Int4Tensor, row: number, out: number): void {
    checkInt("embedRowInt4: row", row, 0, w.N - 1);
    this.raw.embed_row_q4(w.qweight, w.scales, w.zeros, w.mins, row, w.kPadded, w.groupSize, out);
  }

  /** out[0..kPadded) = row `row` of w dequantized (zero beyond w.K). */
  embedRowInt8(w: Int8Tensor, row: number, out: number): void {
    checkInt("embedRowInt8: row", row, 0, w.N - 1);
    this.raw.embed_row_q8(w.data, w.scales, row, w.kPadded, w.groupSize, out);
  }

  /** out[0..dim) = table[row][0..dim) of an fp32 [rows][dim] table (plain copy). */
  embedRowF32(table: number, row: number, dim: number, out: number): void {
    checkInt("embedRowF32: row", row, 0);
    this.copyF32(out, table + row * dim * 4, dim);
  }

  // ---- KV cache and attention ----------------------------------------------------------------

  /** dst[0..n) = fp16(src[0..n)): round to nearest even, subnormals kept, overflow to ±inf, NaN -> 0x7e00. */
  kvStoreF16(src: number, dst: number, n: number): void {
    checkInt("kvStoreF16: n", n, 0);
    this.raw.kv_store_f16(src, dst, n);
  }

  /**
   * Quantizes nKvHeads heads of headDim floats at src to int8: per head j, dstScales[j] (f32) = amax / 127
   * and dstCodes[j * headDim + i] = round(x / scale) (nearest even). |dequantized - x| <= scale / 2.
   */
  kvStoreQ8(src: number, dstCodes: number, dstScales: number, nKvHeads: number, headDim: number): void {
    checkInt("kvStoreQ8: nKvHeads", nKvHeads, 1);
    checkInt("kvStoreQ8: headDim", headDim, 1);
    this.raw.kv_store_q8(src, dstCodes, dstScales, nKvHeads, headDim);
  }

  /** Scratch attentionF16/attentionQ8 use (inside the kernels' own scratch; exposed for the curious). */
  attentionScratchBytes(nHeads: number, nKvHeads: number, headDim: number): number {
    return this.raw.att_scratch_bytes(nHeads / nKvHeads, headDim);
  }

  private checkAttention(
    what: string,
    nHeads: number,
    nKvHeads: number,
    headDim: number,
    first: number,
    count: number,
  ) {
    checkInt(`${what}: nKvHeads`, nKvHeads, 1);
    checkInt(`${what}: nHeads`, nHeads, nKvHeads);
    if (nHeads % nKvHeads !== 0)
      throw new RangeError(`${what}: ${nHeads} heads not a multiple of ${nKvHeads} kv heads`);
    checkInt(`${what}: headDim`, headDim, 1);
    checkInt(`${what}: first`, first, 0);
    checkInt(`${what}: count`, count, 1);
    const need = this.attentionScratchBytes(nHeads, nKvHeads, headDim);
    if (need > SCRATCH_BYTES)
      throw new RangeError(`${what}: headDim ${headDim} needs ${need} bytes of scratch`);
  }

  /**
   * Decode attention over an fp16 KV cache laid out [position][nKvHeads * headDim] (kCache / vCache: the
   * layer's position-0 row). For query head h (kv head h / (nHeads / nKvHeads)): softmax over positions
   * first .. first + count - 1 of scale * dot(q_h, k_pos), out_h = sum p * v_pos. q, out: nHeads * headDim
   * floats. `_scratch` is ignored (the kernel streams blocks of 32 positions with an online softmax in its own
   * scratch, so it needs no count-sized buffer); kept so callers written against the draft API still compile.
   */
  attentionF16(
    q: number,
    kCache: number,
    vCache: number,
    out: number,
    nHeads: number,
    nKvHeads: number,
    headDim: number,
    first: number,
    count: number,
    scale: number,
    _scratch?: number,
  ): void {
    this.checkAttention("attentionF16", nHeads, nKvHeads, headDim, first, count);
    this.raw.attention_f16(
      q,
      kCache,
      vCache,
      out,
      nHeads,
      nKvHeads,
      headDim,
      first,
      count,
      scale,
      this.scratch,
    );
  }

  /**
   * attentionF16 over an int8 cache (codes [position][nKvHeads * headDim], f32 scales
   * [position][nKvHeads], as kvStoreQ8 writes them), dequantized on the fly.
   */
  attentionQ8(
    q: number,
    kCodes: number,
    kScales: number,
    vCodes: number,
    vScales: number,
    out: number,
    nHeads: number,
    nKvHeads: number,
    headDim: number,
    first: number,
    count: number,
    scale: number,
    _scratch?: number,
  ): void {
    this.checkAttention("attentionQ8", nHeads, nKvHeads, headDim, first, count);
    this.raw.attention_q8(
      q,
      kCodes,
      kScales,
      vCodes,
      vScales,
      out,
      nHeads,
      nKvHeads,
      headDim,
      first,
      count,
      scale,
      this.scratch,
    );
  }

  /**
   * attentionF16 for `m` consecutive query positions at once (prefill, speculative verification): row i
   * (at q + 4 * i * qStride bytes) is the query of position first + count0 - 1 + i
   * and attends to positions first .. first + count0 - 1 + i, into out + 4 * i * outStride. Each cache block
   * is widened once for all rows; row i is bit-identical to attentionF16 with count0 + i. qStride and
   * outStride in floats. Throws RangeError when m rows do not fit the kernels' scratch.
   */
  attentionRowsF16(
    q: number,
    qStride: number,
    kCache: number,
    vCache: number,
    out: number,
    outStride: number,
    m: number,
    nHeads: number,
    nKvHeads: number,
    headDim: number,
    first: number,
    count0: number,
    scale: number,
  ): void {
    this.checkAttentionRows("attentionRowsF16", m, nHeads, nKvHeads, headDim, first, count0);
    this.raw.attention_rows_f16(
      q,
      qStride * 4,
      kCache,
      vCache,
      out,
      outStride * 4,
      m,
      nHeads,
      nKvHeads,
      headDim,
      first,
      count0,
      scale,
      this.scratch,
    );
  }

  /** attentionRowsF16 over an int8 cache (as attentionQ8). */
  attentionRowsQ8(
    q: number,
    qStride: number,
    kCodes: number,
    kScales: number,
    vCodes: number,
    vScales: number,
    out: number,
    outStride: number,
    m: number,
    nHeads: number,
    nKvHeads: number,
    headDim: number,
    first: number,
    count0: number,
    scale: number,
  ): void {
    this.checkAttentionRows("attentionRowsQ8", m, nHeads, nKvHeads, headDim, first, count0);
    this.raw.attention_rows_q8(
      q,
      qStride * 4,
      kCodes,
      kScales,
      vCodes,
      vScales,
      out,
      outStride * 4,
      m,
      nHeads,
      nKvHeads,
      headDim,
      first,
      count0,
      scale,
      this.scratch,
    );
  }

  /** Most query rows attentionRowsF16/Q8 take at once for this shape (scratch-bound). */
  maxAttentionRows(nHeads: number, nKvHeads: number, headDim: number): number {
    let m = 1;
    while (this.raw.att_scratch_bytes(((m + 1) * nHeads) / nKvHeads, headDim) <= SCRATCH_BYTES) m++;
    return m;
  }

  private checkAttentionRows(
    what: string,
    m: number,
    nHeads: number,
    nKvHeads: number,
    headDim: number,
    first: number,
    count0: number,
  ) {
    this.checkAttention(what, nHeads, nKvHeads, headDim, first, count0);
    checkInt(`${what}: m`, m, 1);
    const need = this.raw.att_scratch_bytes((m * nHeads) / nKvHeads, headDim);
    if (need > SCRATCH_BYTES) throw new RangeError(`${what}: ${m} rows need ${need} bytes of scratch`);
  }

  // ---- fp32 kernels --------------------------------------------------------------------------

  /** x[0..n) += y[0..n) (residual or bias add; x and y may alias). */
  addF32(x: number, y: number, n: number): void {
    this.raw.add_f32(x, y, n);
  }

  /** Alias of addF32 for bias vectors. */
  addBias(x: number, bias: number, n: number): void {
    this.raw.add_f32(x, bias, n);
  }

  /** dst[0..n) = src[0..n) floats (memmove semantics: overlap is fine). */
  copyF32(dst: number, src: number, n: number): void {
    new Uint8Array(this.raw.memory.buffer).copyWithin(dst, src, src + n * 4);
  }

  /** y[n] = W x, W row-major [n][k] fp32. */
  matvecF32(w: number, x: number, y: number, n: number, k: number): void {
    this.raw.matvec_f32(w, x, y, n, k);
  }

  rmsnorm(x: number, weight: number, out: number, n: number, eps: number): void {
    this.raw.rmsnorm(x, weight, out, n, eps);
  }

  softmax(x: number, n: number): void {
    this.raw.softmax(x, n);
  }

  /** out = silu(g) * u. */
  siluGate(g: number, u: number, out: number, n: number): void {
    this.raw.silu_gate(g, u, out, n);
  }

  /** Fills ropeDim/2 cos and sin values for one position. */
  ropeTable(pos: number, theta: number, ropeDim: number, cos: number, sin: number): void {
    this.raw.rope_table(pos, theta, ropeDim, cos, sin);
  }

  /** Rotates nHeads heads in place using tables from ropeTable. */
  rope(
    x: number,
    nHeads: number,
    headDim: number,
    ropeDim: number,
    cos: number,
    sin: number,
    style: RopeStyle,
  ): void {
    this.raw.rope(x, nHeads, headDim, ropeDim, cos, sin, style === "neox" ? 1 : 0);
  }

  argmax(x: number, n: number): number {
    return this.raw.argmax(x, n);
  }

  // ---- scoped temporaries ----------------------------------------------------------------------

  /** Runs fn between mark() and release(). */
  scoped<T>(fn: () => T): T {
    const m = this.mark();
    try {
      return fn();
    } finally {
      this.release(m);
    }
  }
}
