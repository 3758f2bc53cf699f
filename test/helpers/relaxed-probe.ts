/**
 * The relaxed-SIMD dot instructions the int4 kernels rely on (or avoid), as a tiny module compiled by
 * the same AssemblyScript compiler, and the test vectors: every int8 activation code the quantizer
 * produces (-127..127) against every nibble (0..15), plus the extreme sums.
 */
import asc from "assemblyscript/asc";

const SOURCE = `
export function dot16(a: usize, b: usize, out: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const o = <usize>i << 4;
    v128.store(out + o, i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(a + o), v128.load(b + o)));
  }
}
export function dot32add(a: usize, b: usize, c: usize, out: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const o = <usize>i << 4;
    v128.store(out + o, i32x4.relaxed_dot_i8x16_i7x16_add_s(v128.load(a + o), v128.load(b + o), v128.load(c + o)));
  }
}
`;

export async function compileRelaxedProbe(): Promise<Uint8Array> {
  let binary: Uint8Array | null = null;
  const errors: string[] = [];
  const { error } = await asc.main(
    [
      "probe.ts",
      "--outFile",
      "probe.wasm",
      "--enable",
      "simd,relaxed-simd",
      "-O3",
      "--runtime",
      "stub",
      "--use",
      "abort=",
      "--initialMemory",
      "1",
    ],
    {
      readFile: (name: string) => (name === "probe.ts" ? SOURCE : null),
      writeFile: (name: string, contents: Uint8Array | string) => {
        if (name.endsWith(".wasm")) binary = contents as Uint8Array;
      },
      listFiles: () => [],
      stdout: { write: () => true } as never,
      stderr: { write: (c: string | Uint8Array) => errors.push(String(c)) > 0 } as never,
    },
  );
  if (error || !binary) throw new Error(`probe build failed: ${error?.message}\n${errors.join("")}`);
  return binary;
}

/** a (int8 activations) and b (nibbles) vectors covering every (a, b) pair, lane pairs (a, b), (-a, 15 - b). */
export function probeVectors(): { a: Int8Array; b: Int8Array; c: Int32Array } {
  const pairs: [number, number][] = [];
  for (let a = -127; a <= 127; a++) for (let b = 0; b <= 15; b++) pairs.push([a, b], [-a, 15 - b]);
  pairs.push([-127, 15], [-127, 15], [-127, 15], [-127, 15], [127, 15], [127, 15], [127, 15], [127, 15]);
  while (pairs.length % 16) pairs.push([0, 0]);
  const a = Int8Array.from(pairs, (p) => p[0]);
  const b = Int8Array.from(pairs, (p) => p[1]);
  const c = Int32Array.from({ length: pairs.length / 4 }, (_, i) => ((i * 7919) % 100000) - 50000);
  return { a, b, c };
}

/** What the kernels need: lane i of the i16 dot = a[2i] b[2i] + a[2i+1] b[2i+1], exactly. */
export function expectedDot16(a: Int8Array, b: Int8Array): Int16Array {
  return Int16Array.from(
    { length: a.length / 2 },
    (_, i) => a[2 * i]! * b[2 * i]! + a[2 * i + 1]! * b[2 * i + 1]!,
  );
}

/** The spec's value of the i32 variant when b is in 0..127: c + sum of 4 products per lane. */
export function expectedDot32Add(a: Int8Array, b: Int8Array, c: Int32Array): Int32Array {
  return Int32Array.from(c, (ci, i) => {
    let s = ci;
    for (let j = 4 * i; j < 4 * i + 4; j++) s += a[j]! * b[j]!;
    return s;
  });
}

/** Runs the probe on an instantiated module (Node or workerd): the raw i16 and i32 results. */
export function runProbe(
  exports: WebAssembly.Exports,
  v: { a: Int8Array; b: Int8Array; c: Int32Array },
): { dot16: number[]; dot32add: number[] } {
  const e = exports as unknown as {
    memory: WebAssembly.Memory;
    dot16(a: number, b: number, out: number, n: number): void;
    dot32add(a: number, b: number, c: number, out: number, n: number): void;
  };
  const n = v.a.length / 16;
  const need = 5 * v.a.length + 1024;
  if (e.memory.buffer.byteLength < need)
    e.memory.grow(Math.ceil((need - e.memory.buffer.byteLength) / 65536));
  const A = 1024;
  const B = A + v.a.length;
  const C = B + v.a.length;
  const O = C + v.a.length;
  new Int8Array(e.memory.buffer, A, v.a.length).set(v.a);
  new Int8Array(e.memory.buffer, B, v.b.length).set(v.b);
  new Int32Array(e.memory.buffer, C, v.c.length).set(v.c);
  e.dot16(A, B, O, n);
  const dot16 = Array.from(new Int16Array(e.memory.buffer, O, v.a.length / 2));
  e.dot32add(A, B, C, O, n);
  const dot32add = Array.from(new Int32Array(e.memory.buffer, O, v.c.length));
  return { dot16, dot32add };
}
