/**
 * WGSL sources of the WebGPU kernels, as generators of plain strings: shape-like constants that size
 * arrays or unroll loops (threads per row, rows per pass, head dim) are baked into the source; the
 * rest comes from a per-dispatch `Params` uniform and the per-pass `Step` uniform (first position,
 * row count, token ids), so one pipeline serves every layer of a model.
 *
 * Weights are read in place from the packed data region (src/format/int4.ts, src/format/weights.ts),
 * bound per tensor as `array<u32>`: int4 codes 8 per word (word t of a 16-byte chunk holds k = 4t..4t+3
 * in its low nibbles and k = 16+4t..16+4t+3 in its high nibbles), int8 codes 4 per word in k order,
 * fp16 scales two per word (`unpack2x16float`), zero points two nibbles per byte, fp16 mins (ggml Q4_1:
 * w = q * d + m) like the scales. Params.hasZ: 0 symmetric (z = 8), 1 zero points, 2 mins.
 *
 * Every kernel runs 64-invocation workgroups, binds at most 4 storage buffers and uses at most 8 KiB of
 * workgroup memory, so all of them fit WebGPU compatibility-mode defaults (OpenGL ES). Reductions use
 * workgroup memory trees, or, with the `subgroups` feature, butterflies over aligned runs of
 * `subgroupMinSize` lanes then a short tree (see KernelFeatures). `shader-f16` only changes how the
 * fp16 KV cache is addressed (native `vec2<f16>` instead of `pack2x16float` on `u32`): same bits.
 *
 * Bindings, in order, for each kernel are listed in `BINDINGS` (the engine and ./kernels.ts build
 * their bind group layouts from it).
 */
import type { KernelFeatures } from "./device.ts";

export const WG = 64;
/** Most activation rows one matmul / prefill pass handles (register accumulators per thread). */
export const MAX_ROWS = 16;

/** The per-pass uniform every row-wise kernel reads: 32 + 64 bytes. */
export const STEP_WGSL = /* wgsl */ `
struct Step { pos0: u32, rows: u32, p0: u32, p1: u32, tok: array<vec4<u32>, 4> }`;
export const STEP_BYTES = 80;

type Binding = "uniform" | "read" | "rw";

export type KvStorage = "f16" | "f32";

export interface MatvecSpec {
  format: "int4" | "int8";
  /** Threads cooperating on one output row (threadsPerRow). */
  threadsPerRow: number;
  /** Register accumulators per thread: 1 for decode matvecs, up to MAX_ROWS for prefill. */
  maxRows: number;
  /** store: y = Wx (+ bias); add: y += Wx (residual); swiglu: y = silu(W x) * (W2 x). */
  epilogue: "store" | "add" | "swiglu";
  bias?: boolean;
}

/**
 * Threads cooperating on one output row, a power of two <= 64: on GPUs enough that each handles ~2-4
 * words (adjacent threads read adjacent words). On CPU adapters (lavapipe) 1: each invocation owns a
 * row, so there is no cross-lane reduction at all; reductions cost more there than the loads they
 * spread (measured 3-4x slower at 16 threads per row), and they dominate shader compile time.
 */
export function threadsPerRow(wordsPerRow: number, cpu = false): number {
  if (cpu) return 1;
  let t = 1;
  while (t < WG && t * 4 <= wordsPerRow) t *= 2;
  return t;
}

export function matvecBindings(spec: MatvecSpec): Binding[] {
  const b: Binding[] = ["uniform", "uniform", "read", "read", "rw"];
  if (spec.epilogue === "swiglu" || spec.bias) b.push("read");
  return b;
}

export const BINDINGS = {
  embed: ["uniform", "uniform", "read", "rw"] as Binding[],
  rmsnorm: ["uniform", "uniform", "read", "read", "rw"] as Binding[],
  ropeKv: ["uniform", "uniform", "read", "rw", "rw"] as Binding[],
  attention: ["uniform", "uniform", "read", "read", "rw"] as Binding[],
  argmax: ["uniform", "read", "rw"] as Binding[],
  add: ["uniform", "read", "rw"] as Binding[],
  siluGate: ["uniform", "read", "read", "rw"] as Binding[],
};

