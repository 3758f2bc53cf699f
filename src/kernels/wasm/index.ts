/**
 * TypeScript side of the WASM SIMD kernels (src/kernels/wasm/assembly/index.ts, built by
 * `npm run build:wasm` into build/wasm/kernels.wasm).
 *
 * Instantiate from a `WebAssembly.Module` (Workers: `import mod from ".../kernels.wasm"`; runtime
 * compilation from bytes is not allowed there) or from bytes (Node; see ./node.ts). Two builds, same
 * exports and results: kernels.wasm (SIMD128) and kernels-relaxed.wasm (+ relaxed SIMD, ~1.25x faster
 * Q8 matvec; workerd has relaxed SIMD, Node 20 only behind --experimental-wasm-relaxed-simd).
 *
 * Memory: one growable linear memory managed by a bump allocator (`alloc`, `mark`/`release`). All op
 * methods take byte offsets ("pointers"). Typed-array views (`f32()` etc.) are invalidated whenever the
 * memory grows, so take them right before use and never keep them across an `alloc`.
 */

import type { RopeStyle } from "../../engine/model.ts";
import type { PackedInt4, PackedInt8 } from "../../format/int4.ts";

interface RawExports {
  memory: WebAssembly.Memory;
  heap_base(): number;
  relaxed_simd(): number;
  matvec_q4_f32(
    qw: number,
    sc: number,
    zp: number,
    x: number,
    y: number,
    n: number,
    kp: number,
    gs: number,
    tmp: number,
  ): void;
  quantize_q8(x: number, kp: number, xq: number, xd: number, xds: number): void;
  matvec_q4_q8(
    qw: number,
    sc: number,
    zp: number,
    xq: number,
    xd: number,
    xds: number,
    y: number,
    n: number,
    kp: number,
    gs: number,
    tmp: number,
  ): void;
  matmul_q4_f32(
    qw: number,
    sc: number,
    zp: number,
    x: number,
    y: number,
    m: number,
    n: number,
    kp: number,
    gs: number,
    tmp: number,
  ): void;
  matvec_f32(w: number, x: number, y: number, n: number, k: number): void;
  rmsnorm(x: number, w: number, out: number, n: number, eps: number): void;
  softmax(x: number, n: number): void;
  silu_gate(g: number, u: number, out: number, n: number): void;
  rope_table(pos: number, theta: number, ropeDim: number, cos: number, sin: number): void;
  rope(
    x: number,
    nHeads: number,
    headDim: number,
    ropeDim: number,
    cos: number,
    sin: number,
    neox: number,
  ): void;
  argmax(x: number, n: number): number;
}

/** An int4 tensor resident in wasm memory (layout: src/format/int4.ts). */
export interface Int4Tensor {
  readonly N: number;
  readonly K: number;
  readonly kPadded: number;
  readonly groupSize: number;
  readonly nGroups: number;
  readonly qweight: number;
  readonly scales: number;
  /** 0 = symmetric (zero point 8). */
  readonly zeros: number;
}

/**
 * Activations quantized per 32-block: int8 codes (in the kernel's lane order, not k order: internal),
 * per-block f32 scales (amax / 127), per-block scale * sum(codes). Quantize once, reuse for every
 * matvec that reads the same input (q/k/v, gate/up).
 */
export interface Q8Activations {
  readonly kPadded: number;
  readonly q: number;
  readonly d: number;
  readonly ds: number;
}

/** Largest prefill block matmulInt4 accepts. */
export const MAX_MATMUL_ROWS = 16;
const PAGE = 65536;
const SCRATCH_BYTES = 64 * 1024;

export class WasmKernels {
  readonly raw: RawExports;
  private top: number;
  /** ng floats for matvec group sums / 16 bytes per row for matmul accumulators. */
  private readonly scratch: number;

