/**
 * The weight table: how a packed model's tensors lie in one contiguous data region.
 * Shared by the build (which writes the region and cuts it into shards) and the runtime (which
 * streams the region verbatim into WebAssembly memory and computes on the tensors in place).
 *
 * Data region: tensors back to back in `canonicalOrder` (embeddings, then layer by layer, then the
 * head), each starting at a multiple of `WEIGHT_ALIGNMENT` bytes (gaps are zero bytes), so that once
 * the region sits at an aligned address every int4/int8 section is v128-load aligned, and at least
 * WEIGHT_SLACK zero bytes follow each tensor.
 * Payload per encoding:
 *   f32   little-endian float32, prod(shape) values (norms, biases)
 *   int4  `serializeInt4` blob (src/format/int4.ts, self-describing 32-byte header)
 *   int8  `serializeInt8` blob (src/format/int4.ts)
 */
import { z } from "zod";
import { ModelConfig } from "./model.ts";

export const WEIGHT_ALIGNMENT = 64;
/** Zero bytes kept after every tensor: SIMD kernels read a few bytes past a row's scales. */
export const WEIGHT_SLACK = 16;

export const TensorEncoding = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("f32") }).strict(),
  z
    .object({
      kind: z.literal("int4"),
      groupSize: z.union([z.literal(32), z.literal(64), z.literal(128)]),
      zeroPoint: z.boolean(),
      /** fp16 per-group mins (w = q * d + m, ggml Q4_1); absent in tables written before it existed. */
      mins: z.literal(true).optional(),
    })
    .strict()
    .refine((e) => !(e.mins && e.zeroPoint), "int4: zero points and mins exclude each other"),
  z
    .object({
      kind: z.literal("int8"),
      groupSize: z.union([z.literal(32), z.literal(64), z.literal(128), z.literal("row")]),
    })
    .strict(),
]);
export type TensorEncoding = z.infer<typeof TensorEncoding>;

export const WeightEntry = z
  .object({
    name: z.string().min(1),
    /** Row-major, PyTorch order ([out, in] for linear weights). */
    shape: z.array(z.number().int().positive()).min(1).max(2),
    encoding: TensorEncoding,
    /** Byte offset inside the data region (multiple of WEIGHT_ALIGNMENT). */
    offset: z.number().int().nonnegative(),
    bytes: z.number().int().positive(),
  })
  .strict();
export type WeightEntry = z.infer<typeof WeightEntry>;

export const WeightTable = z
  .object({
    config: ModelConfig,
    tensors: z.array(WeightEntry).min(1),
    /** Total bytes of the data region. */
    totalBytes: z.number().int().positive(),
  })
  .strict()
  .superRefine((table, ctx) => {
    let end = 0;
    const seen = new Set<string>();
    for (const [i, t] of table.tensors.entries()) {
      if (seen.has(t.name))
        ctx.addIssue({ code: "custom", path: ["tensors", i], message: `duplicate ${t.name}` });
      seen.add(t.name);
      if (t.offset % WEIGHT_ALIGNMENT !== 0 || t.offset < end + (i > 0 ? WEIGHT_SLACK : 0)) {
        ctx.addIssue({
          code: "custom",
          path: ["tensors", i],
          message: `${t.name}: misaligned or overlapping`,
        });
      }
      end = t.offset + t.bytes;
    }
    if (end + WEIGHT_SLACK > table.totalBytes)
      ctx.addIssue({ code: "custom", message: "tensors run past totalBytes" });
  });
export type WeightTable = z.infer<typeof WeightTable>;

export function alignUp(n: number, alignment: number = WEIGHT_ALIGNMENT): number {
  return Math.ceil(n / alignment) * alignment;
}

/** Rank of a tensor in the data region: embeddings, layers in order, then final norm and head. */
function orderKey(name: string): [number, number] {
  if (name.startsWith("token_embd.")) return [0, 0];
  const m = /^blk\.(\d+)\./.exec(name);
  if (m) return [1 + Number(m[1]), 0];
  if (name.startsWith("output_norm.")) return [1e9, 0];
  return [1e9, 1];
}

/** Sorts tensor names so that a stream delivers each layer's weights before the next layer's. */
export function canonicalOrder(names: Iterable<string>): string[] {
  const indexed = [...names].map((name, i) => ({ name, i, key: orderKey(name) }));
  indexed.sort((a, b) => a.key[0] - b.key[0] || a.key[1] - b.key[1] || a.i - b.i);
  return indexed.map((e) => e.name);
}

/** Assigns aligned offsets to payloads given in canonical order. */
export function layoutWeights(
  config: ModelConfig,
  payloads: { name: string; shape: number[]; encoding: TensorEncoding; bytes: number }[],
): WeightTable {
  let offset = 0;
  const tensors = payloads.map(({ name, shape, encoding, bytes }) => {
    const entry = { name, shape, encoding, bytes, offset };
    offset = alignUp(offset + bytes + WEIGHT_SLACK);
    return entry;
  });
  return WeightTable.parse({ config, tensors, totalBytes: offset });
}