function enables(f: KernelFeatures, opts: { f16?: boolean; subgroups?: boolean }): string {
  const lines: string[] = [];
  if (opts.f16 && f.f16) lines.push("enable f16;");
  if (opts.subgroups && f.subgroups) lines.push("enable subgroups;");
  return lines.join("\n");
}

/**
 * WGSL statements that combine `vars` (f32 variables, all lanes) over aligned runs of `seg` lanes of the
 * workgroup (seg a power of two <= 64), with `op` ("+" or "max"), through `red` (workgroup f32 array of
 * at least 64 * vars.length). Afterwards every lane holds its run's result. Must sit in uniform control
 * flow (it has barriers).
 */
export function reduceWgsl(f: KernelFeatures, vars: readonly string[], seg: number, op: "+" | "max"): string {
  const comb = (a: string, b: string) => (op === "+" ? `${a} + ${b}` : `max(${a}, ${b})`);
  const out: string[] = [];
  if (seg <= 1) return "";
  if (f.subgroups) {
    const lanes = Math.min(seg, f.subgroupMinSize);
    for (let o = lanes / 2; o >= 1; o /= 2) {
      for (const v of vars) out.push(`${v} = ${comb(v, `subgroupShuffleXor(${v}, ${o}u)`)};`);
    }
    if (seg > lanes) {
      out.push(`if ((lid & ${lanes - 1}u) == 0u) {`);
      vars.forEach((v, i) => {
        out.push(`  red[${i * WG}u + lid / ${lanes}u] = ${v};`);
      });
      out.push("}", "workgroupBarrier();", "{", `  let rb = (lid & ${~(seg - 1) >>> 0}u) / ${lanes}u;`);
      vars.forEach((v, i) => {
        out.push(`  ${v} = red[${i * WG}u + rb];`);
        out.push(
          `  for (var j = 1u; j < ${seg / lanes}u; j++) { ${v} = ${comb(v, `red[${i * WG}u + rb + j]`)}; }`,
        );
      });
      out.push("}", "workgroupBarrier();");
    }
    return out.join("\n");
  }
  vars.forEach((v, i) => {
    out.push(`red[${i * WG}u + lid] = ${v};`);
  });
  out.push("workgroupBarrier();");
  out.push(`for (var o = ${seg / 2}u; o > 0u; o = o >> 1u) {`);
  out.push(`  if ((lid & ${seg - 1}u) < o) {`);
  vars.forEach((_, i) => {
    const a = `red[${i * WG}u + lid]`;
    out.push(`    ${a} = ${comb(a, `red[${i * WG}u + lid + o]`)};`);
  });
  out.push("  }", "  workgroupBarrier();", "}");
  vars.forEach((v, i) => {
    out.push(`${v} = red[${i * WG}u + (lid & ${~(seg - 1) >>> 0}u)];`);
  });
  out.push("workgroupBarrier();");
  return out.join("\n");
}

/** Params of the matvec kernel, u32 word index by name. */
export const MATVEC_PARAMS = [
  "n",
  "wpr",
  "ng",
  "wpg",
  "gridX",
  "qOff",
  "sOff",
  "zOff",
  "hasZ",
  "q2Off",
  "s2Off",
  "z2Off",
  "xStride",
  "yStride",
  "yOff",
  "rows",
  "bOff",
  "bpw",
  "p2",
  "p3",
] as const;

function paramsStruct(names: readonly string[], f32Names: readonly string[] = []): string {
  const fields = names.map((n) => `${n}: ${f32Names.includes(n) ? "f32" : "u32"}`);
  return `struct Params { ${fields.join(", ")} }`;
}

const HALF_READERS = /* wgsl */ `
fn half_at(h: u32) -> f32 { return unpack2x16float(W[h >> 1u] >> ((h & 1u) * 16u)).x; }
fn nib_at(b: u32, hi: u32) -> f32 { return f32((W[b >> 2u] >> ((b & 3u) * 8u + hi * 4u)) & 15u); }`;

