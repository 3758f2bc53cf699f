/**
 * `npm run bench`: shardlm's WASM-SIMD (and WebGPU) int4 engines against onnxruntime-web, node-llama-cpp and the fp32
 * reference, on synthetic weights in real model shapes (src/model/synthetic.ts).
 *   npm run bench -- --tiers [--out variants] [--rounds 5]   (decode speed of built variants, alternating rounds)
 *   npm run bench [-- --json] [--quick] [--shapes stories15M,stories110M,SmolLM2-135M]
 *                 [--engines shardlm-wasm,shardlm-webgpu,workerd,onnxruntime-web,node-llama-cpp,shardlm-ref]
 *                 [--no-profile] [--no-kernels] [--no-relaxed]
 *   npm run bench -- --real [--json] [--quick] [--model file.gguf]: the real default model, ours
 *   npm run bench -- --kernels-only [--json] [--quick] [--rounds N] [--batch-ms MS] [--shapes SmolLM2-135M] [--runtime node|workerd|both]
 *                 [--no-simd] [--no-relaxed]: the kernel table alone (with the batched kernel's floor)
 *   npm run bench -- --prefill-positions [--model file.gguf] [--json]: prefill cost against position
 *                 (Node, workerd) against node-llama-cpp on the same GGUF (see realMain)
 * Prints a table (or, with --json, one JSON object per row on stdout; progress always goes to stderr),
 * the kernel table (GB/s, instructions per 32 weights, batched per-row cost against M), the targets as
 * [MET]/[MISS] with measured values, and a per-op profile of our engine on stories110M.
 * Node runs the relaxed-SIMD build too (rows "node+relaxed"): the bench sets V8's
 * --experimental-wasm-relaxed-simd for its own process (--no-relaxed: don't).
 */
import os from "node:os";
import {
  type BenchOptions,
  type BenchRow,
  ENGINES,
  forgetShape,
  log,
  packedShape,
} from "../src/bench/common.ts";
import { innermostLoops, type LoopCount } from "../src/bench/instructions.ts";
import { AB_ROWS, type AbRow, kernelAb } from "../src/bench/kernel-ab.ts";
import { KERNEL_SHAPES, type KernelRow, type KernelShape, kernelTable } from "../src/bench/kernel-table.ts";
import { llamaRow } from "../src/bench/llama.ts";
import { ortRow } from "../src/bench/ort.ts";
import { type PairedDecode, pairedDecode } from "../src/bench/paired.ts";
import { prefillPositionRows } from "../src/bench/prefill-position.ts";
import { REAL_MODEL_SHAPE, realModelPath, realPackedShape, sourceQuant } from "../src/bench/real-model.ts";
import { referenceRow } from "../src/bench/reference.ts";
import { samplingCosts } from "../src/bench/sampling.ts";
import { speculativeBench, speculativeTargets } from "../src/bench/speculative.ts";
import { tierSpeeds } from "../src/bench/tier-speed.ts";
import {
  enableRelaxedSimd,
  loadEngine,
  NODE_RELAXED,
  type OpProfile,
  type PrefillComparison,
  wasmNodeRows,
  wasmProfile,
} from "../src/bench/wasm-node.ts";
import { webgpuRow } from "../src/bench/webgpu.ts";
import { type CpuPair, WorkerdBench, workerdKernelAb, workerdKernelTables } from "../src/bench/workerd.ts";
import { DEFAULT_OUT } from "../src/compress/build-variants.ts";
import { ensureKernelsWasm } from "../src/kernels/wasm/build.ts";
import { loadKernelsNode } from "../src/kernels/wasm/node.ts";
import { TINY_MODEL } from "../src/model/default-model.ts";
import { MODEL_SHAPES, type ModelShape } from "../src/model/synthetic.ts";
import {
  decodeTargets,
  kernelReport,
  machine,
  notes,
  prefillReport,
  printTable,
  profileReport,
  resultTable,
  targetReport,
  targets,
} from "./bench/report.ts";

const ALL_ENGINES = [...ENGINES, "workerd"] as const;

