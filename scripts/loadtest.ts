/**
 * `npm run loadtest -- [--clients 20] [--seconds 30] [--max-tokens 64] [--tier quality|balanced|speed]`
 *
 * Starts the API the way the tests do (stories260K variants in workerd, local R2, 127.0.0.1 only),
 * then runs `--clients` concurrent streaming clients, each sending its next request as soon as the
 * last one ends, for `--seconds`; clients spread over the three tiers unless `--tier` pins one.
 * Reports time to first token (p50/p95), tokens/s, requests, errors (5xx apart), and memory before
 * and after: the isolate's engine bytes (GET /healthz) and the workerd process's RSS. Exits 1 on any
 * error or 5xx, or if engine memory ends above its bound: the engines' own bytes before the run plus
 * the most the resident variants' prefix caches may hold (they fill up under load, bounded and LRU).
 *
 * Bounded: at most 200 clients and 600 s; requests still running when the time is up get 30 s to
 * finish, then are aborted (and counted as errors).
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import OpenAI from "openai";
import { startLocalApi } from "../src/bench/local-api.ts";
import { buildVariants, DEFAULT_CONFIG } from "../src/compress/build-variants.ts";
import { workerdPids } from "../src/compress/workerd-host.ts";
import { TINY_MODEL } from "../src/model/default-model.ts";
import { exitCodeFor, isUsageError, UsageError } from "./lib/usage.ts";

interface Options {
  clients: number;
  seconds: number;
  maxTokens: number;
  tier: string | null;
}

const TIERS = ["quality", "balanced", "speed"];
/** Where the stories260K variants are built (reused while their inputs are unchanged). */
const LOADTEST_VARIANTS_DIR = fileURLToPath(
  new URL("../node_modules/.cache/shardlm/test-variants", import.meta.url),
);
const PROMPTS = [
  "Once upon a time",
  "Lily and Ben went to the park",
  "The sun was shining and the birds were singing",
  "Tom had a big red ball",
  "One day, a little bird",
];
const GRACE_MS = 30_000;

