/**
 * shardlm int4 / int8 weight formats (what the WASM-SIMD kernels in src/kernels/wasm read).
 *
 * ## Int4 ("Q4G"): group-wise 4-bit along K of a row-major [N out, K in] weight
 *
 * Parameters: group size G ∈ {32, 64, 128} (default 32), symmetric (default) or asymmetric.
 *   nGroups = ceil(K / G), kPadded = nGroups * G.
 * Three planar arrays, each row-major over (row n, group g):
 *
 *   qweight: Uint8Array, N * nGroups * G/2 bytes.
 *     Group (n, g) is the G/2 bytes at byte offset (n * nGroups + g) * G/2. A group is G/32
 *     "chunks" of 16 bytes; chunk c covers k = g*G + 32c + [0, 32). In chunk c, byte j (0..15):
 *       low nibble  (bits 0-3) = q for k = g*G + 32c + j
 *       high nibble (bits 4-7) = q for k = g*G + 32c + 16 + j
 *     (llama.cpp block_q4_0 nibble order.) q is an unsigned 4-bit code 0..15.
 *   scales: Uint16Array, N * nGroups IEEE binary16 bit patterns (little-endian when serialized),
 *     element n * nGroups + g.
 *   zeros: null for symmetric (implicit zero point 8), else Uint8Array, N * ceil(nGroups / 2) bytes:
 *     uint4 zero point of group g of row n in byte n * ceil(nGroups/2) + (g >> 1), low nibble for even g,
 *     high nibble for odd g; an unused high nibble of a row's last byte is 0. (Same packing as
 *     onnxruntime MatMulNBits' packed zero_points.)
 *
 *   mins: null, or (instead of zeros) Uint16Array, N * nGroups IEEE binary16 bit patterns laid out like
 *     scales: the group's fp16 minimum m (ggml block_q4_1's `m`).
 *
 *   dequantized w[n][k] = (q - z) * f16ToF32(scale), z = 8 (symmetric) or the group's zero nibble;
 *   with mins: w[n][k] = q * f16ToF32(scale) + f16ToF32(min), ggml's dequantize_row_q4_1 (ggml-quants.c:
 *   `y = x0*d + m`, x0 = the 4-bit code), so a Q4_1 block (fp16 d, fp16 m, qs[16] in this nibble order)
 *   is one group of G = 32 copied verbatim. The fp32 result q*d + m is correctly rounded either way (q*d is
 *   exact in fp32), so our dequantization equals ggml's bit for bit.
 *   Ragged last group (K % G != 0): codes for k in [K, kPadded) are stored as z, so they dequantize
 *   to exactly 0 (with mins ragged groups are not allowed: K % G must be 0, as in ggml); the kernels
 *   also require activations zero-padded to kPadded.
 *
 * Why this layout (and not llama.cpp's interleaved 18-byte block_q4_0):
 * - Every 16-byte chunk starts 16-byte aligned in qweight, so a chunk is one aligned v128.load; an
 *   18-byte block stride misaligns every other load and splits cache lines.
 * - "j / j+16" nibble order: `v & 0x0F` and `v >> 4` each yield 16 codes that are contiguous in k, so they
 *   pair with contiguous activation loads without any lane shuffles (onnxruntime's "2j / 2j+1" order
 *   would need an interleave per load or a permuted activation vector).
 * - Planar arrays = onnxruntime MatMulNBits' B / scales / zero_points: conversion is a nibble reorder,
 *   and a contiguous row range [n0, n1) is a contiguous slice of each array (row-split sharding).
 * - Scales stay fp16 in memory (0.5 bit/weight at G=32; fp32 would add 11% to an int4 tensor in a
 *   128 MB isolate); the kernels widen them with two integer ops and a multiply.
 *
 * Serialized blob (`serializeInt4`), little-endian, sections 16-byte aligned so readers can view them
 * in place (Uint16Array needs 2-byte alignment; the kernels copy into 16-byte aligned wasm memory):
 *   0  u32  magic 0x47345153 ("SQ4G")
 *   4  u16  version = 1
 *   6  u8   groupSize (32 | 64 | 128)
 *   7  u8   flags: bit 0 = has zero points, bit 1 = has fp16 mins (never both; then K % G == 0)
 *   8  u32  N
 *   12 u32  K
 *   16 u32  byte offset of qweight (= 32)
 *   20 u32  byte offset of scales
 *   24 u32  byte offset of zeros, or of mins when flag bit 1 is set (0 when symmetric)
 *   28 u32  total byte length
 *   32 ...  qweight, scales, zeros | mins, each starting at a multiple of 16; gaps are zero bytes.
 *
 * A blob that sits in WebAssembly memory is used in place (`WasmKernels.int4At`): `int4BlobGeometry`
 * reads just the header. The kernels read up to 8 bytes past the end of the scales, zeros and mins sections
 * (4 groups' scales or mins / a u16 of zero nibbles at a time; the values read there are never used, any
 * bytes are fine), so a blob needs 16 bytes of addressable memory after it.
 *
 * ## Int8 ("Q8G"): symmetric 8-bit, per-group or per-row fp16 scale (embeddings / output head)
 *   groupSize G ∈ {32, 64, 128} or per row (one group of G = roundUp(K, 32)).
 *   data: Int8Array, N * kPadded codes in [-127, 127], row n at n * kPadded, in k order; padding is 0.
 *   scales: Uint16Array fp16, N * nGroups.  w[n][k] = q * scale[n * nGroups + floor(k / G)].
 *
 * Serialized blob (`serializeInt8`), same conventions as the int4 blob:
 *   0  u32  magic 0x47385153 ("SQ8G")
 *   4  u16  version = 1
 *   6  u8   groupSize (32 | 64 | 128), 0 for per-row scales
 *   7  u8   flags: bit 0 = per-row scales (then G = kPadded = roundUp(K, 32))
 *   8  u32  N
 *   12 u32  K
 *   16 u32  byte offset of data (= 32)
 *   20 u32  byte offset of scales
 *   24 u32  0 (reserved; the int4 blob's zeros offset)
 *   28 u32  total byte length
 *   32 ...  data (N * kPadded int8), scales (N * nGroups fp16), each at a multiple of 16; gaps are zero.
 * The int8 kernels read nothing past the sections (no slack needed beyond the engine's usual 16 bytes).
 */

