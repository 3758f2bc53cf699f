/**
 * `npm run bench -- --speculative` (issue 13): exact speculative decoding on the real
 * SmolLM2-135M-Instruct, over the fixed chat prompts in data/chat/bench-prompts.json (sets "grounded"
 * and "open"), 128 greedy tokens each: our plain decode, our speculative decode (checked token for
 * token against plain), node-llama-cpp's plain decode of the same GGUF; then a 5-turn conversation's
 * time to first token with the prefix cache. Effective decode tok/s = tokens after the first / time
 * after the first token (the first comes from prefill).
 */
import { getLlama, LlamaLogLevel, type Token } from "node-llama-cpp";
import { measureRowCost, measureVerifyCosts } from "../compress/speculative-search.ts";
import { loadKernelsNode } from "../kernels/wasm/node.ts";
import { promptTokens, renderPrompt } from "../runtime/chat.ts";
import { type GenerateOptionsInput, generate } from "../runtime/generate.ts";
import { PrefixCache } from "../runtime/prefix-cache.ts";
import type { SpeculationStats } from "../runtime/speculative.ts";
import { createTokenizer } from "../runtime/tokenizer/index.ts";
import { WasmEngine } from "../runtime/wasm/engine.ts";
import { bytesToStream } from "../runtime/wasm/load-weights.ts";
import { log } from "./common.ts";
import { loadRealModel, REAL_MODEL_SHAPE, readBenchPrompts, realModelPath } from "./real-model.ts";

export interface SpeculativeRow {
  engine: "shardlm-wasm" | "node-llama-cpp";
  model_shape: typeof REAL_MODEL_SHAPE;
  prompt_set: "grounded" | "open";
  speculative: boolean;
  /** Speculative rows: every prompt's tokens equal our plain decode's (checked); plain rows: true. */
  greedy_identical: boolean | null;
  prompts: number;
  decode_tokens: number;
  decode_tok_s: number;
  /**
   * decode_tok_s by this process's CPU time instead of wall time: on a shared machine, where other
   * processes take turns on the cores, the ratios between rows of one run are steadier by this.
   */
  cpu_decode_tok_s: number;
  /** Accepted / drafted tokens (speculative rows). */
  acceptance_rate: number | null;
  /** Accepted drafts per verification pass. */
  mean_accepted_length: number | null;
  threads: 1;
  note: string;
}

export interface TurnTiming {
  turn: number;
  promptTokens: number;
  cachedTokens: number;
  ttftMs: number;
}

export interface SpeculativeBenchOptions {
  /** Greedy tokens per prompt (default 128). */
  tokens?: number;
  /** Prompts per set (default: all). */
  perSet?: number;
  /**
   * Draft settings (default: prompt lookup, no skipped layers, adaptive); rowCost, rowCosts and
   * headShare default to the verify costs measured at the start of this run.
   */
  draft?: Exclude<GenerateOptionsInput["speculative"], false | undefined>;
  llama?: boolean;
}

/** This process's CPU time in ms (every thread: node-llama-cpp's decode thread too). */
function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

interface Timed {
  tokens: number[];
  decodeMs: number;
  decodeCpuMs: number;
  ttftMs: number;
  stats: SpeculationStats;
  cached: number;
}

async function timed(engine: WasmEngine, prompt: number[], opts: GenerateOptionsInput): Promise<Timed> {
  const stats: SpeculationStats = { drafted: 0, accepted: 0, verifications: 0 };
  const tokens: number[] = [];
  const t0 = performance.now();
  let first = t0;
  let firstCpu = cpuMs();
  const gen = generate(engine, prompt, { ...opts, stats });
  let r = await gen.next();
  for (; !r.done; r = await gen.next()) {
    if (tokens.length === 0) {
      first = performance.now();
      firstCpu = cpuMs();
    }
    tokens.push(r.value);
  }
  const end = performance.now();
  return {
    tokens,
    decodeMs: end - first,
    decodeCpuMs: cpuMs() - firstCpu,
    ttftMs: first - t0,
    stats,
    cached: r.value.cachedTokens,
  };
}