function parseArgs(argv: string[]): BenchOptions {
  const value = (name: string): string | undefined => {
    const i = argv.findIndex((a) => a === name || a.startsWith(`${name}=`));
    if (i < 0) return undefined;
    const a = argv[i]!;
    return a.includes("=") ? a.slice(a.indexOf("=") + 1) : argv[i + 1];
  };
  const list = <T extends string>(name: string, allowed: readonly T[]): T[] => {
    const v = value(name);
    if (v === undefined) return [...allowed];
    const items = v.split(",").map((s) => s.trim()) as T[];
    for (const s of items)
      if (!allowed.includes(s)) throw new Error(`${name}: unknown "${s}" (one of ${allowed.join(", ")})`);
    return items;
  };
  const quick = argv.includes("--quick");
  return {
    shapes: list("--shapes", MODEL_SHAPES),
    quick,
    json: argv.includes("--json"),
    promptTokens: 32,
    decodeTokens: quick ? 16 : 64,
    repeats: quick ? 2 : 3,
    engines: new Set(list("--engines", ALL_ENGINES)),
    profile: !argv.includes("--no-profile"),
    kernels: !argv.includes("--no-kernels"),
    relaxed: !argv.includes("--no-relaxed"),
  };
}

/** The value given after flag `name` (undefined when the flag is absent; also when it is last). */
const flagValue = (argv: string[], name: string): string | undefined =>
  argv.includes(name) ? argv[argv.indexOf(name) + 1] : undefined;

/** `--rounds N` (default `fallback`): a positive integer. */
function roundsFlag(argv: string[], fallback: number): number {
  const rounds = Number(flagValue(argv, "--rounds") ?? fallback);
  if (!Number.isInteger(rounds) || rounds < 1)
    throw new Error(`--rounds: a positive integer (got ${flagValue(argv, "--rounds")})`);
  return rounds;
}

/** `--batch-ms MS` (default `fallback`): a positive number. */
function batchMsFlag(argv: string[], fallback: number): number {
  const batchMs = Number(flagValue(argv, "--batch-ms") ?? fallback);
  if (!(batchMs > 0)) throw new Error(`--batch-ms: a positive number (got ${flagValue(argv, "--batch-ms")})`);
  return batchMs;
}

/** `--runtime node|workerd|both` (default `fallback`; a flag without a value is an error). */
function runtimeFlag(argv: string[], fallback: "node" | "workerd" | "both"): "node" | "workerd" | "both" {
  const runtime = argv.includes("--runtime") ? flagValue(argv, "--runtime") : fallback;
  if (runtime !== "node" && runtime !== "workerd" && runtime !== "both")
    throw new Error(`--runtime: node, workerd or both (got ${String(runtime)})`);
  return runtime;
}

/** `--shapes a,b` of the kernel table (default all); none known is an error. */
function kernelShapesFlag(argv: string[]): KernelShape[] {
  const models = flagValue(argv, "--shapes")?.split(",");
  const shapes = models ? KERNEL_SHAPES.filter((s) => models.includes(s.model)) : KERNEL_SHAPES;
  if (!shapes.length) throw new Error(`--shapes: none of ${models!.join(", ")} in the kernel table`);
  return shapes;
}

/** "load average (1/5/15 min) a b c at start, d e f at end", from the start's os.loadavg(). */
function loadSpan(load0: number[]): string {
  const f = (l: number[]) => l.map((x) => x.toFixed(2)).join(" ");
  return `load average (1/5/15 min) ${f(load0)} at start, ${f(os.loadavg())} at end`;
}

if (process.argv.includes("--tiers")) {
  await tiersMain(process.argv.slice(2));
  process.exit(0);
}

/** `--tiers [--out variants] [--rounds 5]`: decode speed of built variants in alternating rounds. */
async function tiersMain(argv: string[]): Promise<void> {
  const dir = flagValue(argv, "--out") ?? DEFAULT_OUT;
  const rounds = roundsFlag(argv, 5);
  log(`shardlm tier speeds: ${machine()}, 1-min load average ${os.loadavg()[0]!.toFixed(1)}, ${dir}`);
  const rows = await tierSpeeds(dir, { rounds, log });
  console.log("variant   tier      MB     layers  KL      decode ms/tok (wall, CPU)  speedup (CPU)");
  for (const r of rows)
    console.log(
      `${r.variant.padEnd(9)} ${r.tier.padEnd(9)} ${(r.bytes / 1e6).toFixed(2).padStart(6)} ${String(r.layers).padStart(6)}  ${r.kl_mean.toFixed(4)}  ${r.decode_ms_wall.toFixed(1).padStart(8)}, ${r.decode_ms_cpu.toFixed(1).padStart(8)}        ${r.speedup_cpu.toFixed(3)}x`,
    );
}

