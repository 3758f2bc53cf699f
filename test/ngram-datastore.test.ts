/**
 * The model-output n-gram datastore (issue 13's third draft source): its byte layout round-trips and
 * its parser refuses garbage with a clear error; the builder keeps the majority continuation and the
 * byte budget; the coverage replay counts what a drafter would accept; on stories260K, greedy and
 * seeded output with the datastore drafting equals plain decoding (exactness), and a datastore whose
 * drafts are wrong is priced out; the calibration prompts it is counted from are disjoint from the
 * bench's.
 */
import { readFileSync } from "node:fs";
import { beforeAll, describe, expect, it } from "vitest";
import {
  buildNgramDatastore,
  datastoreLookup,
  draftCoverage,
  draftDatastore,
  greedyAnswers,
  type PromptAnswer,
} from "../src/compress/ngram-datastore.ts";
import type { ModelDescription } from "../src/format/model.ts";
import {
  encodeNgramDatastore,
  NgramDatastore,
  NgramDatastoreError,
  type NgramEntry,
} from "../src/format/ngram-datastore.ts";
import { DraftSettings } from "../src/format/speculative.ts";
import { loadModel } from "../src/model/import/index.ts";
import { type GenerateOptionsInput, generate } from "../src/runtime/generate.ts";
import type { SpeculationStats } from "../src/runtime/speculative.ts";
import { WasmEngine } from "../src/runtime/wasm/engine.ts";
import { bytesToStream } from "../src/runtime/wasm/load-weights.ts";
import { packForTest } from "./helpers/packed-model.ts";
import { sharedModelPath } from "./helpers/paths.ts";
import { mulberry32 } from "./helpers/random.ts";
import { loadTestKernels } from "./kernels-helpers.ts";

const entries: NgramEntry[] = [
  { key: [5, 6], continuation: [7, 8, 9], count: 4, hits: 3 },
  { key: [4, 5, 6], continuation: [10, 11], count: 2, hits: 2 },
  { key: [1, 2], continuation: [3], count: 1, hits: 1 },
];

describe("byte layout", () => {
  it("round-trips entries and looks up the longest matching key", () => {
    const bytes = encodeNgramDatastore(entries, 100);
    const store = NgramDatastore.parse(bytes);
    expect(store.size).toBe(3);
    expect(store.entries()).toEqual(expect.arrayContaining(entries));
    // [4,5,6] is the longer key: its continuation wins over [5,6]'s.
    expect(store.lookup([9, 4, 5, 6], 8)).toEqual({ tokens: [10, 11], n: 3, confidence: 1 });
    expect(store.lookup([9, 3, 5, 6], 2)).toEqual({ tokens: [7, 8], n: 2, confidence: 0.75 });
    expect(store.lookup([6, 5], 4).n).toBe(0);
    expect(store.lookup([5, 6], 0).tokens).toEqual([]);
    expect(store.lookup([6], 4).n).toBe(0);
  });

  it("uses 4-byte tokens past a 16-bit vocabulary", () => {
    const big = [{ key: [70_000, 1], continuation: [69_999], count: 2, hits: 1 }];
    const bytes = encodeNgramDatastore(big, 80_000);
    expect(NgramDatastore.parse(bytes).lookup([3, 70_000, 1], 3).tokens).toEqual([69_999]);
    expect(bytes.byteLength).toBeGreaterThan(encodeNgramDatastore(entries.slice(0, 1), 100).byteLength);
  });

  it("the encoder refuses entries the layout cannot hold", () => {
    const bad: [NgramEntry[], number, RegExp][] = [
      [[], 100, /no entries/],
      [[{ key: [1, 2], continuation: [100], count: 1, hits: 1 }], 100, /outside the vocabulary/],
      [[{ key: [1, 2], continuation: [3], count: 1, hits: 2 }], 100, /hits 2/],
      [[{ key: [], continuation: [3], count: 1, hits: 1 }], 100, /key length/],
      [[{ key: [1], continuation: Array(16).fill(1), count: 1, hits: 1 }], 100, /continuation length/],
      [[entries[0]!, { ...entries[0]!, continuation: [1] }], 100, /duplicate key/],
    ];
    for (const [e, vocab, msg] of bad) expect(() => encodeNgramDatastore(e, vocab)).toThrow(msg);
  });

  it("the parser refuses garbage with NgramDatastoreError, never a crash or a half-read table", () => {
    const good = encodeNgramDatastore(entries, 100);
    const edit = (f: (b: Uint8Array, dv: DataView) => void) => {
      const b = good.slice();
      f(b, new DataView(b.buffer));
      return b;
    };
    const cases: [string, Uint8Array][] = [
      ["empty", new Uint8Array(0)],
      ["short header", good.subarray(0, 12)],
      ["bad magic", edit((b) => b.set([88], 0))],
      ["JSON", new TextEncoder().encode(JSON.stringify({ entries }))],
      ["truncated", good.subarray(0, good.byteLength - 1)],
      ["trailing bytes", new Uint8Array([...good, 0, 0])],
      ["zero entries", edit((_, dv) => dv.setUint32(12, 0, true))],
      ["entry count past the bytes", edit((_, dv) => dv.setUint32(12, 1e6, true))],
      ["wrong token width", edit((b) => b.set([4], 16))],
      ["key lengths reversed", edit((b) => b.set([3, 2], 17))],
      ["vocab 0", edit((_, dv) => dv.setUint32(8, 0, true))],
      ["token outside the vocabulary", edit((_, dv) => dv.setUint32(8, 5, true))],
      ["hits above count", edit((_, dv) => dv.setUint16(24, 9, true))],
      ["keys out of order", encodeSwapped()],
    ];
    const r = mulberry32(5);
    for (let i = 0; i < 20; i++) {
      const noise = good.slice();
      for (let j = 0; j < 4; j++) noise[20 + Math.floor(r() * (noise.length - 20))] = Math.floor(r() * 256);
      cases.push([`noise ${i}`, noise]);
    }
    let refused = 0;
    for (const [name, bytes] of cases) {
      let store: NgramDatastore | null = null;
      try {
        store = NgramDatastore.parse(bytes);
      } catch (e) {
        expect(e, name).toBeInstanceOf(NgramDatastoreError);
        refused++;
        continue;
      }
      // Noise that still parses is a valid table: every entry passes the encoder's checks again.
      expect(name).toMatch(/^noise/);
      expect(() => encodeNgramDatastore(store.entries(), store.vocabSize), name).not.toThrow();
    }
    expect(refused).toBeGreaterThanOrEqual(14);
  });
});