export async function speculativeBench(
  o: SpeculativeBenchOptions = {},
): Promise<{ rows: SpeculativeRow[]; turns: TurnTiming[] }> {
  const tokensPer = o.tokens ?? 128;
  const model = await loadRealModel();
  const kernels = await loadKernelsNode();
  const engine = await WasmEngine.load(kernels, model.table, bytesToStream(model.data), {
    contextSize: 1024,
  });
  // The draft policy prices a verified row at what it costs on this engine, measured now (the build
  // records the same measurement in the manifest).
  const rowCost = o.draft?.rowCost ?? measureRowCost(engine);
  log(`  verify row cost (8 rows, layers + head, per row / one decode step): ${rowCost.toFixed(2)}`);
  // And per row count, layers alone (what the drafter chooses draft lengths from), as the build does.
  const measured = o.draft?.rowCosts ? null : measureVerifyCosts(engine);
  if (measured)
    log(
      `  verify layers per row at 1..${measured.rowCosts.length} rows (decode steps): ` +
        `${measured.rowCosts.map((c) => c.toFixed(2)).join(" ")}; head ${measured.headShare.toFixed(2)} of a step`,
    );
  const draft = {
    ...(measured ? { rowCosts: measured.rowCosts, headShare: measured.headShare } : {}),
    ...o.draft,
    rowCost,
  };
  const tok = createTokenizer(model.tokenizer);
  const encode = (messages: { role: "user" | "assistant" | "system"; content: string }[]) =>
    promptTokens(renderPrompt(model.chatTemplate, messages, tok), tok);
  const sets = readBenchPrompts();
  const rows: SpeculativeRow[] = [];
  // No stop tokens: every prompt decodes exactly `tokensPer` tokens (as the llama.cpp rows do).
  const base = { maxTokens: tokensPer, temperature: 0 };

  const llama =
    o.llama === false ? null : await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
  const llamaModel = llama ? await llama.loadModel({ modelPath: await realModelPath() }) : null;
  const llamaCtx = llamaModel
    ? await llamaModel.createContext({ contextSize: 1024, threads: 1, batchSize: 512 })
    : null;
  try {
    for (const set of ["grounded", "open"] as const) {
      const texts = sets[set].slice(0, o.perSet ?? sets[set].length);
      const prompts = texts.map((t) => encode([{ role: "user", content: t }]));
      const acc = {
        plain: { ms: 0, cpu: 0, n: 0 },
        spec: {
          ms: 0,
          cpu: 0,
          n: 0,
          drafted: 0,
          accepted: 0,
          verifications: 0,
          headRows: 0,
          identical: true,
        },
        llama: { ms: 0, cpu: 0, n: 0 },
      };
      for (const [i, p] of prompts.entries()) {
        const plain = await timed(engine, p, base);
        const spec = await timed(engine, p, { ...base, speculative: draft });
        const same =
          spec.tokens.length === plain.tokens.length && spec.tokens.every((t, j) => t === plain.tokens[j]);
        acc.plain.ms += plain.decodeMs;
        acc.plain.cpu += plain.decodeCpuMs;
        acc.plain.n += plain.tokens.length - 1;
        acc.spec.ms += spec.decodeMs;
        acc.spec.cpu += spec.decodeCpuMs;
        acc.spec.n += spec.tokens.length - 1;
        acc.spec.drafted += spec.stats.drafted;
        acc.spec.accepted += spec.stats.accepted;
        acc.spec.verifications += spec.stats.verifications;
        acc.spec.headRows += spec.stats.headRows ?? 0;
        acc.spec.identical &&= same;
        if (llamaCtx) {
          const seq = llamaCtx.getSequence();
          await seq.clearHistory();
          let n = 0;
          let first = 0;
          let firstCpu = 0;
          for await (const _ of seq.evaluate(p as Token[], { temperature: 0 })) {
            if (n === 0) {
              first = performance.now();
              firstCpu = cpuMs();
            }
            if (++n >= tokensPer) break;
          }
          acc.llama.ms += performance.now() - first;
          acc.llama.cpu += cpuMs() - firstCpu;
          acc.llama.n += n - 1;
          seq.dispose();
        }
        log(
          `  ${set} ${i + 1}/${prompts.length}: plain ${((plain.tokens.length - 1) / (plain.decodeMs / 1000)).toFixed(1)} tok/s, ` +
            `speculative ${((spec.tokens.length - 1) / (spec.decodeMs / 1000)).toFixed(1)} tok/s, ` +
            `accepted ${spec.stats.accepted}/${spec.stats.drafted} in ${spec.stats.verifications} verify passes${same ? "" : ", OUTPUT DIFFERS"}`,
        );
      }
      const row = (
        engineName: SpeculativeRow["engine"],
        speculative: boolean,
        t: { ms: number; cpu: number; n: number },
      ) => ({
        engine: engineName,
        model_shape: REAL_MODEL_SHAPE,
        prompt_set: set,
        speculative,
        prompts: prompts.length,
        decode_tokens: tokensPer,
        decode_tok_s: (t.n * 1000) / t.ms,
        cpu_decode_tok_s: (t.n * 1000) / t.cpu,
        threads: 1 as const,
      });
      rows.push({
        ...row("shardlm-wasm", false, acc.plain),
        greedy_identical: true,
        acceptance_rate: null,
        mean_accepted_length: null,
        note: "plain greedy decode, int4 g32 RTN of the Q4_1 GGUF, q8 activations, fp16 KV",
      });
      rows.push({
        ...row("shardlm-wasm", true, acc.spec),
        greedy_identical: acc.spec.identical,
        acceptance_rate: acc.spec.drafted ? acc.spec.accepted / acc.spec.drafted : 0,
        mean_accepted_length: acc.spec.verifications ? acc.spec.accepted / acc.spec.verifications : 0,
        note:
          `speculative: ${JSON.stringify(draft)}; ${acc.spec.accepted}/${acc.spec.drafted} drafts accepted in ` +
          `${acc.spec.verifications} verify passes; heads computed for ${acc.spec.headRows} of ` +
          `${acc.spec.verifications + acc.spec.drafted} verified rows`,
      });
      if (llamaCtx)
        rows.push({
          ...row("node-llama-cpp", false, acc.llama),
          greedy_identical: null,
          acceptance_rate: null,
          mean_accepted_length: null,
          note: "llama.cpp CPU build, same Q4_1 GGUF, 1 thread, plain greedy decode",
        });
    }
  } finally {
    await llamaCtx?.dispose();
    await llamaModel?.dispose();
  }

  // A 5-turn conversation with the prefix cache: each turn's prompt extends the last turn's sequence.
  const cache = new PrefixCache(32 << 20);
  const messages: { role: "user" | "assistant"; content: string }[] = [];
  const turns: TurnTiming[] = [];
  for (let turn = 1; turn <= 5; turn++) {
    messages.push({ role: "user", content: sets.open[turn - 1]! });
    const prompt = encode(messages);
    const r = await timed(engine, prompt, {
      maxTokens: 48,
      temperature: 0,
      stopTokenIds: model.eosTokenIds,
      speculative: draft,
      prefixCache: cache,
    });
    turns.push({ turn, promptTokens: prompt.length, cachedTokens: r.cached, ttftMs: r.ttftMs });
    log(
      `  turn ${turn}: ${prompt.length} prompt tokens (${r.cached} cached), first token after ${r.ttftMs.toFixed(0)} ms`,
    );
    messages.push({ role: "assistant", content: tok.decode(r.tokens) });
  }
  return { rows, turns };
}