if (process.argv.includes("--speculative") || process.argv.includes("--spec")) {
  await speculativeMain(process.argv.slice(2));
  process.exit(0);
}

/**
 * `--speculative` (or `--spec`) `[--json] [--quick] [--per-set N] [--skip-layers 11,12,..] [--no-llama]
 * [--runtime node|workerd|both]`: the issue-13 bench on the real model, our engine in Node and/or workerd
 * (default both).
 */
async function speculativeMain(argv: string[]): Promise<void> {
  const json = argv.includes("--json");
  const quick = argv.includes("--quick");
  const skipAt = argv.indexOf("--skip-layers");
  const skipLayers = skipAt >= 0 ? argv[skipAt + 1]!.split(",").map(Number) : [];
  const perSetAt = argv.indexOf("--per-set");
  const perSet = perSetAt >= 0 ? Number(argv[perSetAt + 1]) : undefined;
  const runtimeArg = runtimeFlag(argv, "both");
  const runtimes = runtimeArg === "both" ? (["node", "workerd"] as const) : ([runtimeArg] as const);
  const t0 = Date.now();
  log(`shardlm speculative bench: ${machine()}, 1-min load average ${os.loadavg()[0]!.toFixed(1)}`);
  const { rows, turns } = await speculativeBench({
    draft: { skipLayers },
    llama: !argv.includes("--no-llama"),
    ...(quick ? { perSet: 3, tokens: 64 } : {}),
    ...(perSet ? { perSet } : {}),
    runtimes,
  });
  const say = json ? log : (x: string) => console.log(x);
  if (json)
    for (const r of rows)
      console.log(
        JSON.stringify(r, (_, v) => (typeof v === "number" && !Number.isInteger(v) ? +v.toFixed(3) : v)),
      );
  say(`\nengine          runtime  set       spec  tok/s  cpu-tok/s  accept  mean-len  identical`);
  for (const r of rows)
    say(
      `${r.engine.padEnd(15)} ${r.runtime.padEnd(8)} ${r.prompt_set.padEnd(9)} ${String(r.speculative).padEnd(5)} ${r.decode_tok_s.toFixed(1).padStart(6)}  ${r.cpu_decode_tok_s.toFixed(1).padStart(9)}  ` +
        `${r.acceptance_rate === null ? "   -  " : r.acceptance_rate.toFixed(2).padStart(6)}  ${r.mean_accepted_length === null ? "    -   " : r.mean_accepted_length.toFixed(2).padStart(8)}  ${r.greedy_identical ?? "-"}`,
    );
  for (const t of turns)
    say(
      `${t.runtime} turn ${t.turn}: ${t.promptTokens} prompt tokens, ${t.cachedTokens} from the prefix cache, TTFT ${t.ttftMs.toFixed(0)} ms (median; ${t.ttftRangeMs[0].toFixed(0)}-${t.ttftRangeMs[1].toFixed(0)})`,
    );
  say("\ntargets (timings on a shared machine: ratios from the same run):");
  for (const line of speculativeTargets(rows, turns)) say(`  ${line}`);
  log(`done in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
}

if (process.argv.includes("--kernel-ab")) {
  await kernelAbMain(process.argv.slice(2));
  process.exit(0);
}

/**
 * `--kernel-ab A.wasm B.wasm [--runtime workerd|node|both] [--rounds N] [--batch-ms MS] [--shapes SmolLM2-135M,...]`:
 * two kernel binaries (e.g. a kernel change against the build before it) timed in one process in
 * alternating rounds on the same weights: B's time / A's per kernel, medians and [min, max].
 */
async function kernelAbMain(argv: string[]): Promise<void> {
  const i = argv.indexOf("--kernel-ab");
  const [a, b] = [argv[i + 1], argv[i + 2]];
  if (!a || !b || a.startsWith("--") || b.startsWith("--")) throw new Error("--kernel-ab A.wasm B.wasm");
  const rounds = roundsFlag(argv, 9);
  const shapes = kernelShapesFlag(argv);
  const runtime = runtimeFlag(argv, "workerd");
  const batchMs = batchMsFlag(argv, 30);
  const load0 = os.loadavg();
  const results: [string, AbRow[]][] = [];
  if (runtime !== "node") results.push(["workerd", await workerdKernelAb(a, b, { shapes, rounds, batchMs })]);
  if (runtime !== "workerd") {
    await enableRelaxedSimd();
    const ab = kernelAb(await loadKernelsNode(a), await loadKernelsNode(b), { shapes, rounds, batchMs });
    results.push(["node", ab]);
  }
  console.log(
    `kernel A/B, ${new Date().toISOString().slice(0, 16)}Z, ${machine()}; A = ${a}, B = ${b}; ${rounds} alternating rounds; ` +
      loadSpan(load0),
  );
  const keys = AB_ROWS.map((m) => (m === 1 ? "mv" : `mm${m}`));
  const f2 = (v: number) => v.toFixed(2);
  for (const [rt, rows] of results) {
    console.log(
      `\n${rt}: B time / A time, median (min-max); per-row cost A -> B (µs per row / same binary's matvec)`,
    );
    printTable(
      [
        "shape",
        "A matvec µs",
        ...keys.map((k) => `B/A ${k}`),
        ...AB_ROWS.filter((m) => m > 1).map((m) => `per-row M=${m}`),
      ],
      rows.map((r) => [
        r.shape,
        r.aUs.mv!.toFixed(1),
        ...keys.map((k) => `${f2(r.bOverA[k]!)} (${f2(r.spread[k]![0])}-${f2(r.spread[k]![1])})`),
        ...AB_ROWS.filter((m) => m > 1).map((m) => `${f2(r.aPerRow[m]!)} -> ${f2(r.bPerRow[m]!)}`),
      ]),
      (s) => console.log(s),
    );
  }
}

