/// <reference types="@webgpu/types" />
/**
 * TypeScript side of the WGSL kernels (./wgsl.ts): turns tensors that sit in GPU buffers (packed int4 /
 * int8 blobs in the data region, f32 vectors, activation rows) into prepared dispatches, each a
 * pipeline + bind group + params uniform built once, so encoding a forward pass is only
 * setPipeline / setBindGroup / dispatchWorkgroups calls.
 *
 * Row-wise kernels read the per-pass `Step` uniform (first position, row count, token ids): write it
 * with `writeStep`, then encode the dispatches of the pass into one compute pass.
 */
import {
  type Int4BlobGeometry,
  type Int8BlobGeometry,
  int4BlobGeometry,
  int8BlobGeometry,
} from "../../format/int4.ts";
import { BufferUsage, type WebGpuDevice, WebGpuError } from "./device.ts";
import {
  ATTENTION_PARAMS,
  addWgsl,
  argmaxWgsl,
  attentionWgsl,
  BINDINGS,
  EMBED_PARAMS,
  embedWgsl,
  type KvStorage,
  MATVEC_PARAMS,
  MAX_ROWS,
  type MatvecSpec,
  matvecBindings,
  matvecWgsl,
  RMSNORM_PARAMS,
  ROPE_PARAMS,
  rmsnormWgsl,
  ropeKvWgsl,
  STEP_BYTES,
  siluGateWgsl,
  threadsPerRow,
  WG,
} from "./wgsl.ts";

export { MAX_ROWS } from "./wgsl.ts";

/** A packed matrix in a GPU buffer, with the word offsets the kernels need. */
export interface MatrixBinding {
  readonly format: "int4" | "int8";
  readonly N: number;
  readonly K: number;
  readonly kPadded: number;
  readonly groupSize: number;
  readonly nGroups: number;
  readonly range: GPUBufferBinding;
  /** Codes: u32 word index in the bound range. */
  readonly qOff: number;
  /** Scales: u16 index in the bound range. */
  readonly sOff: number;
  /**
   * Zero points: byte index in the bound range (int4 asymmetric only); fp16 mins (int4 with mins,
   * w = q * d + m): u16 index in the bound range.
   */
  readonly zOff: number;
  readonly hasZ: boolean;
  readonly hasMins: boolean;
  readonly wordsPerRow: number;
  readonly wordsPerGroup: number;
}

/** The kernels' `hasZ` parameter: 0 = symmetric (z = 8), 1 = uint4 zero points, 2 = fp16 mins. */
function zMode(m: MatrixBinding): number {
  return m.hasMins ? 2 : m.hasZ ? 1 : 0;
}

/** An f32 vector (norm weight, bias) in a GPU buffer: bound range + float index of its first value. */
export interface VectorBinding {
  readonly range: GPUBufferBinding;
  readonly off: number;
  readonly length: number;
}

/** One prepared dispatch: grid as a function of the pass's row count. */
export interface Dispatch {
  readonly label: string;
  readonly pipeline: GPUComputePipeline;
  readonly bindGroup: GPUBindGroup;
  grid(rows: number): readonly [number, number];
}

export interface StepValues {
  pos0: number;
  rows: number;
  tokens?: readonly number[];
}

type Binding = "uniform" | "read" | "rw";
type Resource = GPUBuffer | GPUBufferBinding;

const roundUp = (n: number, a: number) => Math.ceil(n / a) * a;

/** A 2D grid of `count` workgroups (x at most 65535). */
export function grid2d(count: number): [number, number] {
  const x = Math.max(1, Math.min(count, 65535));
  return [x, Math.max(1, Math.ceil(count / x))];
}

export class WebGpuKernels {
  private readonly layouts = new Map<string, GPUBindGroupLayout>();
  /** Params and Step uniforms made here (freed by destroy). */
  private readonly uniforms: GPUBuffer[] = [];
  readonly stepBytes = STEP_BYTES;

  constructor(readonly gpu: WebGpuDevice) {}

  get device(): GPUDevice {
    return this.gpu.device;
  }