/**
 * y[m][n] = sum_k W[n][k] x[m][k] for rows m < rows (Step.rows, or Params.rows when non-zero), int4 or
 * int8 weights, f32 activations (X rows xStride vec4s apart, zero-padded to kPadded). TPR threads per
 * output row each take every TPR-th word; 64 / TPR rows per workgroup; workgroups on a 2D grid
 * (gridX wide) so vocab-sized heads fit the 65535 limit.
 */
export function matvecWgsl(spec: MatvecSpec, f: KernelFeatures): string {
  const tpr = spec.threadsPerRow;
  if (!(tpr >= 1 && tpr <= WG && (tpr & (tpr - 1)) === 0)) throw new RangeError(`threadsPerRow ${tpr}`);
  const M = spec.maxRows;
  const dual = spec.epilogue === "swiglu";
  const accs = dual ? ["a0", "a1"] : ["a0"];
  const vars: string[] = [];
  for (const a of accs) for (let m = 0; m < M; m++) vars.push(`${a}[${m}]`);
  const int4 = spec.format === "int4";
  const extra = dual
    ? "@group(0) @binding(5) var<storage, read> W2: array<u32>;"
    : spec.bias
      ? "@group(0) @binding(5) var<storage, read> B: array<f32>;"
      : "";
  const half2 = dual
    ? /* wgsl */ `
fn half2_at(h: u32) -> f32 { return unpack2x16float(W2[h >> 1u] >> ((h & 1u) * 16u)).x; }
fn nib2_at(b: u32, hi: u32) -> f32 { return f32((W2[b >> 2u] >> ((b & 3u) * 8u + hi * 4u)) & 15u); }`
    : "";
  const decode = (src: string, off: string, sOff: string, zOff: string, half: string, nib: string) =>
    int4
      ? `{
      let s = ${half}(${sOff} + row * P.ng + g);
      var z = 8.0;
      var mn = 0.0;
      if (P.hasZ == 1u) { z = ${nib}(${zOff} + row * ((P.ng + 1u) >> 1u) + (g >> 1u), g & 1u); }
      if (P.hasZ == 2u) { z = 0.0; mn = ${half}(${zOff} + row * P.ng + g); }
      let word = ${src}[${off} + row * P.wpr + w];
      lo = (vec4<f32>(vec4<u32>(word, word >> 8u, word >> 16u, word >> 24u) & vec4<u32>(15u)) - z) * s + mn;
      hi = (vec4<f32>(vec4<u32>(word >> 4u, word >> 12u, word >> 20u, word >> 28u) & vec4<u32>(15u)) - z) * s + mn;
    }`
      : `{
      let s = ${half}(${sOff} + row * P.ng + g);
      let word = ${src}[${off} + row * P.wpr + w];
      lo = vec4<f32>(vec4<i32>(bitcast<i32>(word << 24u), bitcast<i32>(word << 16u), bitcast<i32>(word << 8u),
        bitcast<i32>(word)) >> vec4<u32>(24u)) * s;
    }`;
  const mac = (acc: string, lo: string, hi: string) =>
    int4
      ? `${acc}[m] += dot(${lo}, X[xb + xi]) + dot(${hi}, X[xb + xi + 4u]);`
      : `${acc}[m] += dot(${lo}, X[xb + w]);`;
  const store =
    spec.epilogue === "add"
      ? "Y[yi] = Y[yi] + a0[m];"
      : spec.epilogue === "swiglu"
        ? "let gv = a0[m]; Y[yi] = gv / (1.0 + exp(-gv)) * a1[m];"
        : spec.bias
          ? "Y[yi] = a0[m] + B[P.bOff + row];"
          : "Y[yi] = a0[m];";
  return /* wgsl */ `${enables(f, { subgroups: true })}
${paramsStruct(MATVEC_PARAMS)}
${STEP_WGSL}
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<uniform> S: Step;
@group(0) @binding(2) var<storage, read> W: array<u32>;
@group(0) @binding(3) var<storage, read> X: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;
${extra}
const TPR = ${tpr}u;
const RPW = ${WG / tpr}u;
const MAXM = ${M}u;
var<workgroup> red: array<f32, ${WG * vars.length}>;
${HALF_READERS}${half2}

@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let t = lid % TPR;
  let rows = select(S.rows, P.rows, P.rows != 0u);
  // bpw consecutive blocks of RPW rows per workgroup (fewer, fatter workgroups on CPU adapters)
  for (var blk = 0u; blk < P.bpw; blk++) {
  let row = ((wid.x + wid.y * P.gridX) * P.bpw + blk) * RPW + lid / TPR;
  var a0: array<f32, ${M}>;
  ${dual ? `var a1: array<f32, ${M}>;` : ""}
  if (row < P.n) {
    for (var w = t; w < P.wpr; w += TPR) {
      let g = w / P.wpg;
      let xi = (w >> 2u) * 8u + (w & 3u);
      var lo: vec4<f32>;
      var hi: vec4<f32>;
      ${decode("W", "P.qOff", "P.sOff", "P.zOff", "half_at", "nib_at")}
      ${
        dual
          ? `let lo0 = lo; let hi0 = hi;
      ${decode("W2", "P.q2Off", "P.s2Off", "P.z2Off", "half2_at", "nib2_at")}`
          : ""
      }
      for (var m = 0u; m < MAXM; m++) {
        if (m < rows) {
          let xb = m * P.xStride;
          ${dual ? mac("a0", "lo0", "hi0") : mac("a0", "lo", "hi")}
          ${dual ? mac("a1", "lo", "hi") : ""}
        }
      }
    }
  }
${reduceWgsl(f, vars, tpr, "+")}
  if (row < P.n && t == 0u) {
    for (var m = 0u; m < MAXM; m++) {
      if (m < rows) {
        let yi = P.yOff + m * P.yStride + row;
        ${store}
      }
    }
  }
  }
}
`;
}