export type Int4GroupSize = 32 | 64 | 128;
export const INT4_GROUP_SIZES: readonly Int4GroupSize[] = [32, 64, 128];

export interface Int4Options {
  /** Elements along K per scale; default 32. */
  groupSize?: Int4GroupSize;
  /** Asymmetric uint4 codes with a per-group zero point; default false (signed, implicit zero 8). */
  zeroPoint?: boolean;
  /** fp16 per-group mins instead of zero points (w = q * d + m; sizing / layout only, no quantizer). */
  mins?: boolean;
}

export interface PackedInt4 {
  readonly format: "int4";
  readonly N: number;
  readonly K: number;
  readonly groupSize: Int4GroupSize;
  readonly nGroups: number;
  /** nGroups * groupSize: the row length the kernels work on. */
  readonly kPadded: number;
  readonly qweight: Uint8Array;
  /** fp16 bit patterns. */
  readonly scales: Uint16Array;
  /** Packed uint4 zero points, or null (symmetric, zero point 8, or fp16 mins). */
  readonly zeros: Uint8Array | null;
  /**
   * fp16 per-group minimums (N * nGroups bit patterns, like scales), or null / absent: then
   * w = q * scale + min (ggml Q4_1) and zeros is null.
   */
  readonly mins?: Uint16Array | null;
}

/** True when the tensor carries fp16 mins (w = q * scale + min, ggml Q4_1 semantics). */
export function hasMins(p: PackedInt4): p is PackedInt4 & { readonly mins: Uint16Array } {
  return p.mins !== undefined && p.mins !== null;
}

export type Int8GroupSize = Int4GroupSize | "row";

export interface PackedInt8 {
  readonly format: "int8";
  readonly N: number;
  readonly K: number;
  /** Elements per scale (for per-row: kPadded). */
  readonly groupSize: number;
  readonly perRow: boolean;
  readonly nGroups: number;
  readonly kPadded: number;
  readonly data: Int8Array;
  /** fp16 bit patterns, N * nGroups. */
  readonly scales: Uint16Array;
}

// ---------------------------------------------------------------------------------------------
// fp16 <-> fp32 (Node 20 has no Math.f16round).

const cvtBuf = new DataView(new ArrayBuffer(4));