/** A valid layout whose first two entries are swapped (keys out of order). */
function encodeSwapped(): Uint8Array {
  const a = encodeNgramDatastore([entries[2]!], 100);
  const b = encodeNgramDatastore([entries[0]!], 100);
  const out = new Uint8Array(a.byteLength + b.byteLength - 20);
  out.set(a.subarray(0, 20), 0);
  out.set(b.subarray(20), 20);
  out.set(a.subarray(20), 20 + b.byteLength - 20);
  new DataView(out.buffer).setUint32(12, 2, true);
  return out;
}

describe("builder and coverage", () => {
  const answers: PromptAnswer[] = [
    { prompt: [1, 2], answer: [3, 4, 5, 6, 7] },
    { prompt: [1, 9], answer: [3, 4, 5, 6, 8] },
    { prompt: [1, 2], answer: [3, 4, 5, 6, 7] },
  ];

  it("keeps the majority continuation of each key, counted from answer positions after the first", () => {
    const built = buildNgramDatastore(answers, 20, { minN: 2, maxN: 2, continuation: 4 });
    const store = NgramDatastore.parse(built.bytes!);
    expect(built.sourceTokens).toBe(15);
    // After [3,4]: 5,6 then 7 twice and 8 once.
    expect(store.lookup([3, 4], 8)).toEqual({ tokens: [5, 6, 7], n: 2, confidence: 1 });
    expect(store.lookup([5, 6], 8)).toEqual({ tokens: [7], n: 2, confidence: 2 / 3 });
    // The first answer token is never a draft position: [1, 2] -> 3 is not stored.
    expect(store.lookup([1, 2], 8).n).toBe(0);
  });

  it("prunes to the byte budget, most frequent keys first", () => {
    const full = buildNgramDatastore(answers, 20, { minN: 2, maxN: 3 });
    const small = buildNgramDatastore(answers, 20, { minN: 2, maxN: 3, maxBytes: 60 });
    expect(small.bytes!.byteLength).toBeLessThanOrEqual(60);
    expect(small.entries.length).toBeGreaterThan(0);
    expect(small.entries.length).toBeLessThan(full.entries.length);
    const kept = Math.min(...small.entries.map((e) => e.hits));
    const dropped = full.entries.filter((e) => !small.entries.some((s) => s.key.join() === e.key.join()));
    for (const e of dropped) expect(e.hits).toBeLessThanOrEqual(kept);
    expect(buildNgramDatastore(answers, 20, { minCount: 4 }).bytes).toBeNull();
  });

  it("draftCoverage replays drafts the way a verifier accepts them", () => {
    const store = NgramDatastore.parse(buildNgramDatastore(answers.slice(0, 1), 20, { minN: 2 }).bytes!);
    // The second answer: [3] from prefill; at 4: key [1,9,3]/[9,3] unknown -> plain; at 5: [3,4] -> 5,6,7:
    // 5,6 right, 7 wrong (8): 2 accepted; the answer ends.
    const c = draftCoverage([answers[1]!], datastoreLookup(store), 6);
    expect(c).toEqual({
      tokens: 4,
      passes: 1,
      drafted: 3,
      accepted: 2,
      firstRight: 1,
      nextTried: 2,
      nextRight: 1,
    });
  });
});

describe("draft settings", () => {
  it("the datastore priors are optional and checked", () => {
    expect(DraftSettings.parse({}).storeAcceptance).toBeUndefined();
    expect(DraftSettings.parse({ storeAcceptance: 0.6, storeNextAcceptance: 0.4 })).toMatchObject({
      storeAcceptance: 0.6,
      storeNextAcceptance: 0.4,
    });
    for (const bad of [{ storeAcceptance: 1.5 }, { storeNextAcceptance: -0.1 }, { storeAcceptance: "high" }])
      expect(DraftSettings.safeParse(bad).success).toBe(false);
  });
});