/** The targets with the measured values. */
export function speculativeTargets(rows: SpeculativeRow[], turns: TurnTiming[]): string[] {
  const get = (set: string, engine: string, spec: boolean) =>
    rows.find((r) => r.prompt_set === set && r.engine === engine && r.speculative === spec);
  const lines: string[] = [];
  const ratio = (a: SpeculativeRow | undefined, b: SpeculativeRow | undefined) => ({
    wall: a && b ? a.decode_tok_s / b.decode_tok_s : Number.NaN,
    cpu: a && b ? a.cpu_decode_tok_s / b.cpu_decode_tok_s : Number.NaN,
  });
  const check = (name: string, v: { wall: number; cpu: number }, target: number) =>
    lines.push(
      `${v.wall >= target ? "PASS" : "MISS"} ${name}: ${v.wall.toFixed(2)}x (by CPU time ${v.cpu.toFixed(2)}x; target >= ${target}x)`,
    );
  check(
    "grounded speculative / our plain",
    ratio(get("grounded", "shardlm-wasm", true), get("grounded", "shardlm-wasm", false)),
    1.8,
  );
  check(
    "open speculative / our plain",
    ratio(get("open", "shardlm-wasm", true), get("open", "shardlm-wasm", false)),
    1.3,
  );
  check(
    "open speculative / node-llama-cpp plain",
    ratio(get("open", "shardlm-wasm", true), get("open", "node-llama-cpp", false)),
    1.0,
  );
  const t1 = turns[0]?.ttftMs;
  const t5 = turns[4]?.ttftMs;
  if (t1 && t5)
    lines.push(
      `${t5 <= 1.2 * t1 ? "PASS" : "MISS"} turn-5 TTFT / turn-1 TTFT: ${(t5 / t1).toFixed(2)} (target <= 1.2)`,
    );
  const identical = rows.filter((r) => r.speculative).every((r) => r.greedy_identical === true);
  lines.push(`${identical ? "PASS" : "FAIL"} speculative greedy output identical to plain on every prompt`);
  return lines;
}