export const EMBED_PARAMS = ["wpr", "ng", "wpg", "qOff", "sOff", "zOff", "hasZ", "xStride"] as const;

/** X[m][0..kPadded) = dequantized row tok[m] of an int4 / int8 table; grid (ceil(wpr / 64), rows). */
export function embedWgsl(format: "int4" | "int8"): string {
  const body =
    format === "int4"
      ? /* wgsl */ `
  let s = half_at(P.sOff + tok * P.ng + g);
  var z = 8.0;
  var mn = 0.0;
  if (P.hasZ == 1u) { z = nib_at(P.zOff + tok * ((P.ng + 1u) >> 1u) + (g >> 1u), g & 1u); }
  if (P.hasZ == 2u) { z = 0.0; mn = half_at(P.zOff + tok * P.ng + g); }
  let lo = (vec4<f32>(vec4<u32>(word, word >> 8u, word >> 16u, word >> 24u) & vec4<u32>(15u)) - z) * s + mn;
  let hi = (vec4<f32>(vec4<u32>(word >> 4u, word >> 12u, word >> 20u, word >> 28u) & vec4<u32>(15u)) - z) * s + mn;
  let k0 = base + (w >> 2u) * 32u + (w & 3u) * 4u;
  for (var i = 0u; i < 4u; i++) { X[k0 + i] = lo[i]; X[k0 + 16u + i] = hi[i]; }`
      : /* wgsl */ `
  let s = half_at(P.sOff + tok * P.ng + g);
  let c = vec4<f32>(vec4<i32>(bitcast<i32>(word << 24u), bitcast<i32>(word << 16u), bitcast<i32>(word << 8u),
    bitcast<i32>(word)) >> vec4<u32>(24u)) * s;
  let k0 = base + w * 4u;
  for (var i = 0u; i < 4u; i++) { X[k0 + i] = c[i]; }`;
  return /* wgsl */ `${paramsStruct(EMBED_PARAMS)}
${STEP_WGSL}
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<uniform> S: Step;
@group(0) @binding(2) var<storage, read> W: array<u32>;
@group(0) @binding(3) var<storage, read_write> X: array<f32>;
${HALF_READERS}

@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let m = wid.y;
  let w = wid.x * ${WG}u + lid;
  if (w >= P.wpr) { return; }
  let tok = S.tok[m >> 2u][m & 3u];
  let g = w / P.wpg;
  let word = W[P.qOff + tok * P.wpr + w];
  let base = m * P.xStride;${body}
}
`;
}

