/**
 * Decode speed against node-llama-cpp measured in alternating rounds: each round runs every engine once
 * (prompt + `decodeTokens` greedy steps), and each engine keeps its best decode time. On a shared
 * machine the load changes over minutes; alternating puts every engine under the same load, so the
 * ratio is what the targets use (the table's rows are measured one engine after another). Both engines
 * compute on one thread of this process, so decode is also timed in this process's CPU time, which
 * time-slicing by other processes does not inflate: on a loaded machine that is the fairer ratio.
 */
import type { BenchOptions, PackedShape } from "./common.ts";
import { argmax, promptIds } from "./common.ts";
import { type LlamaSource, startLlama } from "./llama.ts";
import { runOnce } from "./timing.ts";
import { loadEngine } from "./wasm-node.ts";

export interface PairedDecode {
  shape: string;
  rounds: number;
  /** Best decode tok/s per engine label ("node", "node+relaxed", "llama.cpp"), by wall time. */
  tokS: Record<string, number>;
  /** The same by this process's CPU time. */
  cpuTokS: Record<string, number>;
}

interface Timed {
  wallMs: number;
  cpuMs: number;
}

export async function pairedDecode(
  p: PackedShape,
  o: BenchOptions,
  relaxed: boolean,
  source?: LlamaSource,
): Promise<PairedDecode> {
  const prompt = promptIds(o.promptTokens, p.table.config.vocabSize);
  const engines: { label: string; run: () => Promise<Timed> }[] = [];
  for (const r of relaxed ? [false, true] : [false]) {
    const { engine } = await loadEngine(p, { kvCache: "f16", activations: "q8" }, r);
    await runOnce(engine, prompt, 8);
    engines.push({
      label: r ? "node+relaxed" : "node",
      run: async () => {
        const state = engine.newState(prompt.length + o.decodeTokens);
        let logits = engine.prefill(state, prompt);
        const c0 = process.cpuUsage();
        const t0 = performance.now();
        for (let i = 0; i < o.decodeTokens; i++) logits = engine.forward(state, argmax(logits));
        const wallMs = performance.now() - t0;
        const c = process.cpuUsage(c0);
        return { wallMs, cpuMs: (c.user + c.system) / 1000 };
      },
    });
  }
  const llama = await startLlama(p, o, source);
  engines.push({
    label: "llama.cpp",
    run: async () => {
      const t = await llama.run(o.decodeTokens);
      return { wallMs: t.decodeMs, cpuMs: t.decodeCpuMs };
    },
  });
  const best: Record<string, Timed> = {};
  const rounds = o.repeats + 2;
  try {
    for (let i = 0; i < rounds; i++) {
      for (const e of engines) {
        const t = await e.run();
        const b = best[e.label];
        best[e.label] = b ? { wallMs: Math.min(b.wallMs, t.wallMs), cpuMs: Math.min(b.cpuMs, t.cpuMs) } : t;
      }
    }
  } finally {
    await llama.dispose();
  }
  const tokS: Record<string, number> = {};
  const cpuTokS: Record<string, number> = {};
  for (const [k, t] of Object.entries(best)) {
    tokS[k] = (o.decodeTokens * 1000) / t.wallMs;
    cpuTokS[k] = (o.decodeTokens * 1000) / t.cpuMs;
  }
  return { shape: p.shape, rounds, tokS, cpuTokS };
}