/** fp32 -> IEEE binary16 bits, round to nearest even, with subnormals, overflow to ±inf. */
export function f32ToF16(value: number): number {
  cvtBuf.setFloat32(0, value, true);
  const x = cvtBuf.getUint32(0, true);
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // inf / nan
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign; // rounds to ±0
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let h = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    if (rest > half || (rest === half && h & 1)) h++;
    return sign | h; // carry into the exponent field is the correct result
  }
  let h = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && h & 1)) h++; // may carry up to inf: correct
  return sign | h;
}

/** IEEE binary16 bits -> number. */
export function f16ToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

// ---------------------------------------------------------------------------------------------
// Int4

function checkShape(weights: Float32Array, N: number, K: number): void {
  if (!Number.isInteger(N) || !Number.isInteger(K) || N <= 0 || K <= 0) {
    throw new Error(`int4: bad shape [${N}, ${K}]`);
  }
  if (weights.length !== N * K) throw new Error(`int4: ${weights.length} values for shape [${N}, ${K}]`);
}

export function int4Geometry(K: number, groupSize: Int4GroupSize) {
  if (!INT4_GROUP_SIZES.includes(groupSize)) throw new Error(`int4: group size ${groupSize} not 32/64/128`);
  const nGroups = Math.ceil(K / groupSize);
  return { nGroups, kPadded: nGroups * groupSize, zeroBytesPerRow: Math.ceil(nGroups / 2) };
}

/** Bytes of the three arrays for a tensor (what it costs in memory). */
export function int4ByteLength(N: number, K: number, opts: Int4Options = {}): number {
  const { nGroups, kPadded, zeroBytesPerRow } = int4Geometry(K, opts.groupSize ?? 32);
  const extra = opts.mins ? nGroups * 2 : opts.zeroPoint ? zeroBytesPerRow : 0;
  return N * (kPadded / 2 + nGroups * 2 + extra);
}

/** Byte index and shift of code k within a row's qweight (k relative to the row start). */
function nibblePos(k: number): { byte: number; shift: number } {
  const chunk = k >> 5;
  const j = k & 31;
  return { byte: chunk * 16 + (j & 15), shift: j < 16 ? 0 : 4 };
}

function roundHalfAway(v: number): number {
  return v < 0 ? -Math.round(-v) : Math.round(v);
}

/**
 * Plain round-to-nearest quantization (the baseline later methods are compared against).
 * Symmetric: the group's largest-magnitude value maps to code 0 (scale = that value / -8), so the full
 * -8..7 range is used. Asymmetric: [min(0, lo), max(0, hi)] maps onto 0..15 with an integer zero point.
 * Codes are computed against the fp16-rounded scale actually stored.
 */
export function quantizeRtn(weights: Float32Array, N: number, K: number, opts: Int4Options = {}): PackedInt4 {
  checkShape(weights, N, K);
  const groupSize = opts.groupSize ?? 32;
  const asym = opts.zeroPoint ?? false;
  const { nGroups, kPadded, zeroBytesPerRow } = int4Geometry(K, groupSize);
  const rowBytes = kPadded / 2;
  const qweight = new Uint8Array(N * rowBytes);
  const scales = new Uint16Array(N * nGroups);
  const zeros = asym ? new Uint8Array(N * zeroBytesPerRow) : null;

  for (let n = 0; n < N; n++) {
    const row = n * K;
    const qrow = n * rowBytes;
    for (let g = 0; g < nGroups; g++) {
      const k0 = g * groupSize;
      const k1 = Math.min(k0 + groupSize, K);
      let scale: number;
      let z: number;
      if (asym) {
        let lo = 0;
        let hi = 0;
        for (let k = k0; k < k1; k++) {
          const v = weights[row + k]!;
          if (v < lo) lo = v;
          if (v > hi) hi = v;
        }
        const h = f32ToF16((hi - lo) / 15);
        scale = f16ToF32(h);
        scales[n * nGroups + g] = h;
        z = scale > 0 ? Math.min(15, Math.max(0, roundHalfAway(-lo / scale))) : 0;
        zeros![n * zeroBytesPerRow + (g >> 1)]! |= z << ((g & 1) * 4);
      } else {
        let amax = 0;
        let vmax = 0;
        for (let k = k0; k < k1; k++) {
          const v = weights[row + k]!;
          if (Math.abs(v) > amax) {
            amax = Math.abs(v);
            vmax = v;
          }
        }
        const h = f32ToF16(vmax / -8);
        scale = f16ToF32(h);
        scales[n * nGroups + g] = h;
        z = 8;
      }
      const inv = scale !== 0 ? 1 / scale : 0;
      for (let k = k0; k < k0 + groupSize; k++) {
        const q = k < k1 ? Math.min(15, Math.max(0, roundHalfAway(weights[row + k]! * inv) + z)) : z;
        const { byte, shift } = nibblePos(k);
        qweight[qrow + byte]! |= q << shift;
      }
    }
  }
  return { format: "int4", N, K, groupSize, nGroups, kPadded, qweight, scales, zeros };
}

