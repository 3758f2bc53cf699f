/// <reference types="@webgpu/types" />
/**
 * Each WGSL kernel against a plain-TypeScript reference, on the device's own features (f16 KV storage
 * and subgroup reductions where the adapter has them: lavapipe has both) and again with both switched
 * off (the plain fallbacks). Blobs sit at unaligned offsets inside their buffers, so the binding-range
 * arithmetic is exercised too.
 */
import { afterAll, describe, expect, it } from "vitest";
import {
  dequantize,
  dequantizeInt4Row,
  dequantizeInt8,
  dequantizeInt8Row,
  f16ToF32,
  f32ToF16,
  type Int4Options,
  quantizeInt8Rtn,
  quantizeRtn,
  serializeInt4,
  serializeInt8,
} from "../src/format/int4.ts";
import type { WebGpuDevice } from "../src/kernels/webgpu/device.ts";
import type { MatrixBinding } from "../src/kernels/webgpu/kernels.ts";
import { applyRope, ropeAngles } from "../src/model/reference/rope.ts";
import { q4_1Tensor, randn, refMatvec, relErr } from "./kernels-helpers.ts";
import { KernelHarness, NO_ADAPTER, openTestDevice } from "./webgpu-helpers.ts";

// cpuWorkgroups 0: the GPU work split (many threads per matvec row, cross-lane reductions) even on a
// CPU adapter, where the default is one thread per row; the CPU split is tested as a third variant.
const native = await openTestDevice({ cpuWorkgroups: 0 });
const plain = native ? await openTestDevice({ f16: false, subgroups: false, cpuWorkgroups: 0 }) : null;
const cpuSplit = native ? await openTestDevice({ cpuWorkgroups: 16 }) : null;

/** Where blobs are placed in their buffers: 320 = one 256-byte binding step + 64 (the region's alignment). */
const AT = 320;

function rowsOf(x: Float32Array, m: number, K: number, stride: number): Float32Array {
  const out = new Float32Array(m * stride);
  for (let i = 0; i < m; i++) out.set(x.subarray(i * K, (i + 1) * K), i * stride);
  return out;
}

function refRows(w: Float32Array, x: Float32Array, m: number, N: number, K: number): Float32Array {
  const y = new Float32Array(m * N);
  for (let i = 0; i < m; i++) y.set(refMatvec(w, x.subarray(i * K, (i + 1) * K), N, K), i * N);
  return y;
}

const silu = (g: number) => g / (1 + Math.exp(-g));

