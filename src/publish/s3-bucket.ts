/**
 * An R2 bucket through its S3-compatible API (path-style: <endpoint>/<bucket>/<key>, region "auto"),
 * signed with ./sigv4.ts. HEAD/GET/PUT/DELETE objects and ListObjectsV2; network errors and 5xx/429
 * answers are retried with backoff; other errors name the S3 error code and never the secret.
 */
import type { Bucket, ListedObject } from "./bucket.ts";
import { type SigV4Credentials, sha256Hex, signV4, uriEncode } from "./sigv4.ts";

export interface S3BucketOptions {
  endpoint: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  region?: string;
  fetch?: typeof fetch;
  /** Attempts per request (network errors, 429, 5xx). */
  attempts?: number;
}

export class S3Error extends Error {
  override readonly name = "S3Error";
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

function xmlText(xml: string, tag: string): string | null {
  const m = new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`).exec(xml);
  return m ? decodeXml(m[1]!) : null;
}

function decodeXml(s: string): string {
  return s
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&#(\d+);/g, (_, n: string) => String.fromCodePoint(Number(n)))
    .replace(/&amp;/g, "&");
}

/** Parses one ListObjectsV2 page. */
export function parseListPage(xml: string): { objects: ListedObject[]; next: string | null } {
  const objects: ListedObject[] = [];
  for (const m of xml.matchAll(/<Contents>([\s\S]*?)<\/Contents>/g)) {
    const body = m[1]!;
    const key = xmlText(body, "Key");
    const size = xmlText(body, "Size");
    const modified = xmlText(body, "LastModified");
    if (key === null || size === null)
      throw new S3Error("ListObjectsV2: a <Contents> without Key or Size", 200);
    objects.push({ key, size: Number(size), uploaded: new Date(modified ?? 0) });
  }
  const truncated = xmlText(xml, "IsTruncated") === "true";
  return { objects, next: truncated ? xmlText(xml, "NextContinuationToken") : null };
}

export function r2S3Bucket(opts: S3BucketOptions): Bucket {
  const doFetch = opts.fetch ?? fetch;
  const attempts = opts.attempts ?? 4;
  const creds: SigV4Credentials = {
    accessKeyId: opts.accessKeyId,
    secretAccessKey: opts.secretAccessKey,
    region: opts.region ?? "auto",
    service: "s3",
  };
  const base = opts.endpoint.replace(/\/+$/, "");
  const objectUrl = (key: string) =>
    new URL(`${base}/${uriEncode(opts.bucket)}/${key.split("/").map(uriEncode).join("/")}`);

  async function request(method: string, url: URL, body?: Uint8Array): Promise<Response> {
    let lastError: unknown = null;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      const payloadSha256 = sha256Hex(body ?? "");
      const headers: Record<string, string> = { "x-amz-content-sha256": payloadSha256 };
      if (body) headers["content-length"] = String(body.byteLength);
      const signed = signV4({ method, url, headers, payloadSha256 }, creds, new Date());
      const { host: _host, "content-length": _len, ...send } = signed.headers; // fetch sets these
      try {
        const res = await doFetch(url, {
          method,
          headers: send,
          ...(body ? { body: body as Uint8Array<ArrayBuffer> } : {}),
        });
        if ((res.status === 429 || res.status >= 500) && attempt < attempts) {
          lastError = new S3Error(`${method} ${url.pathname}: HTTP ${res.status}`, res.status);
          await res.arrayBuffer().catch(() => {});
        } else {
          return res;
        }
      } catch (e) {
        lastError = e;
        if (attempt === attempts) break;
      }
      await new Promise((r) => setTimeout(r, 250 * 2 ** (attempt - 1)));
    }
    const why = lastError instanceof Error ? lastError.message : String(lastError);
    throw new S3Error(`${method} ${url.pathname} failed after ${attempts} attempts: ${why}`, 0);
  }

  async function fail(method: string, url: URL, res: Response): Promise<never> {
    const text = method === "HEAD" ? "" : await res.text().catch(() => "");
    const code = xmlText(text, "Code");
    const message = xmlText(text, "Message");
    const hint =
      res.status === 403
        ? " (check R2_ACCESS_KEY_ID / R2_SECRET_ACCESS_KEY and that the token can read and write this bucket)"
        : "";
    throw new S3Error(
      `${method} ${url.pathname}: HTTP ${res.status}${code ? ` ${code}` : ""}${message ? `: ${message}` : ""}${hint}`,
      res.status,
    );
  }

  return {
    description: `R2 bucket ${opts.bucket} at ${base} (S3 API)`,
    async head(key) {
      const url = objectUrl(key);
      const res = await request("HEAD", url);
      if (res.status === 404) return null;
      if (!res.ok) return fail("HEAD", url, res);
      return { size: Number(res.headers.get("content-length") ?? "NaN") };
    },
    async get(key) {
      const url = objectUrl(key);
      const res = await request("GET", url);
      if (res.status === 404) {
        await res.arrayBuffer().catch(() => {});
        return null;
      }
      if (!res.ok) return fail("GET", url, res);
      return new Uint8Array(await res.arrayBuffer());
    },
    async put(key, bytes) {
      const url = objectUrl(key);
      const res = await request("PUT", url, bytes);
      if (!res.ok) return fail("PUT", url, res);
      await res.arrayBuffer().catch(() => {});
    },
    async delete(key) {
      const url = objectUrl(key);
      const res = await request("DELETE", url);
      if (!res.ok && res.status !== 404) return fail("DELETE", url, res);
      await res.arrayBuffer().catch(() => {});
    },
    async list(prefix) {
      const out: ListedObject[] = [];
      let token: string | null = null;
      do {
        // The query is written with the same encoding the signature uses (URLSearchParams writes + for space).
        const query: [string, string][] = [
          ["list-type", "2"],
          ["prefix", prefix],
          ...(token ? [["continuation-token", token] as [string, string]] : []),
        ];
        const url = new URL(
          `${base}/${uriEncode(opts.bucket)}?${query.map(([k, v]) => `${uriEncode(k)}=${uriEncode(v)}`).join("&")}`,
        );
        const res = await request("GET", url);
        if (!res.ok) return fail("GET", url, res);
        const page = parseListPage(await res.text());
        out.push(...page.objects);
        token = page.next;
      } while (token);
      return out;
    },
    close: async () => {},
  };
}