/** Zero point of group g in row n. */
export function int4ZeroPoint(p: PackedInt4, n: number, g: number): number {
  if (!p.zeros) return 8;
  const b = p.zeros[n * Math.ceil(p.nGroups / 2) + (g >> 1)]!;
  return (b >> ((g & 1) * 4)) & 15;
}

/** Raw 4-bit code of element (n, k), k < kPadded. */
export function int4Code(p: PackedInt4, n: number, k: number): number {
  const { byte, shift } = nibblePos(k);
  return (p.qweight[n * (p.kPadded / 2) + byte]! >> shift) & 15;
}

/**
 * Dequantizes row n into out (length >= K). With mins: q * d + m rounded to fp32 once, which is exactly
 * ggml's dequantize_row_q4_1 (q * d is exact in fp32, and a double sum of two fp32 values rounds to the
 * correctly rounded fp32 sum).
 */
export function dequantizeInt4Row(p: PackedInt4, n: number, out: Float32Array): Float32Array {
  const rowBytes = p.kPadded / 2;
  const mins = hasMins(p) ? p.mins : null;
  for (let g = 0; g < p.nGroups; g++) {
    const s = f16ToF32(p.scales[n * p.nGroups + g]!);
    const z = mins ? 0 : int4ZeroPoint(p, n, g);
    const m = mins ? f16ToF32(mins[n * p.nGroups + g]!) : 0;
    const k0 = g * p.groupSize;
    const k1 = Math.min(k0 + p.groupSize, p.K);
    for (let k = k0; k < k1; k++) {
      const { byte, shift } = nibblePos(k);
      const q = (p.qweight[n * rowBytes + byte]! >> shift) & 15;
      out[k] = mins ? Math.fround(q * s) + m : (q - z) * s;
    }
  }
  return out;
}

/** Dequantizes to a row-major [N, K] fp32 matrix. */
export function dequantize(p: PackedInt4): Float32Array {
  const out = new Float32Array(p.N * p.K);
  for (let n = 0; n < p.N; n++) dequantizeInt4Row(p, n, out.subarray(n * p.K, (n + 1) * p.K));
  return out;
}

// ---------------------------------------------------------------------------------------------
// onnxruntime com.microsoft MatMulNBits (bits = 4)

export interface MatMulNBitsWeights {
  K: number;
  N: number;
  bits: 4;
  blockSize: number;
  /** uint8 [N][nBlocks][blockSize/2]: element 2i of a block in the low nibble of byte i, 2i+1 in the high. */
  B: Uint8Array;
  /** [N * nBlocks] as float32, or fp16 bits when scaleType is "float16". */
  scales: Float32Array | Uint16Array;
  scaleType: "float32" | "float16";
  /**
   * Packed uint8 [N][ceil(nBlocks/2)], or float32 [N][nBlocks] (the scales' type; fp16-min tensors:
   * toMatMulNBitsFloatZeros), or null (default zero point 8).
   */
  zeroPoints: Uint8Array | Float32Array | null;
}

/** Converts to MatMulNBits inputs: the nibble order changes, zero points are already ORT-packed. */
export function toMatMulNBits(
  p: PackedInt4,
  scaleType: "float32" | "float16" = "float32",
): MatMulNBitsWeights {
  if (hasMins(p))
    throw new Error("toMatMulNBits: fp16 mins have no uint4 zero point (see toMatMulNBitsFloatZeros)");
  return { ...toMatMulNBitsCodes(p, scaleType), zeroPoints: p.zeros ? p.zeros.slice() : null };
}

/**
 * MatMulNBits inputs for a tensor with fp16 mins, float32 scales and float zero points z = -m / d, so
 * that ORT's (q - z) * d = q * d + m up to rounding (an oracle with a tolerance, not a lossless form).
 * Throws on a zero scale (no such z).
 */