describe("calibration prompts", () => {
  it("are disjoint from the bench prompts, also after case and whitespace folding", () => {
    const read = (f: string) =>
      JSON.parse(readFileSync(new URL(`../data/chat/${f}`, import.meta.url), "utf8"));
    const fold = (s: string) => s.toLowerCase().replace(/\s+/g, " ").trim();
    const calibration = (read("calibration.json").prompts as string[]).map(fold);
    const bench = read("bench-prompts.json") as { grounded: string[]; open: string[] };
    const benchSet = new Set([...bench.grounded, ...bench.open].map(fold));
    expect(calibration.length).toBeGreaterThan(100);
    expect(new Set(calibration).size).toBe(calibration.length);
    expect(calibration.filter((p) => benchSet.has(p))).toEqual([]);
  });
});

describe("exactness on stories260K", () => {
  let model: ModelDescription;
  let engine: WasmEngine;
  let store: NgramDatastore;
  let prior: { first: number; next: number };
  const prompt = (i: number) => [1, 3 + ((i * 37) % 400), 3 + ((i * 91) % 400)];

  beforeAll(async () => {
    model = await loadModel(sharedModelPath());
    const packed = packForTest(model);
    engine = await WasmEngine.load(await loadTestKernels(), packed.table, bytesToStream(packed.data, 4096));
    // The model's own greedy answers to 40 prompts make the table; other prompts test it.
    const answers = await greedyAnswers(
      engine,
      Array.from({ length: 40 }, (_, i) => prompt(i)),
      64,
    );
    const d = draftDatastore(answers, packed.table.config.vocabSize)!;
    store = NgramDatastore.parse(d.bytes);
    prior = d.acceptance;
    expect(d.ref.coverage).toBeGreaterThan(0);
  });

  async function run(p: number[], opts: GenerateOptionsInput) {
    const tokens: number[] = [];
    const stats: SpeculationStats = { drafted: 0, accepted: 0, verifications: 0 };
    for await (const t of generate(engine, p, { ...opts, stats })) tokens.push(t);
    return { tokens, stats };
  }

  const settings = {
    "non-adaptive": { adaptive: false },
    adaptive: {},
  };
  for (const [name, speculative] of Object.entries(settings)) {
    it(`greedy, ${name}: output with the datastore drafting equals plain decoding`, async () => {
      const sum = { drafted: 0, accepted: 0 };
      for (let i = 40; i < 64; i++) {
        const p = prompt(i);
        const plain = await run(p, { maxTokens: 96, temperature: 0 });
        const spec = await run(p, {
          maxTokens: 96,
          temperature: 0,
          speculative: { ...speculative, storeAcceptance: prior.first, storeNextAcceptance: prior.next },
          draftStore: store,
        });
        expect(spec.tokens, `prompt ${i}`).toEqual(plain.tokens);
        sum.drafted += spec.stats.sources!.store.drafted;
        sum.accepted += spec.stats.sources!.store.accepted;
      }
      // The datastore did draft, and some of its drafts were right and some wrong.
      expect(sum.drafted).toBeGreaterThan(20);
      expect(sum.accepted).toBeGreaterThan(0);
      expect(sum.accepted).toBeLessThan(sum.drafted);
    });
  }

  it("adaptive: a datastore whose drafts are always wrong is priced out after a few tries", async () => {
    // Every key of the real table, each continuation's tokens shifted: always a match, never right.
    const V = store.vocabSize;
    const wrong = NgramDatastore.parse(
      encodeNgramDatastore(
        store.entries().map((e) => ({ ...e, continuation: e.continuation.map((t) => (t + 1) % V) })),
        V,
      ),
    );
    for (let i = 40; i < 48; i++) {
      const p = prompt(i);
      const plain = await run(p, { maxTokens: 96, temperature: 0 });
      const spec = await run(p, {
        maxTokens: 96,
        temperature: 0,
        speculative: { storeAcceptance: 0.9, storeNextAcceptance: 0.9, ngramMin: 8, ngramMax: 8 },
        draftStore: wrong,
      });
      expect(spec.tokens).toEqual(plain.tokens);
      const s = spec.stats.sources!.store;
      expect(s.accepted).toBe(0);
      // A confident prior drafts at first; each miss (and each free check of a draft not taken)
      // lowers the estimate until no draft length pays.
      expect(s.passes).toBeGreaterThan(0);
      expect(s.passes).toBeLessThanOrEqual(4);
    }
  });

  it("seeded sampling with the datastore equals seeded plain sampling", async () => {
    for (let i = 40; i < 48; i++) {
      const opts = { maxTokens: 64, temperature: 0.8, seed: i };
      const plain = await run(prompt(i), opts);
      const spec = await run(prompt(i), { ...opts, speculative: { adaptive: false }, draftStore: store });
      expect(spec.tokens).toEqual(plain.tokens);
    }
  });
});
