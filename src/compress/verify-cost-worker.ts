/**
 * The build's measuring Worker (run in workerd by ./workerd-measure.ts): loads a packed variant into
 * the production kernels (kernels-relaxed.wasm: the i32 dot-add build the Worker serves with) on the
 * engine layout the Worker gives it (servedEngineLayout), and measures its verify costs there
 * (measureWarmEngineCosts: warm-up, then measureRowCost and measureVerifyCosts) by the worker's
 * clock, which runs freely outside production.
 *
 * POST /verify-costs, header x-table-bytes: N; body = the weight table as JSON (N bytes of UTF-8),
 *   then the data region -> 200 {rowCost, rowCosts, headShare, kvCache, contextSize} (a cost the
 *   clock could not resolve, 0 ms / 0 ms, comes back as null: NaN in JSON);
 *   400 {error: {message}} when the body is not that (table, length, data), 500 when measuring fails.
 */
import { WeightTable } from "../format/weights.ts";
import { loadEngine, servedEngineLayout } from "../runtime/load-engine.ts";
import { measureWarmEngineCosts } from "../runtime/verify-costs.ts";
// Given by the host as a CompiledWasm module (workerd cannot compile wasm from bytes at run time).
import relaxedModule from "./kernels-relaxed.wasm";

/** Largest table JSON accepted (SmolLM2-135M's is ~40 KB). */
const MAX_TABLE_BYTES = 16 * 1024 * 1024;

class BadRequest extends Error {}

/** The first `headBytes` of `body`, and a stream of the rest (read on demand: weights are not buffered). */
async function splitBody(
  body: ReadableStream<Uint8Array>,
  headBytes: number,
): Promise<{ head: Uint8Array; rest: ReadableStream<Uint8Array> }> {
  const reader = body.getReader();
  const head = new Uint8Array(headBytes);
  let have = 0;
  let leftover: Uint8Array | null = null;
  while (have < headBytes) {
    const { done, value } = await reader.read();
    if (done) throw new BadRequest(`the body ended after ${have} of the table's ${headBytes} bytes`);
    const take = Math.min(value.byteLength, headBytes - have);
    head.set(value.subarray(0, take), have);
    have += take;
    if (take < value.byteLength) leftover = value.subarray(take);
  }
  const rest = new ReadableStream<Uint8Array>({
    start(c) {
      if (leftover) c.enqueue(leftover);
    },
    async pull(c) {
      const { done, value } = await reader.read();
      if (done) c.close();
      else c.enqueue(value);
    },
    cancel: (why) => reader.cancel(why),
  });
  return { head, rest };
}

async function tableOf(head: Uint8Array): Promise<WeightTable> {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(head));
  } catch (e) {
    throw new BadRequest(`the table is not JSON: ${(e as Error).message}`);
  }
  const r = WeightTable.safeParse(json);
  if (!r.success) {
    const first = r.error.issues[0]!;
    throw new BadRequest(`not a weight table: ${first.path.join(".") || "(root)"}: ${first.message}`);
  }
  return r.data;
}

async function measure(request: Request): Promise<Response> {
  const header = request.headers.get("x-table-bytes") ?? "";
  const tableBytes = /^\d+$/.test(header) ? Number(header) : Number.NaN;
  if (!(tableBytes >= 2 && tableBytes <= MAX_TABLE_BYTES))
    throw new BadRequest(`x-table-bytes must be an integer in 2..${MAX_TABLE_BYTES}, got "${header}"`);
  if (!request.body) throw new BadRequest("no body");
  const { head, rest } = await splitBody(request.body, tableBytes);
  const table = await tableOf(head);
  const layout = servedEngineLayout(table);
  let engine: Awaited<ReturnType<typeof loadEngine>>;
  try {
    engine = await loadEngine(relaxedModule, table, rest, layout);
  } catch (e) {
    // A short or long data region, or a table the engine cannot run: the request's fault.
    throw new BadRequest(`loading the variant: ${(e as Error).message}`);
  }
  return Response.json({ ...measureWarmEngineCosts(engine), ...layout });
}

export default {
  async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    if (request.method !== "POST" || url.pathname !== "/verify-costs")
      return Response.json({ error: { message: "POST /verify-costs only" } }, { status: 404 });
    try {
      return await measure(request);
    } catch (e) {
      const status = e instanceof BadRequest ? 400 : 500;
      return Response.json({ error: { message: (e as Error).message } }, { status });
    }
  },
};