export function toMatMulNBitsFloatZeros(p: PackedInt4): MatMulNBitsWeights {
  if (!hasMins(p)) throw new Error("toMatMulNBitsFloatZeros: the tensor has no fp16 mins");
  const zeroPoints = new Float32Array(p.mins.length);
  for (let i = 0; i < zeroPoints.length; i++) {
    const d = f16ToF32(p.scales[i]!);
    if (d === 0) throw new Error(`toMatMulNBitsFloatZeros: group ${i} has a zero scale`);
    zeroPoints[i] = -f16ToF32(p.mins[i]!) / d;
  }
  return { ...toMatMulNBitsCodes(p, "float32"), zeroPoints };
}

function toMatMulNBitsCodes(
  p: PackedInt4,
  scaleType: "float32" | "float16",
): Omit<MatMulNBitsWeights, "zeroPoints"> {
  const rowBytes = p.kPadded / 2;
  const B = new Uint8Array(p.N * rowBytes);
  for (let n = 0; n < p.N; n++) {
    const base = n * rowBytes;
    for (let k = 0; k < p.kPadded; k += 2) {
      const a = nibblePos(k);
      const b = nibblePos(k + 1);
      const lo = (p.qweight[base + a.byte]! >> a.shift) & 15;
      const hi = (p.qweight[base + b.byte]! >> b.shift) & 15;
      // Groups are contiguous and blockSize == groupSize, so k/2 is the byte index within the row.
      B[base + (k >> 1)] = lo | (hi << 4);
    }
  }
  const scales = scaleType === "float16" ? p.scales.slice() : Float32Array.from(p.scales, f16ToF32);
  return {
    K: p.K,
    N: p.N,
    bits: 4,
    blockSize: p.groupSize,
    B,
    scales,
    scaleType,
  };
}

/** Inverse of toMatMulNBits (imports ORT-quantized weights). float32 scales are rounded to fp16. */
export function fromMatMulNBits(m: MatMulNBitsWeights): PackedInt4 {
  if (m.zeroPoints instanceof Float32Array)
    throw new Error("fromMatMulNBits: float zero points are not supported");
  const groupSize = m.blockSize as Int4GroupSize;
  const { nGroups, kPadded } = int4Geometry(m.K, groupSize);
  const rowBytes = kPadded / 2;
  if (m.B.length !== m.N * rowBytes) throw new Error("fromMatMulNBits: B size mismatch");
  const qweight = new Uint8Array(m.N * rowBytes);
  for (let n = 0; n < m.N; n++) {
    const base = n * rowBytes;
    for (let k = 0; k < kPadded; k += 2) {
      const v = m.B[base + (k >> 1)]!;
      const a = nibblePos(k);
      const b = nibblePos(k + 1);
      qweight[base + a.byte]! |= (v & 15) << a.shift;
      qweight[base + b.byte]! |= (v >> 4) << b.shift;
    }
  }
  const scales =
    m.scaleType === "float16" ? Uint16Array.from(m.scales) : Uint16Array.from(m.scales, (v) => f32ToF16(v));
  return {
    format: "int4",
    N: m.N,
    K: m.K,
    groupSize,
    nGroups,
    kPadded,
    qweight,
    scales,
    zeros: m.zeroPoints ? (m.zeroPoints as Uint8Array).slice() : null,
  };
}

// ---------------------------------------------------------------------------------------------
// Serialization

const INT4_MAGIC = 0x47345153;
const INT8_MAGIC = 0x47385153;
/** Size of the int4 / int8 blob header. */
export const BLOB_HEADER_BYTES = 32;
const align16 = (n: number) => (n + 15) & ~15;

/** Where an int4 blob's sections lie (byte offsets from the blob start) and its tensor geometry. */
export interface Int4BlobGeometry {
  readonly N: number;
  readonly K: number;
  readonly groupSize: Int4GroupSize;
  readonly zeroPoint: boolean;
  /** fp16 mins (flag bit 1): then zerosOffset is where the mins section starts. */
  readonly mins: boolean;
  readonly nGroups: number;
  readonly kPadded: number;
  readonly qweightOffset: number;
  readonly scalesOffset: number;
  /** Start of the zeros section, or of the mins section when `mins`; 0 when symmetric. */
  readonly zerosOffset: number;
  /** Total blob bytes. */
  readonly byteLength: number;
}