export const RMSNORM_PARAMS = ["n", "inStride", "outStride", "wOff", "eps", "lastOnly", "p0", "p1"] as const;

/**
 * O[m] = X[m] / sqrt(mean(X[m]^2) + eps) * w for m = workgroup x (or only the pass's last row, written
 * to O row 0, when lastOnly); one workgroup per row.
 */
export function rmsnormWgsl(f: KernelFeatures): string {
  return /* wgsl */ `${enables(f, { subgroups: true })}
${paramsStruct(RMSNORM_PARAMS, ["eps"])}
${STEP_WGSL}
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<uniform> S: Step;
@group(0) @binding(2) var<storage, read> Wt: array<f32>;
@group(0) @binding(3) var<storage, read> X: array<f32>;
@group(0) @binding(4) var<storage, read_write> O: array<f32>;
var<workgroup> red: array<f32, ${WG}>;

@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let m = select(wid.x, S.rows - 1u, P.lastOnly != 0u);
  let om = select(wid.x, 0u, P.lastOnly != 0u);
  let xb = m * P.inStride;
  var ss = 0.0;
  for (var k = lid; k < P.n; k += ${WG}u) { let v = X[xb + k]; ss += v * v; }
${reduceWgsl(f, ["ss"], WG, "+")}
  let sc = 1.0 / sqrt(ss / f32(P.n) + P.eps);
  for (var k = lid; k < P.n; k += ${WG}u) { O[om * P.outStride + k] = X[xb + k] * sc * Wt[P.wOff + k]; }
}
`;
}

export const ROPE_PARAMS = [
  "nH",
  "nKv",
  "hd",
  "half",
  "neox",
  "stride",
  "kOff",
  "vOff",
  "kvDim",
  "ctx",
  "p0",
  "p1",
] as const;

/** How the KV cache is addressed: element e (even) as a pair with e + 1. */
function kvAccess(kv: KvStorage, f: KernelFeatures, access: "read" | "read_write"): string {
  const put = access === "read_write";
  if (kv === "f32") {
    return /* wgsl */ `@group(0) @binding(CACHE) var<storage, ${access}> C: array<f32>;
fn kv_get(e: u32) -> vec2<f32> { return vec2<f32>(C[e], C[e + 1u]); }
${put ? "fn kv_put(e: u32, v: vec2<f32>) { C[e] = v.x; C[e + 1u] = v.y; }" : ""}`;
  }
  if (f.f16) {
    return /* wgsl */ `@group(0) @binding(CACHE) var<storage, ${access}> C: array<vec2<f16>>;
fn kv_get(e: u32) -> vec2<f32> { return vec2<f32>(C[e >> 1u]); }
${put ? "fn kv_put(e: u32, v: vec2<f32>) { C[e >> 1u] = vec2<f16>(v); }" : ""}`;
  }
  return /* wgsl */ `@group(0) @binding(CACHE) var<storage, ${access}> C: array<u32>;
fn kv_get(e: u32) -> vec2<f32> { return unpack2x16float(C[e >> 1u]); }
${put ? "fn kv_put(e: u32, v: vec2<f32>) { C[e >> 1u] = pack2x16float(v); }" : ""}`;
}

/**
 * Rotary embedding of the q and k heads of each row (in place in the fused q|k|v row buffer, rows
 * `stride` floats apart, k at kOff, v at vOff), then k and v of position pos0 + m stored into the
 * layer's cache (K: [ctx][kvDim] from element 0, V: the same from element ctx * kvDim).
 * Grid (nH + 2 nKv, rows): one workgroup per head; neox pairs (i, i + half), else (2i, 2i + 1).
 * R: the rope table, [position][half] (cos, sin) computed on the CPU in f64 like the wasm engine.
 */