if (process.argv.includes("--kernels-only")) {
  await kernelsMain(process.argv.slice(2));
  process.exit(0);
}

/**
 * The kernel tables of Node (SIMD128, relaxed-i16 behind V8's flag) and workerd (relaxed = production,
 * SIMD128), each on its bench build (production kernels + the floor kernel), in alternating rounds;
 * `loops` gets the instruction counts of the Node builds' inner loops.
 */
async function kernelTables(k: {
  batches?: number;
  batchMs?: number;
  shapes?: KernelShape[];
  relaxed: boolean;
  node?: boolean;
  simd?: boolean;
  workerd: readonly ("simd" | "relaxed")[];
  loops?: Record<string, LoopCount[]>;
}): Promise<Record<string, KernelRow[]>> {
  const ko = {
    ...(k.batches ? { batches: k.batches } : {}),
    ...(k.batchMs ? { batchMs: k.batchMs } : {}),
    ...(k.shapes ? { shapes: k.shapes } : {}),
  };
  const res: Record<string, KernelRow[]> = {};
  if (k.node !== false) {
    if (k.simd !== false) {
      log("  node SIMD128 ...");
      res["node SIMD128"] = kernelTable(await loadKernelsNode(await ensureKernelsWasm({ bench: true })), ko);
      if (k.loops)
        k.loops.SIMD128 = innermostLoops(await ensureKernelsWasm(), ["matvec_q4_q8", "matmul_q4_q8"], false);
    }
    if (k.relaxed) {
      log("  node relaxed-i16 ...");
      res["node relaxed-i16"] = kernelTable(
        await loadKernelsNode(await ensureKernelsWasm({ ...NODE_RELAXED, bench: true })),
        ko,
      );
      if (k.loops)
        k.loops["relaxed-i16"] = innermostLoops(
          await ensureKernelsWasm(NODE_RELAXED),
          ["matvec_q4_q8", "matmul_q4_q8"],
          true,
        );
    }
  }
  if (k.workerd.length) {
    log(`  workerd ${k.workerd.join(", ")} ...`);
    const w = await workerdKernelTables(ko, k.workerd);
    if (w.simd.length) res["workerd SIMD128"] = w.simd;
    if (w.relaxed.length) res["workerd relaxed"] = w.relaxed;
  }
  return res;
}