/** The blob layout `serializeInt4` writes for a tensor of this shape (e.g. to size a pack without data). */
export function int4BlobLayout(N: number, K: number, opts: Int4Options = {}): Int4BlobGeometry {
  const groupSize = opts.groupSize ?? 32;
  const zeroPoint = opts.zeroPoint ?? false;
  const mins = opts.mins ?? false;
  if (mins && zeroPoint) throw new Error("int4: zero points and mins exclude each other");
  const { nGroups, kPadded, zeroBytesPerRow } = int4Geometry(K, groupSize);
  if (mins && kPadded !== K) throw new Error(`int4: mins need K (${K}) to be a multiple of ${groupSize}`);
  const qweightOffset = BLOB_HEADER_BYTES;
  const scalesOffset = align16(qweightOffset + (N * kPadded) / 2);
  const scalesEnd = scalesOffset + N * nGroups * 2;
  const extra = mins ? N * nGroups * 2 : zeroPoint ? N * zeroBytesPerRow : 0;
  const zerosOffset = extra > 0 ? align16(scalesEnd) : 0;
  const byteLength = extra > 0 ? zerosOffset + extra : scalesEnd;
  return {
    N,
    K,
    groupSize,
    zeroPoint,
    mins,
    nGroups,
    kPadded,
    qweightOffset,
    scalesOffset,
    zerosOffset,
    byteLength,
  };
}

function headerView(header: Uint8Array, what: string): DataView {
  if (header.byteLength < BLOB_HEADER_BYTES) throw new Error(`${what} blob: too short`);
  return new DataView(header.buffer, header.byteOffset, BLOB_HEADER_BYTES);
}

function checkDims(N: number, K: number, what: string): void {
  if (N <= 0 || K <= 0) throw new Error(`${what} blob: bad shape [${N}, ${K}]`);
}

/**
 * Parses and validates an int4 blob header (only the first 32 bytes of `header` are read), e.g. of a
 * blob already in wasm memory. Throws unless every offset is the one `serializeInt4` writes.
 */
export function int4BlobGeometry(header: Uint8Array): Int4BlobGeometry {
  const dv = headerView(header, "int4");
  if (dv.getUint32(0, true) !== INT4_MAGIC) throw new Error("int4 blob: bad magic");
  if (dv.getUint16(4, true) !== 1) throw new Error(`int4 blob: version ${dv.getUint16(4, true)}`);
  const groupSize = dv.getUint8(6) as Int4GroupSize;
  if (!INT4_GROUP_SIZES.includes(groupSize)) throw new Error(`int4 blob: group size ${groupSize}`);
  const flags = dv.getUint8(7);
  if (flags > 2) throw new Error(`int4 blob: flags ${flags} (bit 0 = zero points, bit 1 = mins, not both)`);
  const N = dv.getUint32(8, true);
  const K = dv.getUint32(12, true);
  checkDims(N, K, "int4");
  const mins = (flags & 2) === 2;
  if (mins && K % groupSize !== 0)
    throw new Error(`int4 blob: mins with K ${K} not a multiple of ${groupSize}`);
  const g = int4BlobLayout(N, K, { groupSize, zeroPoint: (flags & 1) === 1, mins });
  if (
    dv.getUint32(16, true) !== g.qweightOffset ||
    dv.getUint32(20, true) !== g.scalesOffset ||
    dv.getUint32(24, true) !== g.zerosOffset ||
    dv.getUint32(28, true) !== g.byteLength
  ) {
    throw new Error(`int4 blob: section offsets do not match [${N}, ${K}] g${groupSize}`);
  }
  return g;
}

export function serializeInt4(p: PackedInt4): Uint8Array {
  const mins = hasMins(p) ? p.mins : null;
  if (mins && p.zeros) throw new Error("serializeInt4: a tensor has zero points or mins, not both");
  if (mins && mins.length !== p.scales.length)
    throw new Error("serializeInt4: mins and scales differ in length");
  const g = int4BlobLayout(p.N, p.K, {
    groupSize: p.groupSize,
    zeroPoint: p.zeros !== null,
    mins: mins !== null,
  });
  const qOff = g.qweightOffset;
  const sOff = g.scalesOffset;
  const zOff = g.zerosOffset;
  const total = g.byteLength;
  const out = new Uint8Array(total);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, INT4_MAGIC, true);
  dv.setUint16(4, 1, true);
  dv.setUint8(6, p.groupSize);
  dv.setUint8(7, p.zeros ? 1 : mins ? 2 : 0);
  dv.setUint32(8, p.N, true);
  dv.setUint32(12, p.K, true);
  dv.setUint32(16, qOff, true);
  dv.setUint32(20, sOff, true);
  dv.setUint32(24, zOff, true);
  dv.setUint32(28, total, true);
  out.set(p.qweight, qOff);
  for (let i = 0; i < p.scales.length; i++) dv.setUint16(sOff + 2 * i, p.scales[i]!, true);
  if (p.zeros) out.set(p.zeros, zOff);
  if (mins) for (let i = 0; i < mins.length; i++) dv.setUint16(zOff + 2 * i, mins[i]!, true);
  return out;
}

