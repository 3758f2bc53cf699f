/**
 * Native instructions per 32 weights in the int4 kernels' innermost loop, as V8's optimizing compiler
 * (TurboFan) emits them for this machine: compiles a kernels .wasm in a child `node --print-wasm-code`,
 * finds the exported function's innermost loop (the shortest backward branch with no other backward
 * branch inside) and counts its instructions, all and SIMD (xmm/ymm operands). A matvec loop pass
 * handles one 16-byte chunk (32 weights) of 4 weight rows (a matmul pass: that, for one activation row),
 * so the count per 32 weights per row is total / (4 x passes).
 * Node's V8 (11.3 in Node 20) may differ from workerd's in instruction selection; this is Node's view.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

export interface LoopCount {
  fn: string;
  /** Instructions in the innermost loop body (including its branch). */
  total: number;
  /** Those with an xmm / ymm operand. */
  simd: number;
  /**
   * Weight-row chunks one loop pass covers: 4 rows x the passes TurboFan unrolled into the loop (counted
   * by its int -> float conversions, one per chunk of 4 rows).
   */
  perRowDivisor: number;
}

/** Function index of each exported function (walks the binary's import and export sections). */
function exportIndices(bytes: Uint8Array): Map<string, number> {
  let p = 8;
  const u32 = () => {
    let r = 0;
    let s = 0;
    for (;;) {
      const b = bytes[p++]!;
      r |= (b & 0x7f) << s;
      if (!(b & 0x80)) return r >>> 0;
      s += 7;
    }
  };
  const out = new Map<string, number>();
  while (p < bytes.length) {
    const id = bytes[p++]!;
    const size = u32();
    const end = p + size;
    if (id === 7) {
      const n = u32();
      for (let i = 0; i < n; i++) {
        const len = u32();
        const name = new TextDecoder().decode(bytes.subarray(p, p + len));
        p += len;
        const kind = bytes[p++]!;
        const index = u32();
        if (kind === 0) out.set(name, index);
      }
    }
    p = end;
  }
  return out;
}

/**
 * Counts the innermost loop of each named export of the module at wasmPath. extraFlags: more V8 flags,
 * e.g. `--wasm-enforce-bounds-checks` for workerd's code (it installs no trap handler).
 */
export function innermostLoops(
  wasmPath: string,
  fns: string[],
  relaxed: boolean,
  extraFlags: string[] = [],
): LoopCount[] {
  const bytes = readFileSync(wasmPath);
  const index = exportIndices(bytes);
  const flags = ["--print-wasm-code", "--no-liftoff", "--no-wasm-lazy-compilation", ...extraFlags];
  if (relaxed) flags.push("--experimental-wasm-relaxed-simd");
  const dump = execFileSync(
    process.execPath,
    [...flags, "-e", `WebAssembly.compile(require("fs").readFileSync(${JSON.stringify(wasmPath)}))`],
    { encoding: "utf8", maxBuffer: 256 << 20 },
  );
  const bodies = new Map<number, string[]>();
  for (const block of dump.split("--- WebAssembly code ---")) {
    const m = /name: wasm-function\[(\d+)\]/.exec(block);
    if (m) bodies.set(Number(m[1]), block.split("\n"));
  }
  return fns.map((fn) => {
    const lines = bodies.get(index.get(fn) ?? -1);
    if (!lines) throw new Error(`${fn}: no code for it in the dump`);
    // "0x... <offset hex> <bytes> <mnemonic operands>"
    const ins = lines
      .map((l) => /^0x[0-9a-f]+\s+([0-9a-f]+)\s+[0-9a-f]+\s+(.*)$/.exec(l))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => ({ off: Number.parseInt(m[1]!, 16), text: m[2]! }));
    const loops: [number, number][] = [];
    // Out-of-line code (stack-check and trap paths) follows the body's first `ret` and jumps back into
    // loops; those jumps are not loops.
    const bodyEnd = ins.findIndex((x) => /^ret/.test(x.text));
    ins.forEach((x, i) => {
      if (bodyEnd >= 0 && i > bodyEnd) return;
      const j = /^j\w+\s+0x[0-9a-f]+\s+<\+0x([0-9a-f]+)>/.exec(x.text);
      if (!j) return;
      const target = Number.parseInt(j[1]!, 16);
      const t = ins.findIndex((y) => y.off === target);
      if (t >= 0 && t <= i) loops.push([t, i]);
    });
    const contains = ([a, b]: [number, number], [c, d]: [number, number]) =>
      a <= c && d <= b && (a !== c || b !== d);
    const inner = loops
      .filter((l) => !loops.some((o) => contains(l, o)))
      .sort((x, y) => y[1] - y[0] - (x[1] - x[0]));
    // the longest innermost loop is the chunk loop (the others are short setup loops)
    const [a, b] = inner[0] ?? [0, -1];
    const body = ins.slice(a, b + 1);
    const passes = Math.max(1, body.filter((x) => /cvtdq2ps/.test(x.text)).length);
    return {
      fn,
      total: body.length,
      simd: body.filter((x) => /[xy]mm\d/.test(x.text)).length,
      perRowDivisor: 4 * passes,
    };
  });
}