/** --json: one object per kernel-table row, {kind: "kernel", table, ...KernelRow}. */
function emitKernelRows(tables: Record<string, KernelRow[]>): void {
  for (const [table, rows] of Object.entries(tables))
    for (const r of rows)
      console.log(
        JSON.stringify({ kind: "kernel", table, ...r }, (_, v) =>
          typeof v === "number" && !Number.isInteger(v) ? +v.toFixed(4) : v,
        ),
      );
}

/**
 * `--kernels-only [--json] [--quick] [--rounds N] [--batch-ms MS] [--shapes SmolLM2-135M,...] [--runtime node|workerd|both]
 * [--no-simd] [--no-relaxed]`: only the kernel table (matvec GB/s, batched per-row cost against M and
 * the floor kernel's, medians of alternating rounds) and the batched target, without the decode runs.
 */
async function kernelsMain(argv: string[]): Promise<void> {
  const quick = argv.includes("--quick");
  const rounds = roundsFlag(argv, quick ? 3 : 7);
  const shapes = kernelShapesFlag(argv);
  const runtime = runtimeFlag(argv, "both");
  const simd = !argv.includes("--no-simd");
  const json = argv.includes("--json");
  const say = json ? log : (x: string) => console.log(x);
  const load0 = os.loadavg();
  log(`shardlm kernel table: ${machine()}; ${rounds} alternating rounds`);
  const relaxed = !argv.includes("--no-relaxed") && (await enableRelaxedSimd());
  const batchMs = batchMsFlag(argv, quick ? 20 : 40);
  const tables = await kernelTables({
    batches: rounds,
    batchMs,
    shapes,
    relaxed,
    node: runtime !== "workerd",
    simd,
    workerd: runtime === "node" ? [] : simd ? ["relaxed", "simd"] : ["relaxed"],
  });
  if (json) emitKernelRows(tables);
  say(`\nkernel table, ${new Date().toISOString().slice(0, 16)}Z, ${machine()}, ${loadSpan(load0)}`);
  kernelReport(tables, {}, say);
  targetReport(decodeTargets([], [], tables), say);
}

if (process.argv.includes("--prefill-positions")) {
  await prefillPositionsMain(process.argv.slice(2));
  process.exit(0);
}

/**
 * `--prefill-positions [--model file.gguf] [--json]`: prefill ms per token against position (the
 * fit builds record as speed.prefillPositionTokens) on the real default model and the tiny model.
 */
async function prefillPositionsMain(argv: string[]): Promise<void> {
  const at = argv.indexOf("--model");
  const real = at >= 0 ? argv[at + 1]! : await realModelPath(log);
  log(`shardlm prefill by position: ${machine()}, 1-min load average ${os.loadavg()[0]!.toFixed(1)}`);
  for (const [path, name] of [
    [real, REAL_MODEL_SHAPE],
    [TINY_MODEL, "stories260K"],
  ] as const) {
    for (const r of await prefillPositionRows(path, name)) {
      if (argv.includes("--json")) {
        console.log(JSON.stringify(r));
        continue;
      }
      const last = r.points.at(-1)!;
      console.log(
        `${r.model} kv ${r.kvCache}${r.served ? " (served)" : ""}: ${r.msPerTokenAt0.toFixed(4)} ms/token at position 0, x2 at position ${r.positionTokens?.toFixed(0) ?? "none (flat)"}; ` +
          `measured ${r.points[0]!.msPerToken.toFixed(4)} ms/token at ${r.points[0]!.position}, ${last.msPerToken.toFixed(4)} at ${last.position} (x${(last.msPerToken / r.points[0]!.msPerToken).toFixed(2)})`,
      );
    }
  }
}

if (process.argv.includes("--real")) {
  await realMain(parseArgs(process.argv.slice(2)), process.argv.slice(2));
  process.exit(0);
}

/**
 * `--real [--json] [--quick] [--model file.gguf] [--engines ...]`: issue 11's rows on the real default
 * model. Our engine (Node, Node+relaxed, workerd) on its int4 packing of the GGUF, node-llama-cpp on
 * the very same GGUF file (its own Q4_1/Q8_0 kernels), 1 thread each, then decode in alternating rounds.
 */
