/**
 * The --remote backend without the internet: the SigV4 signer against AWS's published examples (the
 * Signature Version 4 test suite, service "service", and the S3 API reference's examples), then the S3
 * client and a whole deploy/rollback/gc against an in-process S3 server that re-derives every
 * signature from the request as received.
 */
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BucketConfigError, remoteBucket } from "../src/publish/buckets.ts";
import { deploy } from "../src/publish/deploy.ts";
import { gc } from "../src/publish/gc.ts";
import { readLive } from "../src/publish/history.ts";
import { rollback } from "../src/publish/rollback.ts";
import { parseListPage, r2S3Bucket, S3Error } from "../src/publish/s3-bucket.ts";
import { sha256Hex, signV4, uriEncode } from "../src/publish/sigv4.ts";
import {
  build,
  countingBucket,
  MODEL,
  quiet,
  type VariantSet,
  variantsA,
  variantsB,
} from "./deploy-helpers.ts";
import { tempDirs } from "./helpers/paths.ts";

const EMPTY = sha256Hex("");
// AWS's example credentials, as published with the test suite and the S3 examples.
const SUITE = {
  accessKeyId: "AKIDEXAMPLE",
  secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
  region: "us-east-1",
  service: "service",
};
const S3 = {
  accessKeyId: "AKIAIOSFODNN7EXAMPLE",
  secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
  region: "us-east-1",
  service: "s3",
};
const SUITE_AT = new Date("2015-08-30T12:36:00Z");
const S3_AT = new Date("2013-05-24T00:00:00Z");
const sig = (creds: typeof SUITE, day: string, signed: string, signature: string) =>
  `AWS4-HMAC-SHA256 Credential=${creds.accessKeyId}/${day}/${creds.region}/${creds.service}/aws4_request, SignedHeaders=${signed}, Signature=${signature}`;

describe("SigV4 signer", () => {
  it("get-vanilla: canonical request, string to sign and signature", () => {
    const s = signV4(
      { method: "GET", url: new URL("https://example.amazonaws.com/"), headers: {}, payloadSha256: EMPTY },
      SUITE,
      SUITE_AT,
    );
    expect(s.canonicalRequest).toBe(
      `GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n${EMPTY}`,
    );
    expect(s.stringToSign).toBe(
      "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nbb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
    );
    expect(s.authorization).toBe(
      sig(
        SUITE,
        "20150830",
        "host;x-amz-date",
        "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
      ),
    );
    expect(s.headers["x-amz-date"]).toBe("20150830T123600Z");
  });

  const cases: {
    name: string;
    creds: typeof SUITE;
    at: Date;
    method: string;
    url: string;
    headers: Record<string, string>;
    payload: string;
    want: string;
  }[] = [
    {
      name: "get-vanilla-query-order-key-case",
      creds: SUITE,
      at: SUITE_AT,
      method: "GET",
      url: "https://example.amazonaws.com/?Param2=value2&Param1=value1",
      headers: {},
      payload: EMPTY,
      want: sig(
        SUITE,
        "20150830",
        "host;x-amz-date",
        "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
      ),
    },
    {
      name: "post-vanilla",
      creds: SUITE,
      at: SUITE_AT,
      method: "POST",
      url: "https://example.amazonaws.com/",
      headers: {},
      payload: EMPTY,
      want: sig(
        SUITE,
        "20150830",
        "host;x-amz-date",
        "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
      ),
    },
    {
      name: "S3 GET object with a range",
      creds: S3,
      at: S3_AT,
      method: "GET",
      url: "https://examplebucket.s3.amazonaws.com/test.txt",
      headers: { Range: "bytes=0-9", "x-amz-content-sha256": EMPTY },
      payload: EMPTY,
      want: sig(
        S3,
        "20130524",
        "host;range;x-amz-content-sha256;x-amz-date",
        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
      ),
    },
    {
      name: "S3 PUT object (a key with $, a Date header, a payload)",
      creds: S3,
      at: S3_AT,
      method: "PUT",
      url: "https://examplebucket.s3.amazonaws.com/test$file.text",
      headers: {
        Date: "Fri, 24 May 2013 00:00:00 GMT",
        "x-amz-storage-class": "REDUCED_REDUNDANCY",
        "x-amz-content-sha256": sha256Hex("Welcome to Amazon S3."),
      },
      payload: sha256Hex("Welcome to Amazon S3."),
      want: sig(
        S3,
        "20130524",
        "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
        "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
      ),
    },
    {
      name: "S3 GET bucket lifecycle (a query name without a value)",
      creds: S3,
      at: S3_AT,
      method: "GET",
      url: "https://examplebucket.s3.amazonaws.com/?lifecycle",
      headers: { "x-amz-content-sha256": EMPTY },
      payload: EMPTY,
      want: sig(
        S3,
        "20130524",
        "host;x-amz-content-sha256;x-amz-date",
        "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
      ),
    },
    {
      name: "S3 list objects (query sorted)",
      creds: S3,
      at: S3_AT,
      method: "GET",
      url: "https://examplebucket.s3.amazonaws.com/?max-keys=2&prefix=J",
      headers: { "x-amz-content-sha256": EMPTY },
      payload: EMPTY,
      want: sig(
        S3,
        "20130524",
        "host;x-amz-content-sha256;x-amz-date",
        "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
      ),
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const s = signV4(
        { method: c.method, url: new URL(c.url), headers: c.headers, payloadSha256: c.payload },
        c.creds,
        c.at,
      );
      expect(s.authorization).toBe(c.want);
    });
  }

  it("encodes as RFC 3986 says", () => {
    expect(uriEncode("a b/c~d+e$é*")).toBe("a%20b%2Fc~d%2Be%24%C3%A9%2A");
  });
});

