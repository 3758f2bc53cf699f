/**
 * Bucket backends for deploy, rollback, gc and the listing: one interface (./bucket.ts), three
 * implementations:
 *   local   wrangler's local R2 state: a Miniflare R2 bucket persisted at <persist-to>/v3/r2, exactly
 *           what `wrangler dev` (and `wrangler r2 object put --local`) open for the wrangler.toml bucket
 *   remote  the real R2 bucket through its S3-compatible API (./s3-bucket.ts)
 *   memory  a Map, for tests and dry runs against a state folder that does not exist yet
 */
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Miniflare, type WorkerOptions } from "miniflare";
import { z } from "zod";
import type { Bucket, ListedObject } from "./bucket.ts";
import { r2S3Bucket } from "./s3-bucket.ts";
import { persistToProblem } from "./state-folder.ts";
import { localVerifiedContent } from "./verified-content.ts";

export type { Bucket, ListedObject } from "./bucket.ts";

export const ROOT = resolve(fileURLToPath(new URL("../..", import.meta.url)));
export const WRANGLER_TOML = join(ROOT, "wrangler.toml");
/** Where `wrangler dev` keeps local state when run from the project root. */
export const DEFAULT_PERSIST_TO = join(ROOT, ".wrangler/state");

export class BucketConfigError extends Error {
  override readonly name = "BucketConfigError";
}

/** The bucket_name of the [[r2_buckets]] entry with `binding` in wrangler.toml. */
export function wranglerBucketName(tomlPath = WRANGLER_TOML, binding = "SHARDS"): string {
  let text: string;
  try {
    text = readFileSync(tomlPath, "utf8");
  } catch (e) {
    throw new BucketConfigError(`cannot read ${tomlPath}: ${(e as Error).message}`);
  }
  // Enough TOML for [[r2_buckets]] tables of `key = "string"` lines.
  const tables: Record<string, string>[] = [];
  let current: Record<string, string> | null = null;
  for (const raw of text.split("\n")) {
    const line = raw.replace(/#.*$/, "").trim();
    if (!line) continue;
    if (line.startsWith("[")) {
      current = line === "[[r2_buckets]]" ? {} : null;
      if (current) tables.push(current);
      continue;
    }
    const kv = /^([A-Za-z0-9_-]+)\s*=\s*"([^"]*)"$/.exec(line);
    if (current && kv) current[kv[1]!] = kv[2]!;
  }
  const entry = tables.find((t) => t.binding === binding);
  if (!entry?.bucket_name) {
    throw new BucketConfigError(
      `${tomlPath}: no [[r2_buckets]] entry with binding = "${binding}" and a bucket_name`,
    );
  }
  return entry.bucket_name;
}

/**
 * A worker that serves its R2 binding over fetch. The local bucket (and the bench's local API,
 * src/bench/local-api.ts, beside its Worker) talk to it with Miniflare's dispatchFetch (plain async HTTP). Miniflare's getR2Bucket proxy reads object bodies through a
 * synchronous worker-thread channel that lost track of its replies under load in CI (the assertion
 * `message?.id === id` in miniflare's fetch-sync.ts, twice in two days); this path has no such channel.
 */
const R2_BRIDGE_WORKER = `export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const key = url.searchParams.get("key") ?? "";
    const sized = (o) => (o ? new Response(request.method === "HEAD" ? null : o.body, { headers: { "x-size": String(o.size) } }) : new Response(null, { status: 404 }));
    if (url.pathname === "/object") {
      if (request.method === "HEAD") return sized(await env.BUCKET.head(key));
      if (request.method === "GET") return sized(await env.BUCKET.get(key));
      if (request.method === "PUT") { await env.BUCKET.put(key, await request.arrayBuffer()); return new Response(null, { status: 204 }); }
      if (request.method === "DELETE") { await env.BUCKET.delete(key); return new Response(null, { status: 204 }); }
    }
    if (url.pathname === "/list") {
      const page = await env.BUCKET.list({ prefix: key, cursor: url.searchParams.get("cursor") ?? undefined });
      return Response.json({
        objects: page.objects.map((o) => ({ key: o.key, size: o.size, uploaded: o.uploaded.toISOString() })),
        cursor: page.truncated ? page.cursor : null,
      });
    }
    return new Response("no such bridge route: " + request.method + " " + url.pathname, { status: 400 });
  },
};`;

const BridgeList = z.object({
  objects: z.array(z.object({ key: z.string(), size: z.number(), uploaded: z.string() })),
  cursor: z.string().nullable(),
});

/** Host name dispatchFetch reaches the bridge at (its route in a Miniflare of several workers). */
const BRIDGE_HOST = "r2-bridge";

/**
 * The bridge worker on the R2 bucket `bucketName`, as one of a Miniflare's workers (or its only one):
 * bridgeBucket reaches it by its route, http://r2-bridge/*.
 */
export function r2BridgeWorker(bucketName: string): WorkerOptions {
  return {
    name: BRIDGE_HOST,
    modules: true,
    script: R2_BRIDGE_WORKER,
    r2Buckets: { BUCKET: bucketName },
    routes: [`${BRIDGE_HOST}/*`],
  };
}

/**
 * R2 operations through the bridge worker (r2BridgeWorker) in `mf`; `description` names the bucket
 * in errors; `close` ends it (default: disposes `mf`, which the caller may own instead).
 */
