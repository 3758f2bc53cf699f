/**
 * Pins the relaxed-SIMD semantics the int4 kernels rely on, in both runtimes that run relaxed builds:
 * i16x8.relaxed_dot_i8x16_i7x16_s(a, b) and i32x4.relaxed_dot_i8x16_i7x16_add_s(a, b, c) with a = int8
 * activation codes (-127..127) and b = nibbles (0..15) are exact (no saturation, b read as signed or
 * unsigned alike because its top bit is clear). workerd computes both exactly, so its kernels
 * (kernels-relaxed.wasm) use the i32 dot-add. Node 20's V8 returns 2 * dot and ignores the accumulator
 * in its baseline tier (Liftoff): there the dot-add build must refuse to load (its exactness check), and
 * Node runs kernels-relaxed-i16.wasm. Every relaxed build must equal the SIMD128 build bit for bit (the
 * integer dots are exact and the float operations are the same).
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { Miniflare } from "miniflare";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureKernelsWasm } from "../src/kernels/wasm/build.ts";
import { firstUsableKernels } from "../src/runtime/backend.ts";
import {
  compileRelaxedProbe,
  expectedDot16,
  expectedDot32Add,
  probeVectors,
  runProbe,
} from "./helpers/relaxed-probe.ts";

const run = promisify(execFile);
const vectors = probeVectors();
const want16 = Array.from(expectedDot16(vectors.a, vectors.b));
const want32 = Array.from(expectedDot32Add(vectors.a, vectors.b, vectors.c));
let dir: string;
let probePath: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "shardlm-relaxed-"));
  probePath = path.join(dir, "probe.wasm");
  await writeFile(probePath, await compileRelaxedProbe());
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface ChildResult {
  first: { dot16: number[]; dot32add: number[] };
  warm: { dot16: number[]; dot32add: number[] };
  kernels: {
    shape: string;
    relaxed: boolean;
    simd: number[];
    relaxedOut: number[];
    dotAddOut: number[] | null;
  }[];
  dotAddRefused: string | null;
  dotAddFlag: boolean | null;
}

async function nodeChild(tierFlags: string[]): Promise<ChildResult> {
  const [simd, relaxed, dotAdd] = await Promise.all([
    ensureKernelsWasm(),
    ensureKernelsWasm({ relaxed: true, i16Dot: true }),
    ensureKernelsWasm({ relaxed: true }),
  ]);
  const child = fileURLToPath(new URL("./helpers/relaxed-node-child.ts", import.meta.url));
  const { stdout } = await run(
    process.execPath,
    [
      "--experimental-wasm-relaxed-simd",
      ...tierFlags,
      "--import",
      "tsx",
      child,
      probePath,
      simd,
      relaxed,
      dotAdd,
    ],
    { maxBuffer: 64 << 20 },
  );
  return JSON.parse(stdout) as ChildResult;
}

describe("relaxed SIMD in Node (--experimental-wasm-relaxed-simd)", () => {
  for (const [name, flags] of [
    ["baseline tier (Liftoff)", ["--liftoff", "--no-wasm-tier-up"]],
    ["optimizing tier (TurboFan)", ["--no-liftoff"]],
  ] as const) {
    it(`${name}: i16 dot exact; relaxed kernels bit-identical to SIMD128; dot-add build only where exact`, async () => {
      const r = await nodeChild([...flags]);
      expect(r.first.dot16).toEqual(want16);
      expect(r.warm.dot16).toEqual(want16);
      for (const k of r.kernels) {
        expect(k.relaxed, k.shape).toBe(true);
        expect(k.relaxedOut, k.shape).toEqual(k.simd);
      }
      if (JSON.stringify(r.first.dot32add) === JSON.stringify(want32)) {
        // exact here (TurboFan): the dot-add build loads and matches SIMD128 bit for bit
        expect(r.dotAddRefused).toBeNull();
        expect(r.dotAddFlag).toBe(true);
        for (const k of r.kernels) expect(k.dotAddOut, k.shape).toEqual(k.simd);
      } else {
        // the Liftoff bug (2 * dot, accumulator dropped), not operand signedness; the build refuses
        const doubled = want32.map((w, i) => 2 * (w - vectors.c[i]!));
        expect(r.first.dot32add).toEqual(doubled);
        expect(r.dotAddRefused).toMatch(/computes i32x4\.relaxed_dot_i8x16_i7x16_add_s inexactly/);
      }
    }, 120_000);
  }
});

describe("relaxed SIMD in workerd", () => {
  let mf: Miniflare;
  beforeAll(async () => {
    mf = new Miniflare({
      modulesRoot: "/",
      modules: [
        {
          type: "ESModule",
          path: "/worker.js",
          contents: `import probe from "./probe.wasm";
export default { async fetch(req) {
  const v = await req.json();
  const inst = await WebAssembly.instantiate(probe, {});
  ${runProbeSource()}
  return Response.json(runProbe(inst.exports, { a: Int8Array.from(v.a), b: Int8Array.from(v.b), c: Int32Array.from(v.c) }));
} };`,
        },
        { type: "CompiledWasm", path: "/probe.wasm", contents: await readFile(probePath) },
      ],
      compatibilityDate: "2024-09-01",
    });
  });
  afterAll(async () => {
    await mf?.dispose();
  });

  it("i16 dot and the i32 dot-add are exact for nibble operands", async () => {
    const res = await mf.dispatchFetch("http://probe/", {
      method: "POST",
      body: JSON.stringify({ a: Array.from(vectors.a), b: Array.from(vectors.b), c: Array.from(vectors.c) }),
    });
    const got = (await res.json()) as { dot16: number[]; dot32add: number[] };
    expect(got.dot16).toEqual(want16);
    expect(got.dot32add).toEqual(want32);
  });
});

/** runProbe's source for the worker (plain JS: the function uses no TypeScript-only syntax at runtime). */
function runProbeSource(): string {
  return `const runProbe = ${runProbe.toString()};`;
}

describe("firstUsableKernels (the browser's choice of build)", () => {
  it("skips builds this runtime cannot compile or that fail the exactness check; throws when none loads", async () => {
    const [simd, dotAdd] = await Promise.all([
      readFile(await ensureKernelsWasm()),
      readFile(await ensureKernelsWasm({ relaxed: true })),
    ]);
    const garbage = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 255, 255]);
    // this test process runs Node without --experimental-wasm-relaxed-simd: the relaxed build does not validate
    expect(WebAssembly.validate(dotAdd)).toBe(false);
    const k = await firstUsableKernels([garbage, dotAdd, simd]);
    expect(k.relaxedSimd).toBe(false);
    expect(k.relaxedDotAdd).toBe(false);
    await expect(firstUsableKernels([garbage, dotAdd])).rejects.toThrow(/WebAssembly\.validate failed/);
    await expect(firstUsableKernels([])).rejects.toThrow(/no kernel build given/);
  });
});