/** An S3 server in memory: checks each request's signature as received; lists 2 keys per page. */
function fakeS3(opts: { accessKeyId: string; secretAccessKey: string; bucket: string; failFirst?: number }) {
  const objects = new Map<string, { bytes: Buffer; at: Date }>();
  let failures = opts.failFirst ?? 0;
  const requests: string[] = [];
  const body = (req: IncomingMessage) =>
    new Promise<Buffer>((resolve) => {
      const parts: Buffer[] = [];
      req.on("data", (c: Buffer) => parts.push(c));
      req.on("end", () => resolve(Buffer.concat(parts)));
    });
  const server: Server = createServer(async (req, res) => {
    const data = await body(req);
    const url = new URL(req.url!, `http://${req.headers.host}`);
    requests.push(`${req.method} ${url.pathname}${url.search}`);
    const error = (status: number, code: string) => {
      res.writeHead(status, { "content-type": "application/xml" });
      res.end(`<?xml version="1.0"?><Error><Code>${code}</Code><Message>${code}</Message></Error>`);
    };
    if (failures > 0) {
      failures--;
      return error(503, "SlowDown");
    }
    const auth =
      /^AWS4-HMAC-SHA256 Credential=([^/]+)\/\d{8}\/auto\/s3\/aws4_request, SignedHeaders=([a-z0-9;-]+), Signature=[0-9a-f]{64}$/.exec(
        req.headers.authorization ?? "",
      );
    const amzDate = String(req.headers["x-amz-date"] ?? "");
    const at = new Date(
      amzDate.replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/, "$1-$2-$3T$4:$5:$6Z"),
    );
    if (!auth || auth[1] !== opts.accessKeyId) return error(403, "InvalidAccessKeyId");
    const signed: Record<string, string> = {};
    for (const h of auth[2]!.split(";"))
      if (h !== "host" && h !== "x-amz-date") signed[h] = String(req.headers[h]);
    const payload = String(req.headers["x-amz-content-sha256"]);
    const expected = signV4(
      { method: req.method!, url, headers: signed, payloadSha256: payload },
      { accessKeyId: opts.accessKeyId, secretAccessKey: opts.secretAccessKey, region: "auto", service: "s3" },
      at,
    );
    if (expected.authorization !== req.headers.authorization || sha256Hex(data) !== payload)
      return error(403, "SignatureDoesNotMatch");
    const [, bucket, ...rest] = url.pathname.split("/");
    if (bucket !== opts.bucket) return error(404, "NoSuchBucket");
    const key = rest.map(decodeURIComponent).join("/");
    if (!key && req.method === "GET" && url.searchParams.get("list-type") === "2") {
      const prefix = url.searchParams.get("prefix") ?? "";
      const keys = [...objects.keys()].filter((k) => k.startsWith(prefix)).sort();
      const start = Number(url.searchParams.get("continuation-token") ?? "0");
      const page = keys.slice(start, start + 2);
      const more = start + 2 < keys.length;
      res.writeHead(200, { "content-type": "application/xml" });
      return res.end(
        `<?xml version="1.0"?><ListBucketResult><IsTruncated>${more}</IsTruncated>${page
          .map((k) => {
            const o = objects.get(k)!;
            return `<Contents><Key>${k}</Key><LastModified>${o.at.toISOString()}</LastModified><Size>${o.bytes.byteLength}</Size></Contents>`;
          })
          .join(
            "",
          )}${more ? `<NextContinuationToken>${start + 2}</NextContinuationToken>` : ""}</ListBucketResult>`,
      );
    }
    const o = objects.get(key);
    switch (req.method) {
      case "HEAD":
        if (!o) return error(404, "NoSuchKey");
        res.writeHead(200, { "content-length": o.bytes.byteLength });
        return res.end();
      case "GET":
        if (!o) return error(404, "NoSuchKey");
        res.writeHead(200, { "content-length": o.bytes.byteLength });
        return res.end(o.bytes);
      case "PUT":
        objects.set(key, { bytes: data, at: new Date() });
        res.writeHead(200);
        return res.end();
      case "DELETE":
        objects.delete(key);
        res.writeHead(204);
        return res.end();
      default:
        return error(405, "MethodNotAllowed");
    }
  });
  return { server, objects, requests };
}