export function ropeKvWgsl(kv: KvStorage, f: KernelFeatures): string {
  return /* wgsl */ `${enables(f, { f16: kv === "f16" })}
${paramsStruct(ROPE_PARAMS)}
${STEP_WGSL}
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<uniform> S: Step;
@group(0) @binding(2) var<storage, read> R: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> Q: array<f32>;
${kvAccess(kv, f, "read_write").replaceAll("CACHE", "4")}

@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let m = wid.y;
  let pos = S.pos0 + m;
  let h = wid.x;
  let row = m * P.stride;
  var base = row + h * P.hd;
  var kind = 0u;
  var kvh = 0u;
  if (h >= P.nH + P.nKv) { kind = 2u; kvh = h - P.nH - P.nKv; base = row + P.vOff + kvh * P.hd; }
  else if (h >= P.nH) { kind = 1u; kvh = h - P.nH; base = row + P.kOff + kvh * P.hd; }
  if (kind < 2u) {
    for (var p = lid; p < P.half; p += ${WG}u) {
      let cs = R[pos * P.half + p];
      let i0 = base + select(2u * p, p, P.neox != 0u);
      let i1 = base + select(2u * p + 1u, p + P.half, P.neox != 0u);
      let a = Q[i0];
      let b = Q[i1];
      Q[i0] = a * cs.x - b * cs.y;
      Q[i1] = a * cs.y + b * cs.x;
    }
  }
  storageBarrier();
  if (kind > 0u) {
    let cb = select(0u, P.ctx * P.kvDim, kind == 2u) + pos * P.kvDim + kvh * P.hd;
    for (var e = 2u * lid; e < P.hd; e += ${2 * WG}u) {
      kv_put(cb + e, vec2<f32>(Q[base + e], Q[base + e + 1u]));
    }
  }
}
`;
}

export const ATTENTION_PARAMS = [
  "nH",
  "group",
  "stride",
  "kOff",
  "kvDim",
  "ctx",
  "window",
  "scale",
  "outStride",
  "p0",
  "p1",
  "p2",
] as const;

/**
 * Causal attention for row m at position pos0 + m, query head h (kv head h / group): softmax over
 * positions first..pos (first = pos + 1 - window with a sliding window, else 0) of scale * q.k, times V.
 * One workgroup per (head, row); 64 positions per step with an online softmax (running max and sum,
 * output rescaled), so no context-sized buffer is needed. Q read from the fused q|k|v rows.
 */
