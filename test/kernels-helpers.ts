/**
 * Shared by test/kernels-*.test.ts and scripts/bench-kernels.ts: wasm loading (builds on demand),
 * deterministic data, plain-TS references, and a minimal ONNX protobuf writer for a one-node
 * com.microsoft MatMulNBits model (the independent oracle run with onnxruntime-web).
 */
import { fileURLToPath } from "node:url";
import type * as OrtTypes from "onnxruntime-web";
import { ensureKernelsWasm } from "../scripts/build-wasm.ts";
import type { MatMulNBitsWeights } from "../src/format/int4.ts";
import type { WasmKernels } from "../src/kernels/wasm/index.ts";
import { loadKernelsNode } from "../src/kernels/wasm/node.ts";
import { mulberry32 } from "./helpers/random.ts";

export async function loadTestKernels(): Promise<WasmKernels> {
  return loadKernelsNode(await ensureKernelsWasm());
}

/** Deterministic PRNG (mulberry32). */
export const rng = mulberry32;

/** Roughly Gaussian values (sum of uniforms), scaled. */
export function randn(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (r() + r() + r() + r() - 2) * 1.7320508 * scale;
  return out;
}

/** y = W x in float64, W row-major [N][K]. */
export function refMatvec(w: Float32Array, x: Float32Array, N: number, K: number): Float32Array {
  const y = new Float32Array(N);
  for (let n = 0; n < N; n++) {
    let s = 0;
    for (let k = 0; k < K; k++) s += w[n * K + k]! * x[k]!;
    y[n] = s;
  }
  return y;
}

function roundEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** TS model of quantize_q8: per 32-block d = amax/127, codes = roundEven(x * 127/amax), in f32; k order. */
export function emulateQ8(x: Float32Array, kPadded: number): { q: Int8Array; d: Float32Array } {
  const q = new Int8Array(kPadded);
  const d = new Float32Array(kPadded / 32);
  for (let b = 0; b < kPadded / 32; b++) {
    let amax = 0;
    for (let k = b * 32; k < b * 32 + 32; k++) amax = Math.max(amax, Math.abs(x[k] ?? 0));
    d[b] = Math.fround(amax / 127);
    const id = amax > 0 ? Math.fround(127 / amax) : 0;
    for (let k = b * 32; k < b * 32 + 32; k++) q[k] = roundEven(Math.fround((x[k] ?? 0) * id));
  }
  return { q, d };
}

/** max |a - b| / max |b| (error relative to the output's scale; per-element ratios blow up near 0). */
export function relErr(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let d = 0;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i]! - b[i]!));
    m = Math.max(m, Math.abs(b[i]!));
  }
  return m === 0 ? d : d / m;
}

// ---------------------------------------------------------------------------------------------
// Minimal protobuf writer for onnx.proto (field numbers from onnx/onnx.proto).