  layout(bindings: readonly Binding[]): GPUBindGroupLayout {
    const key = bindings.join(",");
    let l = this.layouts.get(key);
    if (!l) {
      l = this.gpu.layout(bindings);
      this.layouts.set(key, l);
    }
    return l;
  }

  private async pipeline(code: string, bindings: readonly Binding[]) {
    const layout = this.layout(bindings);
    return { layout, pipeline: await this.gpu.pipeline(code, layout, bindings.join(",")) };
  }

  private bindGroup(layout: GPUBindGroupLayout, resources: readonly Resource[], label: string): GPUBindGroup {
    return this.device.createBindGroup({
      label,
      layout,
      entries: resources.map((r, binding) => ({
        binding,
        resource: "buffer" in r ? r : { buffer: r },
      })),
    });
  }

  /** A uniform buffer holding u32 params by name (f32 for the names in f32Names). */
  params(names: readonly string[], values: Record<string, number>, f32Names: readonly string[] = []) {
    const buf = new ArrayBuffer(roundUp(names.length * 4, 16));
    const u = new Uint32Array(buf);
    const f = new Float32Array(buf);
    names.forEach((n, i) => {
      const v = values[n] ?? 0;
      if (f32Names.includes(n)) f[i] = v;
      else {
        if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`param ${n} = ${v}`);
        u[i] = v;
      }
    });
    const b = this.gpu.uniform(u);
    this.uniforms.push(b);
    return b;
  }

  /** A uniform buffer for Step values (write it with writeStep before each pass). */
  stepBuffer(): GPUBuffer {
    const b = this.gpu.buffer(STEP_BYTES, BufferUsage.UNIFORM | BufferUsage.COPY_DST, "step");
    this.uniforms.push(b);
    return b;
  }

  /** Frees the uniforms of every dispatch made through this instance (they are unusable afterwards). */
  destroy(): void {
    for (const b of this.uniforms.splice(0)) b.destroy();
    this.stepBuf = null;
  }

  writeStep(buffer: GPUBuffer, s: StepValues): void {
    const u = new Uint32Array(STEP_BYTES / 4);
    u[0] = s.pos0;
    u[1] = s.rows;
    const toks = s.tokens ?? [];
    if (toks.length > MAX_ROWS) throw new RangeError(`at most ${MAX_ROWS} tokens per pass`);
    toks.forEach((t, i) => {
      u[4 + i] = t;
    });
    this.gpu.write(buffer, 0, u);
  }

  /** Records dispatches into one compute pass of `encoder`. */
  encode(encoder: GPUCommandEncoder, dispatches: readonly Dispatch[], rows: number): void {
    const pass = encoder.beginComputePass();
    for (const d of dispatches) {
      const [x, y] = d.grid(rows);
      pass.setPipeline(d.pipeline);
      pass.setBindGroup(0, d.bindGroup);
      pass.dispatchWorkgroups(x, y);
    }
    pass.end();
  }

  // ---- tensor bindings -------------------------------------------------------------------------

  /** The bound range for bytes [offset, offset + bytes) of `buffer` (start aligned down as required). */
  range(buffer: GPUBuffer, offset: number, bytes: number): { range: GPUBufferBinding; delta: number } {
    const align = this.gpu.limits.minStorageBufferOffsetAlignment;
    const start = Math.floor(offset / align) * align;
    const size = roundUp(offset + bytes - start, 4);
    if (size > this.gpu.limits.maxStorageBufferBindingSize) {
      throw new WebGpuError(
        `a tensor of ${bytes} bytes exceeds this device's storage binding limit (${this.gpu.limits.maxStorageBufferBindingSize})`,
      );
    }
    return { range: { buffer, offset: start, size }, delta: offset - start };
  }

  /** A packed int4 / int8 blob (serializeInt4 / serializeInt8 layout) at `offset` of `buffer`. */
  matrix(buffer: GPUBuffer, offset: number, header: Uint8Array): MatrixBinding {
    const magic = new DataView(header.buffer, header.byteOffset, 4).getUint32(0, true);
    const int4 = magic === 0x47345153;
    const g: Int4BlobGeometry | Int8BlobGeometry = int4 ? int4BlobGeometry(header) : int8BlobGeometry(header);
    const { range, delta } = this.range(buffer, offset, g.byteLength);
    const dataOff = "qweightOffset" in g ? g.qweightOffset : g.dataOffset;
    const zOff = "zerosOffset" in g ? g.zerosOffset : 0;
    const hasMins = "mins" in g && g.mins;
    if ((delta + dataOff) % 4 !== 0 || (delta + g.scalesOffset) % 2 !== 0 || (delta + zOff) % 2 !== 0) {
      throw new WebGpuError("blob sections are not word aligned");
    }
    const wordsPerRow = int4 ? g.kPadded / 8 : g.kPadded / 4;
    return {
      format: int4 ? "int4" : "int8",
      N: g.N,
      K: g.K,
      kPadded: g.kPadded,
      groupSize: g.groupSize,
      nGroups: g.nGroups,
      range,
      qOff: (delta + dataOff) / 4,
      sOff: (delta + g.scalesOffset) / 2,
      zOff: !zOff ? 0 : hasMins ? (delta + zOff) / 2 : delta + zOff,
      hasZ: zOff !== 0 && !hasMins,
      hasMins,
      wordsPerRow,
      wordsPerGroup: int4 ? g.groupSize / 8 : g.groupSize / 4,
    };
  }

  vector(buffer: GPUBuffer, offset: number, length: number): VectorBinding {
    if (offset % 4 !== 0) throw new WebGpuError("f32 vector is not 4-byte aligned");
    const { range, delta } = this.range(buffer, offset, length * 4);
    return { range, off: delta / 4, length };
  }

  // ---- ops ---------------------------------------------------------------------------------------

  /**
   * Y[yOff + m * yStride + n] (=, +=) (W X[m])[n] for the pass's rows (or `rows` fixed), X rows
   * xStride floats apart (a multiple of 4, zero-padded to kPadded). swiglu: Y = silu(W X) * (W2 X).
   */
  async matvec(
    w: MatrixBinding,
    x: Resource,
    xStride: number,
    y: Resource,
    opts: {
      yStride?: number;
      yOff?: number;
      maxRows?: number;
      rows?: number;
      epilogue?: MatvecSpec["epilogue"];
      w2?: MatrixBinding;
      bias?: VectorBinding;
      label?: string;
    } = {},
  ): Promise<Dispatch> {
    const epilogue = opts.epilogue ?? "store";
    const maxRows = opts.rows ?? opts.maxRows ?? 1;
    if (maxRows < 1 || maxRows > MAX_ROWS)
      throw new RangeError(`matvec: rows ${maxRows} not in 1..${MAX_ROWS}`);
    if (xStride % 4 !== 0 || xStride < w.kPadded) throw new RangeError(`matvec: x stride ${xStride}`);
    const tpr = threadsPerRow(w.wordsPerRow, this.gpu.cpuWorkgroups > 0);
    const spec: MatvecSpec = { format: w.format, threadsPerRow: tpr, maxRows, epilogue };
    if (opts.bias) spec.bias = true;
    const w2 = opts.w2;
    if (epilogue === "swiglu") {
      if (!w2) throw new Error("matvec: swiglu needs w2");
      if (
        w2.format !== w.format ||
        w2.N !== w.N ||
        w2.kPadded !== w.kPadded ||
        w2.groupSize !== w.groupSize ||
        zMode(w2) !== zMode(w)
      ) {
        throw new Error("matvec: swiglu weights differ in shape or format");
      }
    }
    const bindings = matvecBindings(spec);
    const { layout, pipeline } = await this.pipeline(matvecWgsl(spec, this.gpu.features), bindings);
    const rpw = WG / tpr;
    const blocks = Math.ceil(w.N / rpw);
    // CPU adapters run a workgroup per thread with a fixed cost each: give them ~cpuWorkgroups fat ones
    const bpw = this.gpu.cpuWorkgroups > 0 ? Math.max(1, Math.floor(blocks / this.gpu.cpuWorkgroups)) : 1;
    const [gx, gy] = grid2d(Math.ceil(blocks / bpw));
    const params = this.params(MATVEC_PARAMS, {
      n: w.N,
      wpr: w.wordsPerRow,
      ng: w.nGroups,
      wpg: w.wordsPerGroup,
      gridX: gx,
      qOff: w.qOff,
      sOff: w.sOff,
      zOff: w.zOff,
      hasZ: zMode(w),
      q2Off: w2?.qOff ?? 0,
      s2Off: w2?.sOff ?? 0,
      z2Off: w2?.zOff ?? 0,
      xStride: xStride / 4,
      yStride: opts.yStride ?? w.N,
      yOff: opts.yOff ?? 0,
      rows: opts.rows ?? 0,
      bOff: opts.bias?.off ?? 0,
      bpw,
    });
    const res: Resource[] = [params, this.step, w.range, x, y];
    if (epilogue === "swiglu") res.push(w2!.range);
    else if (opts.bias) res.push(opts.bias.range);
    const label = opts.label ?? `matvec ${w.format} ${w.N}x${w.K}`;
    return { label, pipeline, bindGroup: this.bindGroup(layout, res, label), grid: () => [gx, gy] };
  }

  /** X[m][0..kPadded) = row Step.tok[m] of the table (dequantized). */
  async embed(table: MatrixBinding, x: Resource, xStride: number, label = "embed"): Promise<Dispatch> {
    const { layout, pipeline } = await this.pipeline(embedWgsl(table.format), BINDINGS.embed);
    const params = this.params(EMBED_PARAMS, {
      wpr: table.wordsPerRow,
      ng: table.nGroups,
      wpg: table.wordsPerGroup,
      qOff: table.qOff,
      sOff: table.sOff,
      zOff: table.zOff,
      hasZ: zMode(table),
      xStride,
    });
    const gx = Math.ceil(table.wordsPerRow / WG);
    return {
      label,
      pipeline,
      bindGroup: this.bindGroup(layout, [params, this.step, table.range, x], label),
      grid: (rows) => [gx, rows],
    };
  }

  /** out[m] = rmsnorm(x[m]) * weight for each row, or (lastOnly) out[0] = that of the pass's last row. */
  async rmsnorm(
    weight: VectorBinding,
    x: Resource,
    inStride: number,
    out: Resource,
    outStride: number,
    eps: number,
    opts: { lastOnly?: boolean; label?: string } = {},
  ): Promise<Dispatch> {
    const { layout, pipeline } = await this.pipeline(rmsnormWgsl(this.gpu.features), BINDINGS.rmsnorm);
    const params = this.params(
      RMSNORM_PARAMS,
      { n: weight.length, inStride, outStride, wOff: weight.off, eps, lastOnly: opts.lastOnly ? 1 : 0 },
      ["eps"],
    );
    const label = opts.label ?? "rmsnorm";
    return {
      label,
      pipeline,
      bindGroup: this.bindGroup(layout, [params, this.step, weight.range, x, out], label),
      grid: (rows) => (opts.lastOnly ? [1, 1] : [rows, 1]),
    };
  }

  /**
   * Rope on q and k heads of fused q|k|v rows (stride floats apart; k at kOff, v at vOff), then k and v
   * stored at position pos0 + m of `cache` (K then V, each [ctx][kvDim]). ropeTable: [ctx][half] vec2.
   */
  async ropeKv(
    s: {
      nHeads: number;
      nKvHeads: number;
      headDim: number;
      ropeDim: number;
      neox: boolean;
      stride: number;
      kOff: number;
      vOff: number;
      ctx: number;
      kv: KvStorage;
    },
    ropeTable: Resource,
    qkv: Resource,
    cache: Resource,
    label = "rope+kv",
  ): Promise<Dispatch> {
    if (s.ropeDim % 2 !== 0 || s.ropeDim > s.headDim || s.headDim % 2 !== 0) {
      throw new RangeError(`ropeKv: ropeDim ${s.ropeDim} / headDim ${s.headDim}`);
    }
    const { layout, pipeline } = await this.pipeline(ropeKvWgsl(s.kv, this.gpu.features), BINDINGS.ropeKv);
    const params = this.params(ROPE_PARAMS, {
      nH: s.nHeads,
      nKv: s.nKvHeads,
      hd: s.headDim,
      half: s.ropeDim / 2,
      neox: s.neox ? 1 : 0,
      stride: s.stride,
      kOff: s.kOff,
      vOff: s.vOff,
      kvDim: s.nKvHeads * s.headDim,
      ctx: s.ctx,
    });
    const heads = s.nHeads + 2 * s.nKvHeads;
    return {
      label,
      pipeline,
      bindGroup: this.bindGroup(layout, [params, this.step, ropeTable, qkv, cache], label),
      grid: (rows) => [heads, rows],
    };
  }

  /** Causal attention of each row's query heads over `cache` (see attentionWgsl). */
  async attention(
    s: {
      nHeads: number;
      nKvHeads: number;
      headDim: number;
      stride: number;
      ctx: number;
      window: number | null;
      scale: number;
      outStride: number;
      kv: KvStorage;
    },
    qkv: Resource,
    cache: Resource,
    out: Resource,
    label = "attention",
  ): Promise<Dispatch> {
    if (s.nHeads % s.nKvHeads !== 0) throw new RangeError("attention: heads not a multiple of kv heads");
    const { layout, pipeline } = await this.pipeline(
      attentionWgsl(s.headDim, s.kv, this.gpu.features),
      BINDINGS.attention,
    );
    const params = this.params(
      ATTENTION_PARAMS,
      {
        nH: s.nHeads,
        group: s.nHeads / s.nKvHeads,
        stride: s.stride,
        kvDim: s.nKvHeads * s.headDim,
        ctx: s.ctx,
        window: s.window ?? 0,
        scale: s.scale,
        outStride: s.outStride,
      },
      ["scale"],
    );
    return {
      label,
      pipeline,
      bindGroup: this.bindGroup(layout, [params, this.step, qkv, cache, out], label),
      grid: (rows) => [s.nHeads, rows],
    };
  }

  /** out[0] (u32) = index of the first maximum of x[0..n). */
  async argmax(x: Resource, n: number, out: Resource, label = "argmax"): Promise<Dispatch> {
    const { layout, pipeline } = await this.pipeline(argmaxWgsl(), BINDINGS.argmax);
    const params = this.params(["n", "p0", "p1", "p2"], { n });
    return {
      label,
      pipeline,
      bindGroup: this.bindGroup(layout, [params, x, out], label),
      grid: () => [1, 1],
    };
  }

  /** y[0..n) += x[0..n). */
  async add(x: Resource, y: Resource, n: number, label = "add"): Promise<Dispatch> {
    const { layout, pipeline } = await this.pipeline(addWgsl(), BINDINGS.add);
    const params = this.params(["n", "p0", "p1", "p2"], { n });
    const gx = Math.ceil(n / WG);
    if (gx > 65535) throw new RangeError(`add: n = ${n} too large`);
    return { label, pipeline, bindGroup: this.bindGroup(layout, [params, x, y], label), grid: () => [gx, 1] };
  }

  /** out[0..n) = silu(g) * u. */
  async siluGate(g: Resource, u: Resource, out: Resource, n: number, label = "silu-gate"): Promise<Dispatch> {
    const { layout, pipeline } = await this.pipeline(siluGateWgsl(), BINDINGS.siluGate);
    const params = this.params(["n", "p0", "p1", "p2"], { n });
    const gx = Math.ceil(n / WG);
    if (gx > 65535) throw new RangeError(`siluGate: n = ${n} too large`);
    return {
      label,
      pipeline,
      bindGroup: this.bindGroup(layout, [params, g, u, out], label),
      grid: () => [gx, 1],
    };
  }

  // ---- the step uniform shared by the ops made through this instance ------------------------------

  private stepBuf: GPUBuffer | null = null;

  /** The Step uniform the row-wise ops of this instance bind (created on first use). */
  get step(): GPUBuffer {
    this.stepBuf ??= this.stepBuffer();
    return this.stepBuf;
  }

  /** Writes Step, records `dispatches` into one pass, submits. */
  run(dispatches: readonly Dispatch[], step: StepValues): void {
    this.writeStep(this.step, step);
    const enc = this.device.createCommandEncoder();
    this.encode(enc, dispatches, step.rows);
    this.device.queue.submit([enc.finish()]);
  }
}