export function attentionWgsl(headDim: number, kv: KvStorage, f: KernelFeatures): string {
  if (headDim % 2 !== 0) throw new Error(`attention: head dim ${headDim} must be even`);
  const pairs = headDim / 2;
  const ppt = Math.ceil(pairs / WG);
  return /* wgsl */ `${enables(f, { f16: kv === "f16", subgroups: true })}
${paramsStruct(ATTENTION_PARAMS, ["scale"])}
${STEP_WGSL}
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<uniform> S: Step;
@group(0) @binding(2) var<storage, read> Q: array<f32>;
${kvAccess(kv, f, "read").replaceAll("CACHE", "3")}
@group(0) @binding(4) var<storage, read_write> O: array<f32>;
const HD = ${headDim}u;
const HP = ${pairs}u;
var<workgroup> qs: array<f32, ${headDim}>;
var<workgroup> pr: array<f32, ${WG}>;
var<workgroup> red: array<f32, ${WG}>;

@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let h = wid.x;
  let m = wid.y;
  let pos = S.pos0 + m;
  var first = 0u;
  if (P.window != 0u && pos + 1u > P.window) { first = pos + 1u - P.window; }
  let kvh = h / P.group;
  for (var i = lid; i < HD; i += ${WG}u) { qs[i] = Q[m * P.stride + h * HD + i]; }
  workgroupBarrier();
  let kb = kvh * HD;
  let vb = P.ctx * P.kvDim + kvh * HD;
  var mx = -3.0e38;
  var l = 0.0;
  var o: array<vec2<f32>, ${ppt}>;
  for (var b = first; b <= pos; b += ${WG}u) {
    let p = b + lid;
    var s = -3.0e38;
    if (p <= pos) {
      var d = 0.0;
      let kr = p * P.kvDim + kb;
      for (var i = 0u; i < HP; i++) {
        let kv = kv_get(kr + 2u * i);
        d += kv.x * qs[2u * i] + kv.y * qs[2u * i + 1u];
      }
      s = d * P.scale;
    }
    var bm = s;
${reduceWgsl(f, ["bm"], WG, "max")}
    let mn = max(mx, bm);
    var e = 0.0;
    if (p <= pos) { e = exp(s - mn); }
    var bs = e;
${reduceWgsl(f, ["bs"], WG, "+")}
    let alpha = exp(mx - mn);
    l = l * alpha + bs;
    mx = mn;
    pr[lid] = e;
    workgroupBarrier();
    let cnt = min(${WG}u, pos + 1u - b);
    for (var r = 0u; r < ${ppt}u; r++) {
      let pp = lid + r * ${WG}u;
      if (pp < HP) {
        var acc = o[r] * alpha;
        for (var j = 0u; j < cnt; j++) { acc += pr[j] * kv_get(vb + (b + j) * P.kvDim + 2u * pp); }
        o[r] = acc;
      }
    }
    workgroupBarrier();
  }
  for (var r = 0u; r < ${ppt}u; r++) {
    let pp = lid + r * ${WG}u;
    if (pp < HP) {
      let oi = m * P.outStride + h * HD + 2u * pp;
      O[oi] = o[r].x / l;
      O[oi + 1u] = o[r].y / l;
    }
  }
}
`;
}

/** O[0] = index of the first maximum of X[0..n) (NaNs never win; 0xffffffff when no value exceeds -FLT_MAX). */
export function argmaxWgsl(): string {
  return /* wgsl */ `struct Params { n: u32, p0: u32, p1: u32, p2: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> O: array<u32>;
var<workgroup> bv: array<f32, ${WG}>;
var<workgroup> bi: array<u32, ${WG}>;

@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) lid: u32) {
  var best = bitcast<f32>(0xff7fffffu);
  var idx = 0xffffffffu;
  for (var i = lid; i < P.n; i += ${WG}u) {
    let v = X[i];
    if (v > best) { best = v; idx = i; }
  }
  bv[lid] = best;
  bi[lid] = idx;
  workgroupBarrier();
  for (var o = ${WG / 2}u; o > 0u; o = o >> 1u) {
    if (lid < o) {
      let v = bv[lid + o];
      let j = bi[lid + o];
      if (v > bv[lid] || (v == bv[lid] && j < bi[lid])) { bv[lid] = v; bi[lid] = j; }
    }
    workgroupBarrier();
  }
  if (lid == 0u) { O[0] = bi[0]; }
}
`;
}

/** Y[i] += X[i], i < n (residual / bias add); grid x * gridX... 1D up to 65535 * 64 elements. */
export function addWgsl(): string {
  return /* wgsl */ `struct Params { n: u32, p0: u32, p1: u32, p2: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  if (gid.x < P.n) { Y[gid.x] = Y[gid.x] + X[gid.x]; }
}
`;
}

/** O[i] = silu(G[i]) * U[i] = G / (1 + e^-G) * U, i < n. */
export function siluGateWgsl(): string {
  return /* wgsl */ `struct Params { n: u32, p0: u32, p1: u32, p2: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> G: array<f32>;
@group(0) @binding(2) var<storage, read> U: array<f32>;
@group(0) @binding(3) var<storage, read_write> O: array<f32>;

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  if (gid.x < P.n) { let g = G[gid.x]; O[gid.x] = g / (1.0 + exp(-g)) * U[gid.x]; }
}
`;
}
