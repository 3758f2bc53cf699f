/**
 * A deployment without a balanced variant (as the default SmolLM2 build is: quality and speed), in
 * workerd over real HTTP: `X-Quality-Tier: balanced` and `model: "balanced"` are served by the best
 * variant below the cap (speed), GET /v1/models lists only what is deployed, and
 * `models.retrieve("balanced")` answers with speed's entry marked as an alias, so retrieve accepts
 * what chat accepts. The stories260K test variants, published without balanced.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { story } from "./helpers/api-calls.ts";
import { type ApiServer, buildTestVariants, startLocalApi } from "./helpers/api-server.ts";

let api: ApiServer;

beforeAll(async () => {
  const built = await buildTestVariants();
  const { balanced: _, ...variants } = built.index.variants;
  api = await startLocalApi({ dir: built.dir, index: { ...built.index, variants } });
}, 300_000);

afterAll(async () => {
  await api?.close();
});

describe("two tiers deployed (quality, speed)", () => {
  it("lists only the deployed variants", async () => {
    const ids = (await api.client.models.list()).data.map((m) => m.id);
    expect(ids.sort()).toEqual(["quality", "speed"]);
  });

  it("X-Quality-Tier: balanced and model 'balanced' are served by speed", async () => {
    const viaHeader = await api.client.chat.completions
      .create(
        { model: "shardlm", messages: story, max_tokens: 2 },
        { headers: { "X-Quality-Tier": "balanced" } },
      )
      .withResponse();
    expect(viaHeader.response.headers.get("x-variant")).toBe("speed");
    const viaModel = await api.client.chat.completions
      .create({ model: "balanced", messages: story, max_tokens: 2 })
      .withResponse();
    expect(viaModel.response.headers.get("x-variant")).toBe("speed");
  });

  it("models.retrieve('balanced') is speed's entry, marked alias_of speed; an unknown id is still a 404", async () => {
    const got = (await api.client.models.retrieve("balanced")) as unknown as Record<string, unknown>;
    expect(got).toMatchObject({ id: "balanced", object: "model", alias_of: "speed", tier: "speed" });
    await expect(api.client.models.retrieve("fast")).rejects.toMatchObject({
      status: 404,
      code: "model_not_found",
    });
  });
});