function parseArgs(argv: string[]): Options {
  const opts: Options = { clients: 20, seconds: 30, maxTokens: 64, tier: null };
  const int = (name: string, v: string | undefined, min: number, max: number) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max)
      throw new UsageError(`--${name} must be an integer in ${min}..${max}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [flag, inline] = arg.split("=", 2) as [string, string | undefined];
    const value = () => inline ?? argv[++i];
    if (flag === "--clients") opts.clients = int("clients", value(), 1, 200);
    else if (flag === "--seconds") opts.seconds = int("seconds", value(), 1, 600);
    else if (flag === "--max-tokens") opts.maxTokens = int("max-tokens", value(), 1, 1024);
    else if (flag === "--tier") {
      const t = value();
      if (!t || !TIERS.includes(t)) throw new UsageError(`--tier must be one of ${TIERS.join(", ")}`);
      opts.tier = t;
    } else if (flag === "--help" || flag === "-h") {
      console.log(
        "npm run loadtest -- [--clients 20] [--seconds 30] [--max-tokens 64] [--tier quality|balanced|speed]",
      );
      process.exit(0);
    } else throw new UsageError(`unknown argument ${arg}`);
  }
  return opts;
}

// --- workerd process memory --------------------------------------------------------------------

/** The workerd process Miniflare started for us (a descendant of this process), or null. */
function findWorkerd(): number | null {
  return workerdPids()[0] ?? null;
}

function rssBytes(pid: number | null): number | null {
  if (pid === null) return null;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

// --- the run -------------------------------------------------------------------------------------

interface Sample {
  tier: string;
  ok: boolean;
  status: number | null;
  ttftMs: number | null;
  totalMs: number;
  tokens: number;
  error?: string;
}

const pct = (xs: number[], p: number) => {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
};
const mib = (n: number | null) => (n === null ? "n/a" : `${(n / 1024 / 1024).toFixed(1)} MiB`);
const ms = (n: number) => (Number.isNaN(n) ? "n/a" : `${n.toFixed(1)} ms`);

async function oneRequest(
  client: OpenAI,
  tier: string,
  prompt: string,
  maxTokens: number,
  signal: AbortSignal,
): Promise<Sample> {
  const t0 = performance.now();
  let ttftMs: number | null = null;
  let tokens = 0;
  try {
    const stream = await client.chat.completions.create(
      {
        model: "shardlm",
        messages: [{ role: "user", content: prompt }],
        max_tokens: maxTokens,
        stream: true,
        stream_options: { include_usage: true },
      },
      { headers: { "X-Quality-Tier": tier }, signal, timeout: GRACE_MS },
    );
    let finished = false;
    for await (const chunk of stream) {
      if (ttftMs === null && chunk.choices[0]?.delta.content) ttftMs = performance.now() - t0;
      if (chunk.choices[0]?.finish_reason) finished = true;
      if (chunk.usage) tokens = chunk.usage.completion_tokens;
    }
    if (!finished) throw new Error("the stream ended without a finish_reason");
    return { tier, ok: true, status: 200, ttftMs, totalMs: performance.now() - t0, tokens };
  } catch (e) {
    const status = e instanceof OpenAI.APIError ? (e.status ?? null) : null;
    return {
      tier,
      ok: false,
      status,
      ttftMs,
      totalMs: performance.now() - t0,
      tokens,
      error: (e as Error).message.slice(0, 200),
    };
  }
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  console.log(
    `loadtest: ${opts.clients} streaming clients for ${opts.seconds} s, max_tokens ${opts.maxTokens}, ` +
      `${opts.tier ? `tier ${opts.tier}` : "tiers round-robin"}`,
  );
  const built = await buildVariants({
    model: TINY_MODEL,
    config: DEFAULT_CONFIG,
    out: LOADTEST_VARIANTS_DIR,
    log: () => {},
  });
  const api = await startLocalApi({ dir: built.out, index: built.index });
  try {
    if (api.url.hostname !== "127.0.0.1") throw new Error(`refusing to load ${api.url}: not 127.0.0.1`);
    const workerd = findWorkerd();
    const healthz = async () =>
      (await (await fetch(new URL("/healthz", api.url))).json()) as {
        engine_bytes: number;
        prefix_cache_bytes: number;
        prefix_cache_max_bytes: number;
        resident_variants: number;
        generations: number;
        tokens_generated: number;
        client_gone: number;
      };

    // Warm-up: every variant loaded once, so "before" is the steady state.
    for (const tier of TIERS) {
      const r = await oneRequest(api.client, tier, PROMPTS[0]!, 8, AbortSignal.timeout(GRACE_MS));
      if (!r.ok) throw new Error(`warm-up (${tier}) failed: ${r.error}`);
    }
    const before = await healthz();
    const rssBefore = rssBytes(workerd);
    let rssPeak = rssBefore ?? 0;
    const timeline: string[] = []; // RSS every 5 s: growth that plateaus is warm-up, a slope is a leak
    const tStart = performance.now();
    const rssTimer = setInterval(() => {
      const rss = rssBytes(workerd) ?? 0;
      rssPeak = Math.max(rssPeak, rss);
      const s = Math.round((performance.now() - tStart) / 1000);
      if (s % 5 === 0 && timeline.length < s / 5) timeline.push(`${s}s ${mib(rss)}`);
    }, 1000);

    const samples: Sample[] = [];
    // One controller per request (the openai client leaves a listener on the signal it is given),
    // all aborted at the hard stop.
    const inFlight = new Set<AbortController>();
    let stopped = false;
    const t0 = performance.now();
    const endAt = t0 + opts.seconds * 1000;
    const hardStop = setTimeout(
      () => {
        stopped = true;
        for (const ac of inFlight) ac.abort();
      },
      opts.seconds * 1000 + GRACE_MS,
    );
    await Promise.all(
      Array.from({ length: opts.clients }, async (_, c) => {
        const tier = opts.tier ?? TIERS[c % TIERS.length]!;
        for (let i = 0; performance.now() < endAt && !stopped; i++) {
          const prompt = PROMPTS[(c + i) % PROMPTS.length]!;
          const ac = new AbortController();
          inFlight.add(ac);
          samples.push(await oneRequest(api.client, tier, prompt, opts.maxTokens, ac.signal));
          inFlight.delete(ac);
        }
      }),
    );
    const wallS = (performance.now() - t0) / 1000;
    clearTimeout(hardStop);
    clearInterval(rssTimer);
    await new Promise((r) => setTimeout(r, 500)); // let the last generations settle
    const after = await healthz();
    const rssAfter = rssBytes(workerd);
    rssPeak = Math.max(rssPeak, rssAfter ?? 0);

    // --- report ----------------------------------------------------------------------------------
    const ok = samples.filter((s) => s.ok);
    const errors = samples.filter((s) => !s.ok);
    const fiveXX = errors.filter((s) => s.status !== null && s.status >= 500);
    const ttfts = ok.map((s) => s.ttftMs).filter((x): x is number => x !== null);
    const tokens = ok.reduce((n, s) => n + s.tokens, 0);
    const lines = [
      "",
      `requests        ${samples.length} in ${wallS.toFixed(1)} s (${(samples.length / wallS).toFixed(1)}/s), ${ok.length} ok`,
      `errors          ${errors.length} (5xx: ${fiveXX.length})`,
      `ttft            p50 ${ms(pct(ttfts, 50))}, p95 ${ms(pct(ttfts, 95))}, max ${ms(Math.max(...ttfts))}`,
      `latency         p50 ${ms(
        pct(
          ok.map((s) => s.totalMs),
          50,
        ),
      )}, p95 ${ms(
        pct(
          ok.map((s) => s.totalMs),
          95,
        ),
      )}`,
      `tokens          ${tokens} streamed, ${(tokens / wallS).toFixed(0)} tokens/s ` +
        `(server: ${after.tokens_generated - before.tokens_generated} generated)`,
    ];
    for (const tier of TIERS) {
      const t = ok.filter((s) => s.tier === tier);
      if (t.length === 0) continue;
      const tt = t.map((s) => s.ttftMs).filter((x): x is number => x !== null);
      lines.push(
        `  ${tier.padEnd(13)} ${String(t.length).padStart(5)} requests, ttft p50 ${ms(pct(tt, 50))}, p95 ${ms(pct(tt, 95))}`,
      );
    }
    // Engines (WASM memory, KV caches) stay as loaded; the prefix caches may fill up to their maximum.
    const enginesBefore = before.engine_bytes - before.prefix_cache_bytes;
    const bound = enginesBefore + after.prefix_cache_max_bytes;
    const engineGrew = after.engine_bytes > bound;
    lines.push(
      `engine memory   ${mib(before.engine_bytes)} before, ${mib(after.engine_bytes)} after ` +
        `(${before.resident_variants} -> ${after.resident_variants} variants resident)`,
      `  bound         ${mib(bound)}: engines ${mib(enginesBefore)} + prefix caches' max ${mib(after.prefix_cache_max_bytes)} ` +
        `(holding ${mib(after.prefix_cache_bytes)})${engineGrew ? "  OVER THE BOUND" : ", within"}`,
      `workerd RSS     ${workerd === null ? "n/a (process not found)" : `${mib(rssBefore)} before, ${mib(rssAfter)} after, peak ${mib(rssPeak)} (pid ${workerd})`}`,
      ...(timeline.length ? [`  over time     ${timeline.join(", ")}`] : []),
      `clients gone    ${after.client_gone - before.client_gone} (generations stopped for a vanished client)`,
    );
    const byError = new Map<string, number>();
    for (const e of errors) {
      const key = `${e.status ?? "network"}: ${e.error}`;
      byError.set(key, (byError.get(key) ?? 0) + 1);
    }
    for (const [k, n] of byError) lines.push(`  ${n} x ${k}`);
    console.log(lines.join("\n"));
    if (errors.length > 0 || engineGrew) process.exitCode = 1;
  } finally {
    await api.close();
  }
}

main().catch((e) => {
  console.error(isUsageError(e) ? `error: ${(e as Error).message}` : e);
  process.exit(exitCodeFor(e));
});
