/**
 * A second `npm start` (another port) must not rewrite an unchanged build/: a `wrangler dev` already
 * serving watches it, reloads on a rewrite and drops the variants it had loaded. The kernels are
 * rebuilt only when their stamp (a hash of the sources, build script, compiler version and flags)
 * is missing or differs, and a rebuild with the same bytes leaves the binary alone; the playground
 * files are written only when their text changed.
 */
import { readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ensureKernelsWasm } from "../src/kernels/wasm/build.ts";
import { buildPlayground, PLAYGROUND_BUILD_DIR } from "../src/playground/build.ts";

/** Each file's identity and modification time: a rewrite (or a rename over it) changes one of them. */
function snapshot(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const f of readdirSync(dir)) {
    if (f.endsWith(".tmp")) continue; // another test worker's write in progress
    const st = statSync(join(dir, f));
    out.set(f, `${st.ino} ${st.mtimeMs} ${st.size}`);
  }
  return out;
}

async function buildAll(log: (m: string) => void = () => {}): Promise<void> {
  const simd = await ensureKernelsWasm({}, log);
  const relaxed = await ensureKernelsWasm({ relaxed: true }, log);
  await buildPlayground({ relaxed, simd });
}

describe("an unchanged build is not rewritten", () => {
  it("kernels and playground: a second build with the same inputs leaves every file as it was", async () => {
    await buildAll(); // the global setup built them; this makes sure of the stamps
    const simd = await ensureKernelsWasm();
    const wasmDir = join(simd, "..");
    const before = { wasm: snapshot(wasmDir), playground: snapshot(PLAYGROUND_BUILD_DIR) };
    expect(before.wasm.has("kernels.wasm.stamp")).toBe(true);
    expect(before.playground.size).toBeGreaterThanOrEqual(4);

    const lines: string[] = [];
    await buildAll((m) => lines.push(m));
    expect(lines).toEqual([
      expect.stringMatching(/^build\/wasm\/kernels\.wasm: up to date/),
      expect.stringMatching(/^build\/wasm\/kernels-relaxed\.wasm: up to date/),
    ]);
    expect(snapshot(wasmDir)).toEqual(before.wasm);
    expect(snapshot(PLAYGROUND_BUILD_DIR)).toEqual(before.playground);
  });

  it("a stamp that differs (changed inputs) rebuilds; the same bytes leave the binary in place", async () => {
    const simd = await ensureKernelsWasm();
    const stamp = `${simd}.stamp`;
    const binary = statSync(simd);
    writeFileSync(stamp, "inputs of another build\n");
    const lines: string[] = [];
    expect(await ensureKernelsWasm({}, (m) => lines.push(m))).toBe(simd);
    expect(lines).toEqual([
      expect.stringMatching(/^build\/wasm\/kernels\.wasm: built in [\d.]+ s \(inputs changed\)$/),
    ]);
    const after = statSync(simd);
    expect([after.ino, after.mtimeMs]).toEqual([binary.ino, binary.mtimeMs]);
    // The stamp now names the real inputs again: the next check builds nothing.
    lines.length = 0;
    await ensureKernelsWasm({}, (m) => lines.push(m));
    expect(lines).toEqual([expect.stringMatching(/: up to date/)]);
  }, 300_000);
});