describe.skipIf(!native)(
  native ? `webgpu kernels (${native.adapterName})` : `webgpu kernels: ${NO_ADAPTER}`,
  () => {
    afterAll(() => {
      native?.destroy();
      plain?.destroy();
    });

    const variants = [
      { name: "device features", dev: () => native!, matvecOnly: false },
      { name: "plain fallbacks (no f16, no subgroups)", dev: () => plain!, matvecOnly: false },
      {
        name: "CPU-adapter matvec split (a row per thread, fat workgroups)",
        dev: () => cpuSplit!,
        matvecOnly: true,
      },
    ];

    it("reports the features in use", () => {
      console.log(`webgpu kernels: ${native!.adapterName} [${native!.backend}]`, native!.features);
      expect(plain!.features.f16 || plain!.features.subgroups).toBe(false);
    });

    describe.each(variants)("$name", ({ dev, matvecOnly }) => {
      let h: KernelHarness;
      const harness = () => {
        h ??= new KernelHarness(dev() as WebGpuDevice);
        return h;
      };
      afterAll(() => h?.release());

      async function int4Matrix(
        N: number,
        K: number,
        opts: Int4Options,
        seed: number,
      ): Promise<{ m: MatrixBinding; w: Float32Array }> {
        const hh = harness();
        // mins: a ggml Q4_1 tensor repacked (fp16 per-group mins)
        const p = opts.mins ? q4_1Tensor(N, K, seed) : quantizeRtn(randn(N * K, seed, 0.5), N, K, opts);
        const blob = serializeInt4(p);
        return { m: hh.k.matrix(hh.buffer(blob, AT), AT, blob), w: dequantize(p) };
      }

      // (16-row pipelines with cross-lane reductions take seconds each to JIT on lavapipe: one shape has them)
      it.each([
        [64, 64, { groupSize: 32 }, 1, 1],
        [37, 100, { groupSize: 32, zeroPoint: true }, 1, 1],
        [200, 320, { groupSize: 64 }, 5, 16],
        [96, 448, { groupSize: 128, zeroPoint: true }, 16, 16],
        [1030, 2048, { groupSize: 32 }, 3, 3],
        [70, 576, { groupSize: 32, mins: true }, 3, 3],
      ] as const)("int4 matvec/matmul %ix%i %o, %i rows (of %i)", async (N, K, opts, rows, maxRows) => {
        const hh = harness();
        const { m, w } = await int4Matrix(N, K, opts, N + K);
        const x = randn(rows * K, 7);
        const stride = m.kPadded;
        const xb = hh.f32(rowsOf(x, rows, K, stride));
        const y = hh.buffer(rows * N * 4);
        const d = await hh.k.matvec(m, xb, stride, y, { maxRows });
        await hh.run([d], { pos0: 0, rows });
        const got = await hh.readF32(y, rows * N);
        expect(relErr(got, refRows(w, x, rows, N, K))).toBeLessThan(2e-6);
      });

      it("int4 epilogues: bias, residual add, swiglu (two matrices, 3 rows)", async () => {
        const hh = harness();
        const [N, K, rows] = [72, 96, 3];
        const a = await int4Matrix(N, K, { groupSize: 32 }, 11);
        const b = await int4Matrix(N, K, { groupSize: 32 }, 12);
        const c = await int4Matrix(N, K, { groupSize: 32, mins: true }, 16);
        const d = await int4Matrix(N, K, { groupSize: 32, mins: true }, 17);
        const x = randn(rows * K, 13);
        const xb = hh.f32(rowsOf(x, rows, K, a.m.kPadded));
        const ya = refRows(a.w, x, rows, N, K);
        const yb = refRows(b.w, x, rows, N, K);
        const yc = refRows(c.w, x, rows, N, K);
        const yd = refRows(d.w, x, rows, N, K);

        const bias = randn(N, 14);
        const biasBuf = hh.buffer(bias, 192);
        const y1 = hh.buffer(rows * N * 4);
        const y0 = randn(rows * N, 15);
        const y2 = hh.f32(y0);
        const y3 = hh.buffer(rows * N * 4);
        const y4 = hh.buffer(rows * N * 4);
        await hh.run(
          [
            await hh.k.matvec(a.m, xb, a.m.kPadded, y1, { maxRows: 4, bias: hh.k.vector(biasBuf, 192, N) }),
            await hh.k.matvec(a.m, xb, a.m.kPadded, y2, { maxRows: 4, epilogue: "add" }),
            await hh.k.matvec(a.m, xb, a.m.kPadded, y3, { maxRows: 4, epilogue: "swiglu", w2: b.m }),
            await hh.k.matvec(c.m, xb, c.m.kPadded, y4, { maxRows: 4, epilogue: "swiglu", w2: d.m }),
          ],
          { pos0: 0, rows },
        );
        expect(
          relErr(
            await hh.readF32(y4, rows * N),
            yc.map((v, i) => silu(v) * yd[i]!),
          ),
        ).toBeLessThan(1e-5);
        // gate and up must agree on how their groups are offset
        await expect(hh.k.matvec(a.m, xb, a.m.kPadded, y4, { epilogue: "swiglu", w2: c.m })).rejects.toThrow(
          /differ/,
        );
        expect(
          relErr(
            await hh.readF32(y1, rows * N),
            ya.map((v, i) => v + bias[i % N]!),
          ),
        ).toBeLessThan(2e-6);
        expect(
          relErr(
            await hh.readF32(y2, rows * N),
            ya.map((v, i) => v + y0[i]!),
          ),
        ).toBeLessThan(2e-6);
        expect(
          relErr(
            await hh.readF32(y3, rows * N),
            ya.map((v, i) => silu(v) * yb[i]!),
          ),
        ).toBeLessThan(1e-5);
      });

      it.each([
        ["row", 1],
        [32, 1],
        [64, 4],
      ] as const)("int8 matvec, %s scales, %i rows (head)", async (gs, rows) => {
        const hh = harness();
        const [N, K] = [515, 96];
        const p = quantizeInt8Rtn(randn(N * K, 21, 0.3), N, K, { groupSize: gs });
        const blob = serializeInt8(p);
        const m = hh.k.matrix(hh.buffer(blob, AT), AT, blob);
        const x = randn(rows * K, 22);
        const xb = hh.f32(rowsOf(x, rows, K, m.kPadded));
        const y = hh.buffer(rows * N * 4);
        await hh.run([await hh.k.matvec(m, xb, m.kPadded, y, { maxRows: rows })], { pos0: 0, rows });
        expect(relErr(await hh.readF32(y, rows * N), refRows(dequantizeInt8(p), x, rows, N, K))).toBeLessThan(
          2e-6,
        );
      });

      it("embedding rows: int4 (asymmetric, ragged; fp16 mins) and int8 are dequantized exactly", async () => {
        const hh = harness();
        const [N, K] = [50, 80];
        const tokens = [3, 49, 0, 3, 17];
        const p4 = quantizeRtn(randn(N * K, 31), N, K, { groupSize: 32, zeroPoint: true });
        const p8 = quantizeInt8Rtn(randn(N * K, 32), N, K, { groupSize: "row" });
        const pm = q4_1Tensor(N, 96, 33);
        const b4 = serializeInt4(p4);
        const b8 = serializeInt8(p8);
        const bm = serializeInt4(pm);
        const m4 = hh.k.matrix(hh.buffer(b4, AT), AT, b4);
        const m8 = hh.k.matrix(hh.buffer(b8, AT), AT, b8);
        const mm = hh.k.matrix(hh.buffer(bm, AT), AT, bm);
        const stride = 96;
        const x4 = hh.buffer(tokens.length * stride * 4);
        const x8 = hh.buffer(tokens.length * stride * 4);
        const xm = hh.buffer(tokens.length * stride * 4);
        await hh.run(
          [
            await hh.k.embed(m4, x4, stride),
            await hh.k.embed(m8, x8, stride),
            await hh.k.embed(mm, xm, stride),
          ],
          { pos0: 0, rows: tokens.length, tokens },
        );
        const g4 = await hh.readF32(x4, tokens.length * stride);
        const g8 = await hh.readF32(x8, tokens.length * stride);
        const gm = await hh.readF32(xm, tokens.length * stride);
        tokens.forEach((t, i) => {
          const r4 = dequantizeInt4Row(p4, t, new Float32Array(m4.kPadded));
          const r8 = dequantizeInt8Row(p8, t, new Float32Array(m8.kPadded));
          const rm = dequantizeInt4Row(pm, t, new Float32Array(96));
          expect(g4.subarray(i * stride, i * stride + m4.kPadded)).toEqual(r4);
          expect(g8.subarray(i * stride, i * stride + m8.kPadded)).toEqual(r8);
          expect(gm.subarray(i * stride, i * stride + 96)).toEqual(rm);
        });
      });

      // the remaining kernels do not depend on the matvec work split
      if (matvecOnly) return;

      it("rmsnorm per row, and of the pass's last row only", async () => {
        const hh = harness();
        const [n, stride, rows, eps] = [200, 224, 3, 1e-5];
        const x = randn(rows * stride, 41, 2);
        const w = randn(n, 42);
        const wb = hh.buffer(w, 64);
        const xb = hh.f32(x);
        const out = hh.buffer(rows * stride * 4);
        const last = hh.buffer(stride * 4);
        const wv = hh.k.vector(wb, 64, n);
        await hh.run(
          [
            await hh.k.rmsnorm(wv, xb, stride, out, stride, eps),
            await hh.k.rmsnorm(wv, xb, stride, last, stride, eps, { lastOnly: true }),
          ],
          { pos0: 0, rows },
        );
        const got = await hh.readF32(out, rows * stride);
        const gotLast = await hh.readF32(last, n);
        for (let m = 0; m < rows; m++) {
          let ss = 0;
          for (let k = 0; k < n; k++) ss += x[m * stride + k]! ** 2;
          const sc = 1 / Math.sqrt(ss / n + eps);
          const ref = new Float32Array(n).map((_, k) => x[m * stride + k]! * sc * w[k]!);
          expect(relErr(got.subarray(m * stride, m * stride + n), ref)).toBeLessThan(1e-6);
          if (m === rows - 1) expect(relErr(gotLast, ref)).toBeLessThan(1e-6);
        }
      });

      it.each([
        ["interleaved", "f16"],
        ["neox", "f32"],
        ["neox", "f16"],
        ["interleaved", "f32"],
      ] as const)("rope (%s) on q and k, then k/v stored to a %s cache", async (style, kv) => {
        const hh = harness();
        const [nH, nKv, hd, ctx, pos0, rows, theta] = [4, 2, 16, 24, 5, 3, 10000];
        const qDim = nH * hd;
        const kvDim = nKv * hd;
        const stride = qDim + 2 * kvDim;
        const x = randn(rows * stride, 51);
        const half = hd / 2;
        const table = new Float32Array(ctx * hd);
        for (let p = 0; p < ctx; p++) {
          const a = ropeAngles(p, hd, theta);
          for (let i = 0; i < half; i++) {
            table[(p * half + i) * 2] = a.cos[i]!;
            table[(p * half + i) * 2 + 1] = a.sin[i]!;
          }
        }
        const qkv = hh.f32(x);
        const cacheBytes = 2 * ctx * kvDim * (kv === "f16" ? 2 : 4);
        const cache = hh.buffer(cacheBytes);
        const d = await hh.k.ropeKv(
          {
            nHeads: nH,
            nKvHeads: nKv,
            headDim: hd,
            ropeDim: hd,
            neox: style === "neox",
            stride,
            kOff: qDim,
            vOff: qDim + kvDim,
            ctx,
            kv,
          },
          hh.f32(table),
          qkv,
          cache,
        );
        await hh.run([d], { pos0, rows });
        const got = await hh.readF32(qkv, rows * stride);
        const raw = await hh.gpu.read(cache, 0, cacheBytes);
        const cached =
          kv === "f16" ? Float32Array.from(new Uint16Array(raw), f16ToF32) : new Float32Array(raw);
        const round = (v: number) => (kv === "f16" ? f16ToF32(f32ToF16(v)) : Math.fround(v));
        for (let m = 0; m < rows; m++) {
          const row = x.slice(m * stride, (m + 1) * stride);
          const angles = ropeAngles(pos0 + m, hd, theta);
          const q = row.slice(0, qDim);
          const k = row.slice(qDim, qDim + kvDim);
          const v = row.slice(qDim + kvDim);
          applyRope(q, nH, hd, angles, style);
          applyRope(k, nKv, hd, angles, style);
          const g = got.subarray(m * stride, (m + 1) * stride);
          expect(relErr(g.subarray(0, qDim), q)).toBeLessThan(1e-6);
          expect(relErr(g.subarray(qDim, qDim + kvDim), k)).toBeLessThan(1e-6);
          expect(g.subarray(qDim + kvDim)).toEqual(v);
          const pos = pos0 + m;
          const ck = cached.subarray(pos * kvDim, (pos + 1) * kvDim);
          const cv = cached.subarray((ctx + pos) * kvDim, (ctx + pos + 1) * kvDim);
          expect(relErr(ck, k.map(round))).toBeLessThan(kv === "f16" ? 1e-3 : 1e-6);
          expect(cv).toEqual(v.map(round));
        }
      });

      it.each([
        ["f16", 1, null],
        ["f32", 3, null],
        ["f16", 2, 50],
        ["f32", 1, 7],
      ] as const)(
        "attention over a %s cache, %i rows, window %s (GQA, >64 positions)",
        async (kv, rows, window) => {
          const hh = harness();
          const [nH, nKv, hd, ctx] = [6, 2, 24, 160];
          const pos0 = 150 - rows + 1;
          const kvDim = nKv * hd;
          const qDim = nH * hd;
          const stride = qDim + 2 * kvDim;
          const scale = 1 / Math.sqrt(hd);
          // cache contents as stored (f16-rounded for the f16 cache); q rows in the fused q|k|v layout
          const kc = randn(ctx * kvDim, 61);
          const vc = randn(ctx * kvDim, 62);
          const store = (a: Float32Array) => (kv === "f16" ? a.map((v) => f16ToF32(f32ToF16(v))) : a);
          const [ks, vs] = [store(kc), store(vc)];
          const cacheData =
            kv === "f16"
              ? Uint16Array.from([...kc, ...vc], (v) => f32ToF16(v))
              : Float32Array.from([...kc, ...vc]);
          const q = randn(rows * stride, 63, 2);
          const out = hh.buffer(rows * qDim * 4);
          const d = await hh.k.attention(
            { nHeads: nH, nKvHeads: nKv, headDim: hd, stride, ctx, window, scale, outStride: qDim, kv },
            hh.f32(q),
            hh.buffer(cacheData),
            out,
          );
          await hh.run([d], { pos0, rows });
          const got = await hh.readF32(out, rows * qDim);
          const ref = new Float32Array(rows * qDim);
          for (let m = 0; m < rows; m++) {
            const pos = pos0 + m;
            const first = window === null ? 0 : Math.max(0, pos - window + 1);
            for (let h = 0; h < nH; h++) {
              const j = Math.floor(h / (nH / nKv));
              const s: number[] = [];
              for (let p = first; p <= pos; p++) {
                let dot = 0;
                for (let i = 0; i < hd; i++) dot += q[m * stride + h * hd + i]! * ks[p * kvDim + j * hd + i]!;
                s.push(dot * scale);
              }
              const mx = Math.max(...s);
              const e = s.map((v) => Math.exp(v - mx));
              const sum = e.reduce((a, b) => a + b, 0);
              for (let i = 0; i < hd; i++) {
                let o = 0;
                e.forEach((w, t) => {
                  o += w * vs[(first + t) * kvDim + j * hd + i]!;
                });
                ref[m * qDim + h * hd + i] = o / sum;
              }
            }
          }
          expect(relErr(got, ref)).toBeLessThan(1e-5);
        },
      );

      it("argmax: first maximum, NaNs ignored", async () => {
        const hh = harness();
        const x = randn(1000, 71);
        x[10] = Number.NaN;
        x[700] = 9;
        x[333] = 9;
        x[999] = 8.5;
        const out = hh.buffer(16);
        await hh.run([await hh.k.argmax(hh.f32(x), x.length, out)], { pos0: 0, rows: 1 });
        expect((await hh.readU32(out, 1))[0]).toBe(333);
      });

      it("residual add and silu-gate (elementwise)", async () => {
        const hh = harness();
        const n = 1000;
        const [a, b, c] = [randn(n, 81), randn(n, 82), randn(n, 83)];
        const y = hh.f32(a);
        const o = hh.buffer(n * 4);
        await hh.run([await hh.k.add(hh.f32(b), y, n), await hh.k.siluGate(hh.f32(b), hh.f32(c), o, n)], {
          pos0: 0,
          rows: 1,
        });
        expect(await hh.readF32(y, n)).toEqual(a.map((v, i) => v + b[i]!));
        expect(
          relErr(
            await hh.readF32(o, n),
            b.map((v, i) => silu(v) * c[i]!),
          ),
        ).toBeLessThan(1e-6);
      });
    });
  },
);