async function realMain(o: BenchOptions, argv: string[]): Promise<void> {
  const at = argv.indexOf("--model");
  const started = new Date();
  const loadAtStart = os.loadavg()[0]!;
  const { p, file } = await realPackedShape(at >= 0 ? argv[at + 1] : undefined);
  log(`shardlm bench --real: ${machine()}; ${file}`);
  const source = { file, quant: sourceQuant(p) };
  const relaxed = o.relaxed && (await enableRelaxedSimd());
  const rows: BenchRow[] = [];
  const profiles: OpProfile[] = [];
  let cpuPair: CpuPair | null = null;
  const emit = (r: BenchRow) => {
    rows.push(r);
    if (o.json)
      console.log(
        JSON.stringify(r, (_, v) => (typeof v === "number" && !Number.isInteger(v) ? +v.toFixed(3) : v)),
      );
  };
  if (o.engines.has("shardlm-wasm")) (await wasmNodeRows(p, o, relaxed)).rows.forEach(emit);
  if (o.engines.has("workerd")) {
    log("    workerd ...");
    const w = await WorkerdBench.start();
    try {
      emit(await w.row(p, o));
      if (relaxed) cpuPair = await w.pairedByCpu(p, o);
      if (o.profile) {
        // Each runtime's relaxed build (workerd: the i32 dot-add, Node: the i16 dot), per op.
        if (relaxed && o.engines.has("shardlm-wasm")) profiles.push(await wasmProfile(p, o, true));
        profiles.push(await w.profile(p, o));
      }
    } finally {
      await w.dispose();
    }
  }
  if (o.engines.has("node-llama-cpp")) emit(await llamaRow(p, o, source));
  let pairedLine = "";
  let realPaired: PairedDecode | null = null;
  if (o.engines.has("node-llama-cpp") && o.engines.has("shardlm-wasm")) {
    log("    decode, alternating rounds: ours / node-llama-cpp ...");
    const d = await pairedDecode(p, o, relaxed, source);
    realPaired = d;
    pairedLine = Object.keys(d.tokS)
      .map((k) => `${k} ${d.tokS[k]!.toFixed(1)} tok/s (${d.cpuTokS[k]!.toFixed(1)} by CPU time)`)
      .join(", ");
  }
  const out = o.json ? log : (s: string) => console.log(s);
  out(
    `\nshardlm bench --real, ${started.toISOString().slice(0, 10)}, ${machine()}, ` +
      `1-min load average ${loadAtStart.toFixed(1)} at start, ${os.loadavg()[0]!.toFixed(1)} at end\n`,
  );
  resultTable(rows, [p.shape], out);
  if (pairedLine) out(`\ndecode in alternating rounds (same load for each): ${pairedLine}`);
  if (cpuPair) {
    const r = (a: number, b: number) => `${(a / b).toFixed(2)}x`;
    out(
      `\nworkerd vs node+relaxed by CPU time (each runtime's relaxed build, ${cpuPair.rounds} alternating rounds, medians): ` +
        `decode ${cpuPair.workerd.decode.toFixed(1)} vs ${cpuPair.node.decode.toFixed(1)} tok/s ` +
        `(${r(cpuPair.workerd.decode, cpuPair.node.decode)}), prefill ${cpuPair.workerd.prefill.toFixed(1)} vs ` +
        `${cpuPair.node.prefill.toFixed(1)} (${r(cpuPair.workerd.prefill, cpuPair.node.prefill)})`,
    );
  }
  if (realPaired) {
    const workerdCpu = cpuPair ? { workerd: cpuPair.workerd.decode, node: cpuPair.node.decode } : undefined;
    targetReport(decodeTargets(rows, [realPaired], {}, workerdCpu), out);
  }
  for (const profile of profiles) profileReport(profile, out);
  if (o.engines.has("shardlm-wasm")) {
    const { engine } = await loadEngine(p, { kvCache: "f16", activations: "q8" });
    const costs = samplingCosts(engine, p.table.config.vocabSize);
    const step = rows.find((r) => r.engine === "shardlm-wasm" && r.runtime === "node");
    out(
      `\nSampling (src/runtime/sampler.ts, JS, one real logits vector of ${p.table.config.vocabSize} tokens):`,
    );
    for (const c of costs)
      out(
        `  ${c.name.padEnd(50)} ${c.msPerToken.toFixed(3)} ms/token` +
          (step ? ` (${((c.msPerToken * step.decode_tok_s) / 10).toFixed(1)}% of a Node decode step)` : ""),
      );
  }
  log(`\ndone in ${((Date.now() - started.getTime()) / 1000).toFixed(0)} s`);
}

