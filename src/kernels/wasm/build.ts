/**
 * Builds the AssemblyScript SIMD kernels from src/kernels/wasm/assembly/index.ts (Node only):
 *   build/wasm/kernels.wasm          SIMD128 (runs everywhere, Node 20 included)
 *   build/wasm/kernels-relaxed.wasm  SIMD128 + relaxed SIMD (workerd; Node 20 needs --experimental-wasm-relaxed-simd)
 * CLI: scripts/build-wasm.ts (npm run build:wasm). The tests and benches call `ensureKernelsWasm` so a
 * fresh clone builds on first use.
 */
import { mkdir, readdir, rename, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import asc from "assemblyscript/asc";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const sourceDir = path.join(root, "src/kernels/wasm/assembly");
const entry = path.join(sourceDir, "index.ts");
export const KERNELS_WASM_PATH = path.join(root, "build/wasm/kernels.wasm");
export const KERNELS_RELAXED_WASM_PATH = path.join(root, "build/wasm/kernels-relaxed.wasm");

const ASC_FLAGS = [
  "-O3",
  "--noAssert",
  "--runtime",
  "stub",
  // No env.abort import: the module instantiates with an empty import object.
  "--use",
  "abort=",
  "--initialMemory",
  "2",
];

export async function buildKernelsWasm(opts: { wat?: boolean; relaxed?: boolean } = {}): Promise<string> {
  let binary: Uint8Array | null = null;
  let text: string | null = null;
  const stderr: string[] = [];
  const target = opts.relaxed ? KERNELS_RELAXED_WASM_PATH : KERNELS_WASM_PATH;
  const args = [
    entry,
    "--outFile",
    target,
    ...(opts.wat ? ["--textFile", target.replace(/\.wasm$/, ".wat")] : []),
  ];
  const features = ["--enable", opts.relaxed ? "simd,relaxed-simd" : "simd"];
  const result = await asc.main([...args, ...features, ...ASC_FLAGS], {
    stdout: { write: () => true } as never,
    stderr: {
      write: (chunk: string | Uint8Array) => {
        stderr.push(typeof chunk === "string" ? chunk : new TextDecoder().decode(chunk));
        return true;
      },
    } as never,
    // Capture outputs; written below via rename so concurrent test workers never read a partial file.
    writeFile: (name: string, contents: Uint8Array | string) => {
      if (name.endsWith(".wasm")) binary = contents as Uint8Array;
      else text = contents as string;
    },
  });
  if (result.error || !binary) {
    throw new Error(`asc failed: ${result.error?.message ?? "no binary"}\n${stderr.join("")}`);
  }
  await mkdir(path.dirname(target), { recursive: true });
  const tmp = `${target}.${process.pid}.${Date.now()}.tmp`;
  await writeFile(tmp, binary);
  await rename(tmp, target);
  if (text !== null) await writeFile(target.replace(/\.wasm$/, ".wat"), text);
  return target;
}

async function newestSourceMtime(): Promise<number> {
  let newest = (await stat(fileURLToPath(import.meta.url))).mtimeMs;
  for (const f of await readdir(sourceDir)) {
    if (f.endsWith(".ts")) newest = Math.max(newest, (await stat(path.join(sourceDir, f))).mtimeMs);
  }
  return newest;
}

/** Builds when the .wasm is missing or older than any kernel source. Returns its path. */
export async function ensureKernelsWasm(opts: { relaxed?: boolean } = {}): Promise<string> {
  const target = opts.relaxed ? KERNELS_RELAXED_WASM_PATH : KERNELS_WASM_PATH;
  const built = await stat(target).catch(() => null);
  if (!built || built.mtimeMs < (await newestSourceMtime())) await buildKernelsWasm(opts);
  return target;
}