/** Views into `bytes` where alignment allows (little-endian hosts), copies otherwise. */
export function deserializeInt4(bytes: Uint8Array): PackedInt4 {
  const g = int4BlobGeometry(bytes);
  if (g.byteLength > bytes.byteLength) throw new Error("int4 blob: truncated");
  const { N, K, groupSize, nGroups, kPadded } = g;
  const { zeroBytesPerRow } = int4Geometry(K, groupSize);
  const qweight = bytes.subarray(g.qweightOffset, g.qweightOffset + N * (kPadded / 2));
  const scales = readU16(bytes, g.scalesOffset, N * nGroups);
  const zeros = g.zeroPoint ? bytes.subarray(g.zerosOffset, g.zerosOffset + N * zeroBytesPerRow) : null;
  if (g.mins) {
    const mins = readU16(bytes, g.zerosOffset, N * nGroups);
    return { format: "int4", N, K, groupSize, nGroups, kPadded, qweight, scales, zeros, mins };
  }
  return { format: "int4", N, K, groupSize, nGroups, kPadded, qweight, scales, zeros };
}

/** A view of `count` little-endian u16 at `offset` when aligned (little-endian hosts), else a copy. */
function readU16(bytes: Uint8Array, offset: number, count: number): Uint16Array {
  if ((bytes.byteOffset + offset) % 2 === 0)
    return new Uint16Array(bytes.buffer, bytes.byteOffset + offset, count);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Uint16Array(count);
  for (let i = 0; i < count; i++) out[i] = dv.getUint16(offset + 2 * i, true);
  return out;
}

/** Where an int8 blob's sections lie (byte offsets from the blob start) and its tensor geometry. */
export interface Int8BlobGeometry {
  readonly N: number;
  readonly K: number;
  /** Elements per scale (kPadded when perRow). */
  readonly groupSize: number;
  readonly perRow: boolean;
  readonly nGroups: number;
  readonly kPadded: number;
  readonly dataOffset: number;
  readonly scalesOffset: number;
  readonly byteLength: number;
}

/** groupSize / nGroups / kPadded of an int8 tensor (per-row: one group of roundUp(K, 32)). */
export function int8Geometry(K: number, groupSize: Int8GroupSize) {
  const perRow = groupSize === "row";
  if (!perRow && !INT4_GROUP_SIZES.includes(groupSize)) throw new Error(`int8: group size ${groupSize}`);
  const gs = perRow ? Math.ceil(K / 32) * 32 : groupSize;
  const nGroups = Math.ceil(K / gs);
  return { groupSize: gs, perRow, nGroups, kPadded: nGroups * gs };
}

/** The blob layout `serializeInt8` writes for a tensor of this shape. */
export function int8BlobLayout(N: number, K: number, groupSize: Int8GroupSize = "row"): Int8BlobGeometry {
  const geo = int8Geometry(K, groupSize);
  const dataOffset = BLOB_HEADER_BYTES;
  const scalesOffset = align16(dataOffset + N * geo.kPadded);
  return { N, K, ...geo, dataOffset, scalesOffset, byteLength: scalesOffset + N * geo.nGroups * 2 };
}

/** Parses and validates an int8 blob header (first 32 bytes only); see int4BlobGeometry. */
export function int8BlobGeometry(header: Uint8Array): Int8BlobGeometry {
  const dv = headerView(header, "int8");
  if (dv.getUint32(0, true) !== INT8_MAGIC) throw new Error("int8 blob: bad magic");
  if (dv.getUint16(4, true) !== 1) throw new Error(`int8 blob: version ${dv.getUint16(4, true)}`);
  const gsByte = dv.getUint8(6);
  const perRow = (dv.getUint8(7) & 1) === 1;
  if (perRow !== (gsByte === 0)) throw new Error("int8 blob: group size and per-row flag disagree");
  const N = dv.getUint32(8, true);
  const K = dv.getUint32(12, true);
  checkDims(N, K, "int8");
  const g = int8BlobLayout(N, K, perRow ? "row" : (gsByte as Int4GroupSize));
  if (
    dv.getUint32(16, true) !== g.dataOffset ||
    dv.getUint32(20, true) !== g.scalesOffset ||
    dv.getUint32(24, true) !== 0 ||
    dv.getUint32(28, true) !== g.byteLength
  ) {
    throw new Error(`int8 blob: section offsets do not match [${N}, ${K}]`);
  }
  return g;
}