const o = parseArgs(process.argv.slice(2));
const started = new Date();
const loadAtStart = os.loadavg()[0]!;
const out = o.json ? (s: string) => log(s) : (s: string) => console.log(s);
log(`shardlm bench: ${machine()}; shapes ${o.shapes.join(", ")}${o.quick ? " (quick)" : ""}`);

const relaxed = o.relaxed && (await enableRelaxedSimd());
if (o.relaxed && !relaxed) log("  this Node cannot run the relaxed-SIMD build: node+relaxed rows skipped");
const rows: BenchRow[] = [];
const prefill: PrefillComparison[] = [];
const paired: PairedDecode[] = [];
const tables: Record<string, KernelRow[]> = {};
const loops: Record<string, LoopCount[]> = {};
const profiles: OpProfile[] = [];
const profileShape: ModelShape = o.shapes.includes("stories110M") ? "stories110M" : o.shapes.at(-1)!;
const emit = (r: BenchRow) => {
  rows.push(r);
  if (o.json)
    console.log(
      JSON.stringify(r, (_, v) => (typeof v === "number" && !Number.isInteger(v) ? +v.toFixed(3) : v)),
    );
};

let workerd: WorkerdBench | null = null;
try {
  for (const shape of o.shapes) {
    log(`${shape}:`);
    const p = packedShape(shape);
    if (o.engines.has("shardlm-wasm")) {
      const r = await wasmNodeRows(p, o, relaxed);
      r.rows.forEach(emit);
      prefill.push(r.prefill);
      if (o.profile && shape === profileShape) profiles.push(await wasmProfile(p, o));
    }
    if (o.engines.has("workerd")) {
      log("    workerd ...");
      workerd ??= await WorkerdBench.start();
      emit(await workerd.row(p, o));
      if (o.profile && shape === profileShape) profiles.push(await workerd.profile(p, o));
    }
    if (o.engines.has("shardlm-webgpu")) {
      log("    shardlm-webgpu ...");
      const r = await webgpuRow(p, o);
      if (r) emit(r);
    }
    if (o.engines.has("onnxruntime-web")) emit(await ortRow(p, o));
    if (o.engines.has("node-llama-cpp")) emit(await llamaRow(p, o));
    if (o.engines.has("node-llama-cpp") && o.engines.has("shardlm-wasm")) {
      log("    decode, alternating rounds: ours / node-llama-cpp ...");
      paired.push(await pairedDecode(p, o, relaxed));
    }
    if (o.engines.has("shardlm-ref")) emit(await referenceRow(p, o));
    forgetShape(shape);
  }
} finally {
  await workerd?.dispose();
}

if (o.kernels) {
  log("kernel table ...");
  Object.assign(
    tables,
    await kernelTables({
      ...(o.quick ? { batches: 3, batchMs: 20 } : {}),
      relaxed,
      workerd: o.engines.has("workerd") ? ["simd", "relaxed"] : [],
      loops,
    }),
  );
  if (o.json) emitKernelRows(tables);
}

out(
  `\nshardlm bench, ${started.toISOString().slice(0, 10)}, ${machine()}, ` +
    `1-min load average ${loadAtStart.toFixed(1)} at start, ${os.loadavg()[0]!.toFixed(1)} at end\n`,
);
resultTable(rows, o.shapes, out);
notes(o, out);
prefillReport(prefill, out);
kernelReport(tables, loops, out);
targetReport([...decodeTargets(rows, paired, tables), ...targets(rows)], out);
for (const profile of profiles) profileReport(profile, out);
log(`\ndone in ${((Date.now() - started.getTime()) / 1000).toFixed(0)} s`);