const temp = tempDirs("deploy-sigv4");
let s3: ReturnType<typeof fakeS3>;
let endpoint: string;
let A: VariantSet;
let B: VariantSet;
const KEYS = { accessKeyId: "test-access-key", secretAccessKey: "test-secret-NOT-TO-BE-PRINTED" };

beforeAll(async () => {
  s3 = fakeS3({ ...KEYS, bucket: "shardlm-shards" });
  await new Promise<void>((r) => s3.server.listen(0, "127.0.0.1", r));
  endpoint = `http://127.0.0.1:${(s3.server.address() as AddressInfo).port}`;
  const dir = temp.make();
  [A, B] = [await variantsA(dir), await variantsB(dir)];
}, 600_000);

afterAll(async () => {
  await new Promise((r) => s3?.server.close(r));
  temp.cleanup();
});

describe("R2 over the S3 API", () => {
  it("puts, heads, gets, lists (paged) and deletes, every request signed", async () => {
    const b = r2S3Bucket({ endpoint, bucket: "shardlm-shards", ...KEYS });
    expect(await b.head("x/none")).toBeNull();
    expect(await b.get("x/none")).toBeNull();
    for (const k of ["x/a", "x/b", "x/c", "y/d"]) await b.put(k, new TextEncoder().encode(k.repeat(3)));
    expect(await b.head("x/a")).toEqual({ size: 9 });
    expect(new TextDecoder().decode((await b.get("x/b"))!)).toBe("x/bx/bx/b");
    expect((await b.list("x/")).map((o) => [o.key, o.size])).toEqual([
      ["x/a", 9],
      ["x/b", 9],
      ["x/c", 9],
    ]);
    await b.delete("x/a");
    expect((await b.list("")).map((o) => o.key)).toEqual(["x/b", "x/c", "y/d"]);
    s3.objects.clear();
  });

  it("a wrong secret is a clear 403 that never prints the secret; 5xx answers are retried", async () => {
    const wrong = r2S3Bucket({ endpoint, bucket: "shardlm-shards", ...KEYS, secretAccessKey: "nope" });
    const err = await wrong.get("k").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(S3Error);
    expect((err as Error).message).toMatch(/HTTP 403 SignatureDoesNotMatch.*R2_SECRET_ACCESS_KEY/);
    expect((err as Error).message).not.toContain("nope");

    const flaky = fakeS3({ ...KEYS, bucket: "b", failFirst: 2 });
    await new Promise<void>((r) => flaky.server.listen(0, "127.0.0.1", r));
    try {
      const url = `http://127.0.0.1:${(flaky.server.address() as AddressInfo).port}`;
      const b = r2S3Bucket({ endpoint: url, bucket: "b", ...KEYS });
      await b.put("k", new Uint8Array([1, 2, 3]));
      expect(flaky.requests.filter((r) => r.startsWith("PUT"))).toHaveLength(3);
    } finally {
      await new Promise((r) => flaky.server.close(r));
    }
  });

  it("parses ListObjectsV2 with escaped keys", () => {
    const page = parseListPage(
      "<ListBucketResult><IsTruncated>true</IsTruncated><Contents><Key>a&amp;b</Key><LastModified>2026-01-02T03:04:05.000Z</LastModified><Size>7</Size></Contents><NextContinuationToken>t&lt;1</NextContinuationToken></ListBucketResult>",
    );
    expect(page).toEqual({
      objects: [{ key: "a&b", size: 7, uploaded: new Date("2026-01-02T03:04:05Z") }],
      next: "t<1",
    });
  });

  it("--remote without credentials fails with what to set", () => {
    expect(() => remoteBucket("shardlm-shards", {})).toThrow(BucketConfigError);
    expect(() => remoteBucket("shardlm-shards", { R2_ACCOUNT_ID: "x" })).toThrow(
      /missing R2_ACCESS_KEY_ID, R2_SECRET_ACCESS_KEY/,
    );
  });

  it("deploy, re-deploy, rollback and gc run unchanged over the S3 backend", async () => {
    const env = {
      R2_ACCOUNT_ID: "acct",
      R2_ENDPOINT: endpoint,
      R2_ACCESS_KEY_ID: KEYS.accessKeyId,
      R2_SECRET_ACCESS_KEY: KEYS.secretAccessKey,
    };
    const bucket = countingBucket(remoteBucket("shardlm-shards", env));
    const a = await deploy(bucket, { model: MODEL, config: A.config, out: A.out, build, log: quiet });
    expect(a.live!.version).toBe(1);
    const b = await deploy(bucket, { model: MODEL, config: B.config, out: B.out, build, log: quiet });
    expect(b.objects.find((o) => o.key.startsWith("blobs/"))!.status).toBe("present");
    const before = bucket.puts.length;
    expect(
      (await deploy(bucket, { model: MODEL, config: B.config, out: B.out, build, log: quiet })).outcome,
    ).toBe("unchanged");
    expect(bucket.puts.length).toBe(before);
    const r = await rollback(bucket, { log: quiet });
    expect((await readLive(bucket))!.variants).toEqual(a.live!.variants);
    expect(r.live.version).toBe(3);
    const g = await gc(bucket, { keep: 1, graceMs: 0, yes: true, log: quiet });
    // v3 (A's set, live) is kept; B's manifest and shard go with v2's record.
    expect(g.droppedVersions).toEqual([1, 2]);
    const keys = [...s3.objects.keys()];
    for (const o of a.objects) expect(keys).toContain(o.key);
    for (const o of b.objects.filter((o) => !a.objects.some((x) => x.key === o.key)))
      expect(keys).not.toContain(o.key);
  });
});