class Pb {
  private readonly parts: Uint8Array[] = [];
  private varint(v: number): void {
    const bytes: number[] = [];
    let x = BigInt(v);
    do {
      let b = Number(x & 0x7fn);
      x >>= 7n;
      if (x > 0n) b |= 0x80;
      bytes.push(b);
    } while (x > 0n);
    this.parts.push(Uint8Array.from(bytes));
  }
  int(field: number, v: number): this {
    this.varint(field << 3);
    this.varint(v);
    return this;
  }
  bytes(field: number, data: Uint8Array): this {
    this.varint((field << 3) | 2);
    this.varint(data.length);
    this.parts.push(data);
    return this;
  }
  str(field: number, s: string): this {
    return this.bytes(field, new TextEncoder().encode(s));
  }
  msg(field: number, m: Pb): this {
    return this.bytes(field, m.finish());
  }
  finish(): Uint8Array {
    const len = this.parts.reduce((a, p) => a + p.length, 0);
    const out = new Uint8Array(len);
    let o = 0;
    for (const p of this.parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  }
}

const ONNX_FLOAT = 1;
const ONNX_UINT8 = 2;
const ONNX_FLOAT16 = 10;

function tensorProto(name: string, dims: number[], dataType: number, raw: Uint8Array): Pb {
  const t = new Pb();
  for (const d of dims) t.int(1, d);
  return t.int(2, dataType).str(8, name).bytes(9, raw);
}

function valueInfo(name: string, elemType: number, dims: (number | string)[]): Pb {
  const shape = new Pb();
  for (const d of dims) shape.msg(1, typeof d === "number" ? new Pb().int(1, d) : new Pb().str(2, d));
  const tensorType = new Pb().int(1, elemType).msg(2, shape);
  return new Pb().str(1, name).msg(2, new Pb().msg(1, tensorType));
}

function attrInt(name: string, v: number): Pb {
  return new Pb().str(1, name).int(20, 2).int(3, v);
}

const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** ModelProto bytes: Y[M, N] = MatMulNBits(A[M, K], B, scales[, zero_points]). M is symbolic. */
export function matMulNBitsModel(w: MatMulNBitsWeights, accuracyLevel = 0): Uint8Array {
  const nBlocks = Math.ceil(w.K / w.blockSize);
  const node = new Pb().str(1, "A").str(1, "B").str(1, "scales");
  if (w.zeroPoints) node.str(1, "zero_points");
  node
    .str(2, "Y")
    .str(3, "mmnb")
    .str(4, "MatMulNBits")
    .str(7, "com.microsoft")
    .msg(5, attrInt("K", w.K))
    .msg(5, attrInt("N", w.N))
    .msg(5, attrInt("bits", 4))
    .msg(5, attrInt("block_size", w.blockSize))
    .msg(5, attrInt("accuracy_level", accuracyLevel));
  const scaleType = w.scaleType === "float16" ? ONNX_FLOAT16 : ONNX_FLOAT;
  const graph = new Pb()
    .msg(1, node)
    .str(2, "matmulnbits")
    .msg(5, tensorProto("B", [w.N, nBlocks, w.blockSize / 2], ONNX_UINT8, w.B))
    .msg(5, tensorProto("scales", [w.N, nBlocks], scaleType, bytesOf(w.scales)));
  if (w.zeroPoints) {
    graph.msg(5, tensorProto("zero_points", [w.N, Math.ceil(nBlocks / 2)], ONNX_UINT8, w.zeroPoints));
  }
  graph.msg(11, valueInfo("A", scaleType, ["M", w.K])).msg(12, valueInfo("Y", scaleType, ["M", w.N]));
  return new Pb()
    .int(1, 8) // ir_version
    .str(2, "shardlm-test")
    .msg(8, new Pb().str(1, "").int(2, 17))
    .msg(8, new Pb().str(1, "com.microsoft").int(2, 1))
    .msg(7, graph)
    .finish();
}

// ---------------------------------------------------------------------------------------------
// onnxruntime-web in Node

let ortPromise: Promise<typeof OrtTypes> | null = null;

export function loadOrt(): Promise<typeof OrtTypes> {
  ortPromise ??= import("onnxruntime-web").then((ort) => {
    ort.env.wasm.numThreads = 1;
    ort.env.wasm.proxy = false;
    // The Node build finds its .wasm next to itself; pin the folder so bundling/cwd never matters.
    ort.env.wasm.wasmPaths = fileURLToPath(new URL("../node_modules/onnxruntime-web/dist/", import.meta.url));
    ort.env.logLevel = "error";
    return ort;
  });
  return ortPromise;
}

export interface OrtMatMul {
  run(a: Float32Array, m: number): Promise<Float32Array>;
  release(): Promise<void>;
}

export async function ortMatMulNBits(w: MatMulNBitsWeights, accuracyLevel = 0): Promise<OrtMatMul> {
  const ort = await loadOrt();
  const session = await ort.InferenceSession.create(matMulNBitsModel(w, accuracyLevel), {
    executionProviders: ["wasm"],
    graphOptimizationLevel: "all",
  });
  return {
    async run(a, m) {
      const out = await session.run({ A: new ort.Tensor("float32", a, [m, w.K]) });
      return out.Y!.data as Float32Array;
    },
    release: () => session.release(),
  };
}