  private constructor(instance: WebAssembly.Instance) {
    this.raw = instance.exports as unknown as RawExports;
    this.top = (this.raw.heap_base() + 15) & ~15;
    this.scratch = this.alloc(SCRATCH_BYTES);
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

  /** True for kernels-relaxed.wasm (relaxed SIMD: workerd; Node 20 only with --experimental-wasm-relaxed-simd). */
  get relaxedSimd(): boolean {
    return this.raw.relaxed_simd() === 1;
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
    const { N, K, kPadded, groupSize, nGroups } = p;
    return { N, K, kPadded, groupSize, nGroups, qweight, scales, zeros };
  }

  /** Only for symmetry with future int8 kernels: copies the codes and scales, returns their offsets. */
  uploadInt8(p: PackedInt8): { data: number; scales: number } {
    const data = this.alloc(p.data.byteLength);
    this.i8(data, p.data.length).set(p.data);
    const scales = this.alloc(p.scales.byteLength);
    new Uint16Array(this.raw.memory.buffer, scales, p.scales.length).set(p.scales);
    return { data, scales };
  }

  /** Space for one Q8-quantized activation vector of kPadded values. */
  allocQ8(kPadded: number): Q8Activations {
    if (kPadded % 32 !== 0) throw new Error(`allocQ8: ${kPadded} is not a multiple of 32`);
    const q = this.alloc(kPadded);
    const d = this.alloc(kPadded / 8);
    const ds = this.alloc(kPadded / 8);
    return { kPadded, q, d, ds };
  }

  // ---- int4 kernels --------------------------------------------------------------------------

  /** y[N] = W x; x: w.kPadded floats, zero beyond w.K. */
  matvecInt4(w: Int4Tensor, x: number, y: number): void {
    if (64 + 4 * (w.nGroups + 3) > SCRATCH_BYTES)
      throw new Error(`matvecInt4: ${w.nGroups} groups exceed scratch`);
    this.raw.matvec_q4_f32(w.qweight, w.scales, w.zeros, x, y, w.N, w.kPadded, w.groupSize, this.scratch);
  }

  /** Quantizes kPadded floats at x (a multiple of 32, zero-padded) to int8 per 32-block. */
  quantizeQ8(x: number, out: Q8Activations): Q8Activations {
    this.raw.quantize_q8(x, out.kPadded, out.q, out.d, out.ds);
    return out;
  }

  /** y[N] = W x with x given as Q8 activations (quantizeQ8 once, reuse for q/k/v or gate/up). */
  matvecInt4Q8(w: Int4Tensor, x: Q8Activations, y: number): void {
    if (x.kPadded !== w.kPadded)
      throw new Error(`matvecInt4Q8: activations ${x.kPadded} vs weights ${w.kPadded}`);
    if (64 + 4 * (w.nGroups + 3) > SCRATCH_BYTES)
      throw new Error(`matvecInt4Q8: ${w.nGroups} groups exceed scratch`);
    this.raw.matvec_q4_q8(
      w.qweight,
      w.scales,
      w.zeros,
      x.q,
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
        x,
        y,
        m,
        w.N,
        w.kPadded,
        w.groupSize,
        this.scratch,
      );
  }

  // ---- fp32 kernels --------------------------------------------------------------------------

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

  // ---- array conveniences (allocate and free their own temporaries) -----------------------------

  /** Runs fn between mark() and release(). */
  scoped<T>(fn: () => T): T {
    const m = this.mark();
    try {
      return fn();
    } finally {
      this.release(m);
    }
  }

  /** y = W x for a JS array x of length w.K (int4 weights, fp32 or Q8 activations). */
  matvecInt4Array(w: Int4Tensor, x: Float32Array, mode: "f32" | "q8" = "f32"): Float32Array {
    if (x.length !== w.K) throw new Error(`matvecInt4Array: x has ${x.length} values, K = ${w.K}`);
    return this.scoped(() => {
      const xp = this.uploadF32(x, w.kPadded);
      const y = this.alloc(w.N * 4);
      if (mode === "q8") this.matvecInt4Q8(w, this.quantizeQ8(xp, this.allocQ8(w.kPadded)), y);
      else this.matvecInt4(w, xp, y);
      return this.f32(y, w.N).slice();
    });
  }

  /** Y [m][N] for X [m][K] (m <= 16). */
  matmulInt4Array(w: Int4Tensor, x: Float32Array, m: number): Float32Array {
    if (x.length !== m * w.K)
      throw new Error(`matmulInt4Array: x has ${x.length} values, want ${m} x ${w.K}`);
    return this.scoped(() => {
      const xp = this.allocZeroed(m * w.kPadded * 4);
      const xv = this.f32(xp, m * w.kPadded);
      for (let i = 0; i < m; i++) xv.set(x.subarray(i * w.K, (i + 1) * w.K), i * w.kPadded);
      const y = this.alloc(m * w.N * 4);
      this.matmulInt4(w, xp, y, m);
      return this.f32(y, m * w.N).slice();
    });
  }
}
