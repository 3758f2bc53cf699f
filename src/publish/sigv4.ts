/**
 * AWS Signature Version 4 (header auth) for R2's S3-compatible API, with node:crypto only.
 *
 *   canonical request = method \n uri \n query \n headers \n signed-headers \n payload-sha256
 *   string to sign    = AWS4-HMAC-SHA256 \n amz-date \n scope \n sha256(canonical request)
 *   signing key       = HMAC chain "AWS4"+secret -> date -> region -> service -> "aws4_request"
 *
 * Paths are encoded once, segment by segment (S3's rule; other services double-encode, which only
 * differs for paths with characters that need escaping). Checked against AWS's published test suite
 * and S3 documentation examples in test/deploy-sigv4.test.ts.
 */
import { createHash, createHmac } from "node:crypto";

export interface SigV4Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  /** "auto" for R2. */
  region: string;
  /** "s3" for R2. */
  service: string;
}

export interface SigV4Request {
  method: string;
  url: URL;
  /** Headers to sign and send (any case); host and x-amz-date are added. */
  headers: Record<string, string>;
  /** Hex sha256 of the body (S3 also wants it sent as x-amz-content-sha256). */
  payloadSha256: string;
}

export interface SignedRequest {
  /** The headers to send: the request's, plus host, x-amz-date and authorization. */
  headers: Record<string, string>;
  canonicalRequest: string;
  stringToSign: string;
  authorization: string;
}

export function sha256Hex(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

function hmac(key: string | Buffer, data: string): Buffer {
  return createHmac("sha256", key).update(data, "utf8").digest();
}

/** RFC 3986 percent-encoding: everything but A-Z a-z 0-9 - . _ ~ (encodeURIComponent leaves !'()*). */
export function uriEncode(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** "20150830T123600Z" */
export function amzDate(at: Date): string {
  return at
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d{3}/, "");
}

function canonicalUri(url: URL): string {
  const path = url.pathname || "/";
  return path
    .split("/")
    .map((seg) => uriEncode(decodeURIComponent(seg)))
    .join("/");
}

function canonicalQuery(url: URL): string {
  const pairs = [...url.searchParams].map(([k, v]) => [uriEncode(k), uriEncode(v)] as const);
  pairs.sort(([ak, av], [bk, bv]) => (ak < bk ? -1 : ak > bk ? 1 : av < bv ? -1 : av > bv ? 1 : 0));
  return pairs.map(([k, v]) => `${k}=${v}`).join("&");
}

export function signV4(req: SigV4Request, creds: SigV4Credentials, at: Date): SignedRequest {
  const date = amzDate(at);
  const day = date.slice(0, 8);
  const headers: Record<string, string> = { ...req.headers, host: req.url.host, "x-amz-date": date };
  const canon = new Map<string, string>();
  for (const [name, value] of Object.entries(headers)) {
    const k = name.toLowerCase();
    const v = value.trim().replace(/\s+/g, " ");
    canon.set(k, canon.has(k) ? `${canon.get(k)},${v}` : v);
  }
  const names = [...canon.keys()].sort();
  const signedHeaders = names.join(";");
  const canonicalRequest = [
    req.method.toUpperCase(),
    canonicalUri(req.url),
    canonicalQuery(req.url),
    `${names.map((n) => `${n}:${canon.get(n)}`).join("\n")}\n`,
    signedHeaders,
    req.payloadSha256,
  ].join("\n");
  const scope = `${day}/${creds.region}/${creds.service}/aws4_request`;
  const stringToSign = ["AWS4-HMAC-SHA256", date, scope, sha256Hex(canonicalRequest)].join("\n");
  const key = hmac(
    hmac(hmac(hmac(`AWS4${creds.secretAccessKey}`, day), creds.region), creds.service),
    "aws4_request",
  );
  const signature = createHmac("sha256", key).update(stringToSign, "utf8").digest("hex");
  const authorization = `AWS4-HMAC-SHA256 Credential=${creds.accessKeyId}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`;
  return {
    headers: { ...headers, authorization },
    canonicalRequest,
    stringToSign,
    authorization,
  };
}
