/**
 * onnxruntime-web as an independent peer for our int4 kernels: a minimal ONNX protobuf writer for a
 * one-node com.microsoft MatMulNBits model (field numbers from onnx/onnx.proto), and that model run
 * in Node on ORT's wasm backend with 1 thread. Oracle and bench peer only, never the hot path.
 */
import { fileURLToPath } from "node:url";
import type * as OrtTypes from "onnxruntime-web";
import type { MatMulNBitsWeights } from "../format/int4.ts";

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
  if (w.zeroPoints instanceof Float32Array) {
    graph.msg(5, tensorProto("zero_points", [w.N, nBlocks], scaleType, bytesOf(w.zeroPoints)));
  } else if (w.zeroPoints) {
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
    ort.env.wasm.wasmPaths = fileURLToPath(
      new URL("../../node_modules/onnxruntime-web/dist/", import.meta.url),
    );
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