export function bridgeBucket(
  mf: Miniflare,
  description: string,
  close: () => Promise<void> = () => mf.dispose(),
): Bucket {
  const call = async (method: string, path: string, params: Record<string, string>, body?: Uint8Array) => {
    const url = `http://${BRIDGE_HOST}${path}?${new URLSearchParams(params)}`;
    const res = await mf.dispatchFetch(url, { method, ...(body ? { body } : {}) });
    if (res.ok || res.status === 404) return res;
    throw new Error(
      `${description}: ${method} ${params.key ?? path} failed: ${res.status} ${await res.text()}`,
    );
  };
  return {
    description,
    async head(key) {
      const res = await call("HEAD", "/object", { key });
      return res.status === 404 ? null : { size: Number(res.headers.get("x-size")) };
    },
    async get(key) {
      const res = await call("GET", "/object", { key });
      if (res.status === 404) {
        await res.arrayBuffer();
        return null;
      }
      return new Uint8Array(await res.arrayBuffer());
    },
    async put(key, bytes) {
      await (await call("PUT", "/object", { key }, bytes)).arrayBuffer();
    },
    async delete(key) {
      await (await call("DELETE", "/object", { key })).arrayBuffer();
    },
    async list(prefix) {
      const out: ListedObject[] = [];
      let cursor: string | null = null;
      do {
        const res = await call("GET", "/list", { key: prefix, ...(cursor ? { cursor } : {}) });
        const page = BridgeList.parse(await res.json());
        for (const o of page.objects) out.push({ key: o.key, size: o.size, uploaded: new Date(o.uploaded) });
        cursor = page.cursor;
      } while (cursor);
      return out;
    },
    close,
  };
}

/** wrangler's local R2 state for `bucketName` under `persistTo` (wrangler's --persist-to). */
export async function localBucket(persistTo: string, bucketName: string): Promise<Bucket> {
  const mf = new Miniflare({ ...r2BridgeWorker(bucketName), r2Persist: join(persistTo, "v3", "r2") });
  await mf.ready;
  return {
    ...bridgeBucket(mf, `local R2 bucket ${bucketName} in ${persistTo}`),
    verified: localVerifiedContent(persistTo, bucketName),
  };
}

/** An in-memory bucket (tests; dry runs with no local state yet). */
export function memoryBucket(description = "memory bucket"): Bucket & { objects: Map<string, Uint8Array> } {
  const objects = new Map<string, Uint8Array>();
  const uploaded = new Map<string, Date>();
  return {
    objects,
    description,
    head: async (key) => {
      const o = objects.get(key);
      return o ? { size: o.byteLength } : null;
    },
    get: async (key) => {
      const o = objects.get(key);
      return o ? o.slice() : null;
    },
    put: async (key, bytes) => {
      objects.set(key, bytes.slice());
      uploaded.set(key, new Date());
    },
    list: async (prefix) =>
      [...objects.entries()]
        .filter(([k]) => k.startsWith(prefix))
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([key, o]) => ({ key, size: o.byteLength, uploaded: uploaded.get(key)! })),
    delete: async (key) => {
      objects.delete(key);
      uploaded.delete(key);
    },
    close: async () => {},
  };
}

export const R2Env = z.object({
  R2_ACCOUNT_ID: z.string().min(1),
  R2_ACCESS_KEY_ID: z.string().min(1),
  R2_SECRET_ACCESS_KEY: z.string().min(1),
  /** Optional: another endpoint (an EU jurisdiction bucket, or an S3-compatible test server). */
  R2_ENDPOINT: z.url().optional(),
});

/** The real bucket through R2's S3 API, credentials from the environment. */
export function remoteBucket(bucketName: string, env: NodeJS.ProcessEnv = process.env): Bucket {
  const need = ["R2_ACCOUNT_ID", "R2_ACCESS_KEY_ID", "R2_SECRET_ACCESS_KEY"] as const;
  const missing = need.filter((k) => !env[k]);
  if (missing.length > 0) {
    throw new BucketConfigError(
      `--remote needs R2 credentials in the environment; missing ${missing.join(", ")}. ` +
        `Create an R2 API token with Object Read & Write on bucket ${bucketName} ` +
        "(Cloudflare dashboard > R2 > Manage API tokens) and export R2_ACCOUNT_ID, R2_ACCESS_KEY_ID, R2_SECRET_ACCESS_KEY.",
    );
  }
  const parsed = R2Env.safeParse(env);
  if (!parsed.success) {
    throw new BucketConfigError(
      `R2 environment: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`,
    );
  }
  const e = parsed.data;
  return r2S3Bucket({
    endpoint: e.R2_ENDPOINT ?? `https://${e.R2_ACCOUNT_ID}.r2.cloudflarestorage.com`,
    bucket: bucketName,
    accessKeyId: e.R2_ACCESS_KEY_ID,
    secretAccessKey: e.R2_SECRET_ACCESS_KEY,
  });
}

export interface BucketChoice {
  remote: boolean;
  persistTo: string;
  bucketName: string;
  /**
   * A local state that does not exist yet is an empty bucket, and is not created (commands that only
   * read, or that act on a deployment: with no state there is none).
   */
  readOnly?: boolean;
}

export async function openBucket(choice: BucketChoice): Promise<Bucket> {
  if (choice.remote) return remoteBucket(choice.bucketName);
  const problem = persistToProblem(choice.persistTo);
  if (problem) throw new BucketConfigError(`local state ${choice.persistTo} ${problem}`);
  if (choice.readOnly && !existsSync(join(choice.persistTo, "v3", "r2"))) {
    return memoryBucket(`local R2 bucket ${choice.bucketName} in ${choice.persistTo} (no state yet)`);
  }
  return localBucket(choice.persistTo, choice.bucketName);
}
