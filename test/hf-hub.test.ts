/**
 * The Hugging Face Hub download path against a local HTTP server that speaks the Hub's
 * /<repo>/resolve/<revision>/<file> URLs (HF_ENDPOINT points at it): a sharded safetensors model is
 * fetched, cached, and imports to the same model as the folder it was served from.
 */
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeHfFolder } from "../src/model/export/index.ts";
import { downloadHfModel, HubError } from "../src/model/hf-hub.ts";
import { loadModel } from "../src/model/import/index.ts";
import { sharedModelPath, tempDirs } from "./helpers/paths.ts";

const dirs = tempDirs("hub");
let server: Server;
let endpoint: string;
let served: string;
const requests: string[] = [];

beforeAll(async () => {
  served = join(dirs.make(), "model");
  await writeHfFolder(await loadModel(sharedModelPath()), served, { maxShardBytes: 400_000 });
  server = createServer((req, res) => {
    requests.push(req.url ?? "");
    const m = /^\/acme\/tiny-stories\/resolve\/main\/([\w.-]+)$/.exec(req.url ?? "");
    if (req.headers.authorization !== "Bearer secret") {
      res.writeHead(401).end();
      return;
    }
    try {
      const body = m ? readFileSync(join(served, m[1]!)) : null;
      if (!body) throw new Error("no");
      res.writeHead(200, { "content-length": body.byteLength }).end(body);
    } catch {
      res.writeHead(404).end("Entry not found");
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((r) => server.close(r));
  dirs.cleanup();
});

describe("downloadHfModel", () => {
  it("fetches config, tokenizer and every shard named by the index from HF_ENDPOINT, then reuses the cache", async () => {
    const cacheDir = dirs.make();
    const previous = process.env.HF_ENDPOINT;
    process.env.HF_ENDPOINT = endpoint;
    try {
      const dir = await downloadHfModel("acme/tiny-stories", { cacheDir, token: "secret", log: () => {} });
      const [got, want] = [await loadModel(dir), await loadModel(served)];
      expect(got.config).toEqual(want.config);
      for (const [name, t] of want.tensors) expect(got.tensors.get(name)!.f32()).toEqual(t.f32());
      const index = JSON.parse(readFileSync(join(served, "model.safetensors.index.json"), "utf8"));
      const shards = [...new Set(Object.values(index.weight_map as Record<string, string>))];
      expect(shards.length).toBeGreaterThan(1);
      for (const s of shards) expect(requests).toContain(`/acme/tiny-stories/resolve/main/${s}`);
      const before = requests.length;
      await downloadHfModel("acme/tiny-stories", { cacheDir, token: "secret", log: () => {} });
      expect(requests.length - before).toBeLessThanOrEqual(3); // only optional files it did not have
    } finally {
      if (previous === undefined) delete process.env.HF_ENDPOINT;
      else process.env.HF_ENDPOINT = previous;
    }
  });

  it("says what went wrong: unknown repo (404), missing token (401), bad repo id", async () => {
    const cacheDir = dirs.make();
    await expect(
      downloadHfModel("acme/nope", { endpoint, cacheDir, token: "secret", log: () => {} }),
    ).rejects.toThrow(/acme\/nope\/resolve\/main\/config\.json: HTTP 404/);
    await expect(
      downloadHfModel("acme/tiny-stories", { endpoint, cacheDir, token: "", log: () => {} }),
    ).rejects.toThrow(/HTTP 401 \(gated or private: set HF_TOKEN\)/);
    await expect(downloadHfModel("not a repo", { endpoint, cacheDir })).rejects.toBeInstanceOf(HubError);
  });
});
