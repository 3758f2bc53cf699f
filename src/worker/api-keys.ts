/**
 * API keys. With SHARDLM_API_KEYS set (comma-separated keys, or lowercase hex SHA-256 hashes of
 * keys), every /v1 route needs `Authorization: Bearer <key>`; otherwise 401 in OpenAI's format
 * (type invalid_request_error, code invalid_api_key, as api.openai.com answers). The presented key
 * is hashed and compared against every configured hash in constant time (the time does not depend
 * on where two hashes differ, nor on which configured key matched). With the API_RATE_LIMITER
 * binding, each key (by its hash) gets its own request budget; over it: 429 rate_limit_exceeded.
 */
import type { MiddlewareHandler } from "hono";
import type { Env } from "./env.ts";
import { ApiError } from "./errors.ts";

const HEX64 = /^[0-9a-f]{64}$/;

async function sha256(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function fromHex(h: string): Uint8Array {
  const out = new Uint8Array(h.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(h.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Equal 32-byte digests, compared without an early exit. */
function digestsEqual(a: Uint8Array, b: Uint8Array): boolean {
  let diff = a.length ^ b.length;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ (b[i] ?? 0);
  return diff === 0;
}

/** The configured keys as SHA-256 digests (a 64-hex entry is taken as a hash already). */
export async function configuredKeyHashes(raw: string | undefined): Promise<Uint8Array[]> {
  const entries = (raw ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  return Promise.all(entries.map((e) => (HEX64.test(e) ? fromHex(e) : sha256(e))));
}

const cache = new Map<string, Promise<Uint8Array[]>>();

const missingKey = () =>
  new ApiError(
    401,
    "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
    "invalid_request_error",
    "missing_api_key",
  );

const wrongKey = () =>
  new ApiError(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key");

/** Requires a configured key on the routes it guards (a no-op while SHARDLM_API_KEYS is unset or empty). */
export function requireApiKey(): MiddlewareHandler<{ Bindings: Env }> {
  return async (c, next) => {
    const raw = c.env.SHARDLM_API_KEYS;
    if (!raw?.trim()) return next();
    let hashes = cache.get(raw);
    if (!hashes) {
      hashes = configuredKeyHashes(raw);
      cache.set(raw, hashes);
    }
    const allowed = await hashes;
    if (allowed.length === 0) return next();
    const header = c.req.header("Authorization") ?? "";
    // No Bearer credentials at all: missing; Bearer with something other than one key: wrong
    if (!/^Bearer\s+\S/i.test(header)) throw missingKey();
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!m) throw wrongKey();
    const presented = await sha256(m[1]!);
    let ok = false;
    for (const h of allowed) ok = digestsEqual(presented, h) || ok; // no short-circuit: visit all
    if (!ok) throw wrongKey();
    const limiter = c.env.API_RATE_LIMITER;
    if (limiter) {
      const { success } = await limiter.limit({ key: hex(presented).slice(0, 32) });
      if (!success) {
        throw new ApiError(
          429,
          "Rate limit reached for this API key; retry shortly.",
          "rate_limit_error",
          "rate_limit_exceeded",
          null,
          { "Retry-After": "10" },
        );
      }
    }
    return next();
  };
}
