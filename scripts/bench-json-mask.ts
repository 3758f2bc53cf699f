/**
 * Per-step cost of the json_object / json_schema token masks (src/runtime/json-mask.ts) on a real
 * vocabulary (default: SmolLM2-135M-Instruct's 49k tokens), next to the model's decode step.
 *
 *   npx tsx scripts/bench-json-mask.ts [model.gguf] [steps]
 *
 * Each run decodes `steps` tokens under the mask with random logits (seeded), so the walk sees
 * states a real answer passes through: keys, strings, numbers, arrays, closing.
 */
import { homedir } from "node:os";
import { join } from "node:path";
import { loadModel } from "../src/model/import/index.ts";
import { jsonObjectMask, jsonSchemaMask } from "../src/runtime/json-mask.ts";
import { compileSchema } from "../src/runtime/json-schema.ts";
import { argmax, createSampler } from "../src/runtime/sampler.ts";
import { createTokenizer } from "../src/runtime/tokenizer/index.ts";

const path = process.argv[2] ?? join(homedir(), ".cache/shardlm/models/SmolLM2-135M-Instruct.Q4_1.gguf");
const steps = Number(process.argv[3] ?? 200);
const description = await loadModel(path);
const tok = createTokenizer(description.tokenizer);
const stops = description.eosTokenIds;

const schema = compileSchema({
  type: "object",
  properties: {
    name: { type: "string" },
    age: { type: "integer" },
    mood: { enum: ["happy", "sad", "calm"] },
    tags: { type: "array", items: { type: "string" }, maxItems: 4 },
    address: {
      type: "object",
      properties: { city: { type: "string" }, zip: { anyOf: [{ type: "string" }, { type: "null" }] } },
      required: ["city", "zip"],
      additionalProperties: false,
    },
  },
  required: ["name", "age", "mood", "tags", "address"],
  additionalProperties: false,
});

const TARGET =
  '{"name": "Ada Lovelace", "age": 36, "mood": "calm", "tags": ["math", "poetry"], "address": {"city": "London", "zip": null}}';
const target = tok.encode(TARGET, { addBos: false, parseSpecial: false });

function run(label: string, makeMask: () => ReturnType<typeof jsonObjectMask>) {
  const mask = makeMask();
  let rng = 12345;
  const logits = new Float64Array(tok.vocabSize);
  let text = "";
  const times: number[] = [];
  for (let i = 0; i < steps; i++) {
    for (let j = 0; j < logits.length; j++) {
      rng = (Math.imul(rng, 1103515245) + 12345) >>> 0;
      logits[j] = (rng / 2 ** 32) * 8;
    }
    const t0 = performance.now();
    mask.allow(logits);
    // Follow a realistic answer while the mask allows it, then whatever the random logits say.
    const want = target[i];
    const id = want !== undefined && logits[want] !== Number.NEGATIVE_INFINITY ? want : argmax(logits);
    mask.accept(id);
    times.push(performance.now() - t0);
    if (stops.includes(id)) break;
    text += tok.decode([id]);
  }
  const sorted = [...times].sort((a, b) => a - b);
  const mean = times.reduce((a, b) => a + b, 0) / times.length;
  console.log(
    `${label}: ${times.length} steps, mean ${mean.toFixed(2)} ms/token (mask only: allow + accept), median ${sorted[sorted.length >> 1]!.toFixed(2)}, ` +
      `max ${sorted.at(-1)!.toFixed(1)}, cache ${mask.cacheHits} hits / ${mask.cacheMisses} misses`,
  );
  console.log(`  answer: ${JSON.stringify(text.slice(0, 160))}`);
}

// Baselines on the same vocabulary: greedy and sampled (temperature 1) choice without a mask.
for (const temperature of [0, 1]) {
  const sampler = createSampler({ temperature, seed: 1 });
  const logits = new Float32Array(tok.vocabSize).map((_, i) => (i * 7919) % 101);
  const t0 = performance.now();
  for (let i = 0; i < 50; i++) sampler.sample(logits);
  const ms = (performance.now() - t0) / 50;
  console.log(
    `vocab ${tok.vocabSize}; sampler, temperature ${temperature}, no mask: ${ms.toFixed(2)} ms/token`,
  );
}
const t0 = performance.now();
jsonObjectMask(tok, stops, 1); // builds the vocabulary index once per tokenizer
console.log(`vocabulary index (once per tokenizer): ${(performance.now() - t0).toFixed(0)} ms`);
// First request of a language (cold cache), then the same again (cache shared across requests).
run("json_object, first request", () => jsonObjectMask(tok, stops, steps));
run("json_object, again", () => jsonObjectMask(tok, stops, steps));
run("json_schema, first request", () => jsonSchemaMask(tok, stops, steps, schema));
run("json_schema, again", () => jsonSchemaMask(tok, stops, steps, schema));