export function serializeInt8(p: PackedInt8): Uint8Array {
  const g = int8BlobLayout(p.N, p.K, p.perRow ? "row" : (p.groupSize as Int4GroupSize));
  if (g.kPadded !== p.kPadded || g.nGroups !== p.nGroups || g.groupSize !== p.groupSize) {
    throw new Error("serializeInt8: inconsistent tensor geometry");
  }
  const out = new Uint8Array(g.byteLength);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, INT8_MAGIC, true);
  dv.setUint16(4, 1, true);
  dv.setUint8(6, p.perRow ? 0 : p.groupSize);
  dv.setUint8(7, p.perRow ? 1 : 0);
  dv.setUint32(8, p.N, true);
  dv.setUint32(12, p.K, true);
  dv.setUint32(16, g.dataOffset, true);
  dv.setUint32(20, g.scalesOffset, true);
  dv.setUint32(24, 0, true);
  dv.setUint32(28, g.byteLength, true);
  out.set(new Uint8Array(p.data.buffer, p.data.byteOffset, p.data.byteLength), g.dataOffset);
  for (let i = 0; i < p.scales.length; i++) dv.setUint16(g.scalesOffset + 2 * i, p.scales[i]!, true);
  return out;
}

/** Views into `bytes` where alignment allows (little-endian hosts), copies otherwise. */
export function deserializeInt8(bytes: Uint8Array): PackedInt8 {
  const g = int8BlobGeometry(bytes);
  if (g.byteLength > bytes.byteLength) throw new Error("int8 blob: truncated");
  const { N, K, groupSize, perRow, nGroups, kPadded } = g;
  const data = new Int8Array(bytes.buffer, bytes.byteOffset + g.dataOffset, N * kPadded);
  const scales = readU16(bytes, g.scalesOffset, N * nGroups);
  return { format: "int8", N, K, groupSize, perRow, nGroups, kPadded, data, scales };
}

// ---------------------------------------------------------------------------------------------
// Int8 (symmetric, per group or per row)

export function quantizeInt8Rtn(
  weights: Float32Array,
  N: number,
  K: number,
  opts: { groupSize?: Int8GroupSize } = {},
): PackedInt8 {
  checkShape(weights, N, K);
  const { groupSize, perRow, nGroups, kPadded } = int8Geometry(K, opts.groupSize ?? "row");
  const data = new Int8Array(N * kPadded);
  const scales = new Uint16Array(N * nGroups);
  for (let n = 0; n < N; n++) {
    for (let g = 0; g < nGroups; g++) {
      const k0 = g * groupSize;
      const k1 = Math.min(k0 + groupSize, K);
      let amax = 0;
      for (let k = k0; k < k1; k++) amax = Math.max(amax, Math.abs(weights[n * K + k]!));
      const h = f32ToF16(amax / 127);
      scales[n * nGroups + g] = h;
      const s = f16ToF32(h);
      const inv = s !== 0 ? 1 / s : 0;
      for (let k = k0; k < k1; k++) {
        data[n * kPadded + k] = Math.min(127, Math.max(-127, roundHalfAway(weights[n * K + k]! * inv)));
      }
    }
  }
  return { format: "int8", N, K, groupSize, perRow, nGroups, kPadded, data, scales };
}

export function dequantizeInt8Row(p: PackedInt8, n: number, out: Float32Array): Float32Array {
  for (let g = 0; g < p.nGroups; g++) {
    const s = f16ToF32(p.scales[n * p.nGroups + g]!);
    const k0 = g * p.groupSize;
    const k1 = Math.min(k0 + p.groupSize, p.K);
    for (let k = k0; k < k1; k++) out[k] = p.data[n * p.kPadded + k]! * s;
  }
  return out;
}

export function dequantizeInt8(p: PackedInt8): Float32Array {
  const out = new Float32Array(p.N * p.K);
  for (let n = 0; n < p.N; n++) dequantizeInt8Row(p, n, out.subarray(n * p.K, (n + 1) * p.K));
  return out;
}
