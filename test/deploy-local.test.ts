/**
 * Deploy, rollback and gc against wrangler's local R2 state (a Miniflare bucket persisted in a temp
 * folder, as `npm run deploy --local` opens it): resumable verified uploads, validation before any
 * switch, no-op re-deploys, rollback checks, gc dry run and delete.
 */
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readVariantsIndex, sha256Hex, writeVariantsIndex } from "../src/compress/variant-store.ts";
import { type Manifest, R2Keys } from "../src/format/manifest.ts";
import { type Bucket, localBucket } from "../src/publish/buckets.ts";
import { deploy } from "../src/publish/deploy.ts";
import { listDeployments } from "../src/publish/deployments.ts";
import { gc } from "../src/publish/gc.ts";
import { DeployError, readHistory, readLive } from "../src/publish/history.ts";
import { publish } from "../src/publish/publish.ts";
import { rollback } from "../src/publish/rollback.ts";
import {
  BUCKET_NAME,
  build,
  countingBucket,
  MODEL,
  quiet,
  type VariantSet,
  variantsA,
  variantsB,
} from "./deploy-helpers.ts";
import { tempDirs } from "./helpers/paths.ts";

const temp = tempDirs("deploy-local");
let A: VariantSet;
let B: VariantSet;
const open: Bucket[] = [];

async function freshBucket(): Promise<Bucket> {
  const b = await localBucket(temp.make(), BUCKET_NAME);
  open.push(b);
  return b;
}

const run = (bucket: Bucket, set: VariantSet, extra: { dryRun?: boolean } = {}) =>
  deploy(bucket, { model: MODEL, config: set.config, out: set.out, build, log: quiet, ...extra });

async function liveBytes(bucket: Bucket): Promise<string | null> {
  const b = await bucket.get(R2Keys.live);
  return b ? new TextDecoder().decode(b) : null;
}

beforeAll(async () => {
  const dir = temp.make();
  A = await variantsA(dir);
  B = await variantsB(dir);
}, 600_000);

afterAll(async () => {
  for (const b of open) await b.close();
  temp.cleanup();
});

describe("deploy to local R2", () => {
  it("uploads every object verified, records the deployment and switches live.json last", async () => {
    const bucket = countingBucket(await freshBucket());
    const r = await run(bucket, A);
    expect(r.outcome).toBe("deployed");
    expect(r.live!.version).toBe(1);
    expect(r.live!.variants).toEqual(readVariantsIndex(A.out)!.variants);
    // Content first (shards/blobs, then manifests), then the record, then live.json.
    const n = r.objects.length;
    expect(bucket.puts.slice(0, n)).toEqual(r.objects.map((o) => o.key));
    const firstManifest = bucket.puts.findIndex((k) => k.startsWith("manifests/"));
    expect(bucket.puts.slice(firstManifest, n).every((k) => k.startsWith("manifests/"))).toBe(true);
    expect(bucket.puts.slice(n)).toEqual(["deployments/1.json", "live.json"]);
    expect(r.uploaded.objects).toBe(n);
    for (const o of r.objects) expect(sha256Hex((await bucket.get(o.key))!)).toBe(o.sha256);
    expect(r.rows.map((row) => row.variant)).toEqual(["quality", "balanced", "speed"]);
  });

  it("a re-deploy with unchanged inputs uploads nothing and does not switch", async () => {
    const bucket = countingBucket(await freshBucket());
    await run(bucket, A);
    const before = await liveBytes(bucket);
    const again = countingBucket(bucket);
    const r = await run(again, A);
    expect(r.outcome).toBe("unchanged");
    expect(again.puts).toEqual([]);
    expect(r.rows.every((row) => !row.rebuilt)).toBe(true);
    expect(await liveBytes(bucket)).toBe(before);
  });

  it("--dry-run reports the plan and writes nothing", async () => {
    const bucket = countingBucket(await freshBucket());
    const r = await run(bucket, A, { dryRun: true });
    expect(r.outcome).toBe("dry-run");
    expect(r.objects.every((o) => o.status === "missing")).toBe(true);
    expect(bucket.puts).toEqual([]);
    expect(await bucket.list("")).toEqual([]);
  });

  it("an upload killed half-way leaves live.json intact; the next run resumes without re-uploading", async () => {
    const bucket = await freshBucket();
    await run(bucket, A);
    const liveA = await liveBytes(bucket);
    const killed = countingBucket(bucket, { failAfter: 2 });
    await expect(run(killed, B)).rejects.toThrow(/killed after 2 puts/);
    expect(killed.puts).toHaveLength(2);
    expect(await liveBytes(bucket)).toBe(liveA);
    expect((await readHistory(bucket)).map((d) => d.version)).toEqual([1]);

    const resumed = countingBucket(bucket);
    const r = await run(resumed, B);
    expect(r.outcome).toBe("deployed");
    const uploadedNow = resumed.puts.filter((k) => !k.startsWith("deployments/") && k !== "live.json");
    for (const k of killed.puts) expect(uploadedNow).not.toContain(k);
    const needed = r.objects.filter((o) => !killed.puts.includes(o.key));
    // B shares the tokenizer blob with A: present from the first deploy, never re-sent.
    expect(r.objects.find((o) => o.key.startsWith("blobs/"))!.status).toBe("present");
    expect(uploadedNow.sort()).toEqual(
      needed
        .filter((o) => o.status === "missing")
        .map((o) => o.key)
        .sort(),
    );
    expect(r.live!.version).toBe(2);
    expect(Object.keys(r.live!.variants)).toEqual(["quality-g64"]);
  });

  it("a tampered manifest in the variants folder is never switched live", async () => {
    const bucket = countingBucket(await freshBucket());
    await run(bucket, A);
    const liveA = await liveBytes(bucket);
    const dir = temp.make();
    const b = await variantsB(dir);
    const id = readVariantsIndex(b.out)!.variants["quality-g64"]!;
    const path = join(b.out, R2Keys.manifest(id));
    const m = JSON.parse(readFileSync(path, "utf8")) as Manifest;
    m.quality.klMean = 0; // a better-looking variant than was measured: schema-valid, hash-invalid
    writeFileSync(path, JSON.stringify(m, null, 1));
    const before = bucket.puts.length;
    await expect(run(bucket, b)).rejects.toThrow(/does not hash to its name/);
    expect(bucket.puts.length).toBe(before); // validation runs before any upload
    expect(await liveBytes(bucket)).toBe(liveA);
  });

  it("a manifest whose shards do not tile the data region is never switched live", async () => {
    const bucket = countingBucket(await freshBucket());
    await run(bucket, A);
    const liveA = await liveBytes(bucket);
    const dir = temp.make();
    const b = await variantsB(dir);
    const index = readVariantsIndex(b.out)!;
    const id = index.variants["quality-g64"]!;
    const m = JSON.parse(readFileSync(join(b.out, R2Keys.manifest(id)), "utf8")) as Manifest;
    m.shards[0]!.bytes -= 16; // leaves the last 16 bytes of the data region uncovered
    const json = `${JSON.stringify(m, null, 1)}\n`;
    const badId = sha256Hex(json); // stored under its own hash, so only the schema can catch it
    writeFileSync(join(b.out, R2Keys.manifest(badId)), json);
    writeVariantsIndex(b.out, { ...index, variants: { "quality-g64": badId } });
    const before = bucket.puts.length;
    const err = await run(bucket, b).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeployError);
    expect((err as Error).message).toMatch(/shards cover \d+ of \d+ bytes/);
    expect(bucket.puts.length).toBe(before);
    expect(await liveBytes(bucket)).toBe(liveA);
  });
});

describe("rollback", () => {
  it("restores the previous set as a new version, and refuses when a shard is gone", async () => {
    const bucket = await freshBucket();
    const a = await run(bucket, A);
    const b = await run(bucket, B);
    expect(b.live!.version).toBe(2);
    const r = await rollback(bucket, { log: quiet });
    expect(r.outcome).toBe("rolled-back");
    expect(r.target.version).toBe(1);
    expect(r.live.version).toBe(3);
    expect(r.live.variants).toEqual(a.live!.variants);
    expect((await readLive(bucket))!.variants).toEqual(a.live!.variants);
    // Default target after a rollback: the set before it (B), like `cd -`.
    const back = await rollback(bucket, { log: quiet });
    expect(back.target.version).toBe(2);
    expect(back.live.variants).toEqual(b.live!.variants);
    const listing = await listDeployments(bucket);
    expect(listing.deployments.map((d) => [d.version, d.kind, d.isLive])).toEqual([
      [4, "rollback", true],
      [3, "rollback", false],
      [2, "deploy", false],
      [1, "deploy", false],
    ]);
    // A missing shard makes version 1 unrestorable: refused, live.json unchanged.
    const shard = R2Keys.shard(a.rows[0]!.manifest.shards[0]!.sha256);
    await bucket.delete(shard);
    const liveNow = await liveBytes(bucket);
    await expect(rollback(bucket, { to: 1, log: quiet })).rejects.toThrow(
      new RegExp(`cannot roll back to version 1: ${shard} is missing`),
    );
    expect(await liveBytes(bucket)).toBe(liveNow);
    await expect(rollback(bucket, { to: 9, log: quiet })).rejects.toThrow(/no deployment version 9/);
  });
});

/** Overwrites 4 bytes of `key`'s stored blob in the local R2 state on disk (same size), as a bad disk would. */
function corruptOnDisk(persistTo: string, original: Uint8Array): void {
  const files = readdirSync(join(persistTo, "v3", "r2"), { recursive: true, withFileTypes: true })
    .filter((f) => f.isFile())
    .map((f) => join(f.parentPath, f.name))
    .filter((f) => statSync(f).size === original.byteLength && readFileSync(f).equals(original));
  expect(files).toHaveLength(1); // the blob Miniflare keeps for this object
  const bytes = readFileSync(files[0]!);
  for (let i = 100; i < 104; i++) bytes[i] = bytes[i]! ^ 0xff;
  writeFileSync(files[0]!, bytes);
}

describe("a corrupt object in the bucket (right size, wrong content)", () => {
  it("deploy finds it and uploads it again; rollback refuses a set that needs it", async () => {
    const persistTo = temp.make();
    const bucket = countingBucket(await localBucket(persistTo, BUCKET_NAME));
    open.push(bucket);
    const a = await run(bucket, A);
    const speed = a.rows.find((r) => r.variant === "speed")!.manifest.shards[0]!;
    const key = R2Keys.shard(speed.sha256);
    const good = (await bucket.get(key))!;
    corruptOnDisk(persistTo, good);
    const bad = (await bucket.get(key))!;
    expect(bad.byteLength).toBe(good.byteLength);
    expect(sha256Hex(bad)).not.toBe(speed.sha256);
    // Rolling back to the set that is live (A) checks it too: reported, not "nothing to do".
    const liveA = await liveBytes(bucket);
    await expect(rollback(bucket, { to: 1, log: quiet })).rejects.toThrow(
      new RegExp(
        `cannot roll back to version 1: ${key} is corrupt .*that set is live already \\(version 1\\)`,
      ),
    );
    expect(await liveBytes(bucket)).toBe(liveA);

    // Rollback to A (live is B) checks content, not just presence: refused, live.json unchanged.
    await run(bucket, B);
    const liveB = await liveBytes(bucket);
    await expect(rollback(bucket, { to: 1, log: quiet })).rejects.toThrow(
      new RegExp(`cannot roll back to version 1: ${key} is corrupt`),
    );
    expect(await liveBytes(bucket)).toBe(liveB);

    // A dry run names it; the deploy re-uploads exactly that object and says so.
    const dry = await run(bucket, A, { dryRun: true });
    expect(dry.objects.filter((o) => o.status !== "present").map((o) => [o.key, o.status])).toEqual([
      [key, "corrupt"],
    ]);
    bucket.puts.length = 0;
    const lines: string[] = [];
    const r = await deploy(bucket, {
      model: MODEL,
      config: A.config,
      out: A.out,
      build,
      log: (m) => lines.push(m),
    });
    expect(r.outcome).toBe("deployed");
    expect(bucket.puts).toEqual([key, "deployments/3.json", "live.json"]);
    expect(lines.some((l) => l.includes(`corrupt: ${key}`) && l.includes("re-uploading"))).toBe(true);
    expect(sha256Hex((await bucket.get(key))!)).toBe(speed.sha256);
    // Repaired: the next deploy finds everything intact and changes nothing.
    bucket.puts.length = 0;
    expect((await run(bucket, A)).outcome).toBe("unchanged");
    expect(bucket.puts).toEqual([]);
    // Intact and live: nothing to switch, every object still checked.
    const same = await rollback(bucket, { to: 3, log: quiet });
    expect(same.outcome).toBe("already-live");
    expect(same.checkedObjects).toBeGreaterThan(0);
    expect(bucket.puts).toEqual([]);
  });
});

describe("a later deploy to unchanged local state (every npm start)", () => {
  it("checks sizes only for objects verified before, says so per object, and hashes all again once the state changes", async () => {
    const persistTo = temp.make();
    const inner = await localBucket(persistTo, BUCKET_NAME);
    open.push(inner);
    const gets: string[] = [];
    const bucket: Bucket = {
      ...inner,
      get(key) {
        gets.push(key);
        return inner.get(key);
      },
    };
    const deployLines = async () => {
      const lines: string[] = [];
      gets.length = 0;
      const r = await deploy(bucket, {
        model: MODEL,
        config: A.config,
        out: A.out,
        build,
        log: (m) => lines.push(m),
      });
      return {
        r,
        checks: lines.filter((l) => /^ {2}\[\s*\d+\/\d+\] (present|missing|corrupt) \S.* \(.*\)$/.test(l)),
      };
    };
    const first = await deployLines();
    expect(first.r.outcome).toBe("deployed");
    const objects = first.r.objects.length;
    expect(first.checks).toHaveLength(objects);
    expect(first.checks.every((l) => l.includes("not in the bucket"))).toBe(true);

    // Nothing changed: every object present by size, none read back.
    const second = await deployLines();
    expect(second.r.outcome).toBe("unchanged");
    expect(second.checks).toHaveLength(objects);
    for (const l of second.checks)
      expect(l).toMatch(/ present .*content verified before and the local state unchanged since/);
    expect(gets.filter((k) => k.startsWith("shards/"))).toEqual([]);

    // A blob rewritten on disk (same size, as a bad disk would): the state changed, so every
    // object is read and hashed again, the bad one found and repaired.
    const speed = first.r.rows.find((r) => r.variant === "speed")!.manifest.shards[0]!;
    const key = R2Keys.shard(speed.sha256);
    corruptOnDisk(persistTo, (await inner.get(key))!);
    const third = await deployLines();
    expect(third.r.outcome).toBe("deployed");
    expect(third.checks.filter((l) => l.includes("read back, sha256 ok"))).toHaveLength(objects - 1);
    expect(third.checks.filter((l) => l.includes(`corrupt ${key}`))).toHaveLength(1);
    expect(sha256Hex((await inner.get(key))!)).toBe(speed.sha256);
  });
});

describe("a live.json published without the deploy script", () => {
  it("is recorded (adopted) at the next deploy, so it can be rolled back to", async () => {
    const bucket = await freshBucket();
    const index = readVariantsIndex(A.out)!;
    await publish(bucket, A.out, index); // what the api tests and older setups do: no history
    expect((await listDeployments(bucket)).liveWithoutRecord).toBe(true);
    const b = await run(bucket, B);
    expect(b.live!.version).toBe(2);
    const [v1, v2] = await readHistory(bucket);
    expect(v1).toMatchObject({ version: 1, kind: "adopted", live: { variants: index.variants } });
    expect(Object.keys(v1!.variants)).toEqual(["quality", "balanced", "speed"]);
    expect(v2).toMatchObject({ version: 2, kind: "deploy", previousVersion: 1 });
    const r = await rollback(bucket, { log: quiet });
    expect(r.live.variants).toEqual(index.variants);
  });
});

describe("gc", () => {
  it("keeps everything kept deployments reference; dry run first deletes nothing", async () => {
    const bucket = await freshBucket();
    const a = await run(bucket, A);
    const b = await run(bucket, B);
    const allKeys = async () => (await bucket.list("")).map((o) => o.key).sort();
    const before = await allKeys();

    // Keep 5 (default): both deployments kept, nothing to collect.
    expect((await gc(bucket, { graceMs: 0, log: quiet })).garbage).toEqual([]);

    // Keep 1: A's shards and manifests and its record would go; the shared tokenizer stays.
    const dry = await gc(bucket, { keep: 1, graceMs: 0, log: quiet });
    expect(dry.deleted).toBe(false);
    expect(await allKeys()).toEqual(before);
    const aOnly = a.objects
      .map((o) => o.key)
      .filter((k) => !b.objects.some((o) => o.key === k))
      .sort();
    expect(dry.garbage.map((o) => o.key).sort()).toEqual(["deployments/1.json", ...aOnly].sort());
    expect(dry.bytes).toBe(dry.garbage.reduce((n, o) => n + o.size, 0));

    // The grace period protects recent uploads (a deploy may be running).
    expect((await gc(bucket, { keep: 1, log: quiet })).garbage.map((o) => o.key)).toEqual([
      "deployments/1.json",
    ]);

    const real = await gc(bucket, { keep: 1, graceMs: 0, yes: true, log: quiet });
    expect(real.deleted).toBe(true);
    const after = await allKeys();
    expect(after).toEqual(before.filter((k) => !dry.garbage.some((o) => o.key === k)));
    for (const o of b.objects) expect(after).toContain(o.key);
    expect(after).toContain("live.json");
    expect(after).toContain("deployments/2.json");
    // B still serves and is complete; nothing earlier is left to roll back to.
    await expect(rollback(bucket, { log: quiet })).rejects.toThrow(/no earlier deployment/);
  });

  it("keeps the live set even when newer records push it out of the kept window", async () => {
    const bucket = await freshBucket();
    const a = await run(bucket, A);
    // B is uploaded and recorded, but the switch fails: v2 never goes live, v1 stays live.
    const failing = countingBucket(bucket, { failOn: (k) => k === R2Keys.live });
    await expect(run(failing, B)).rejects.toThrow(/killed writing live.json/);
    expect((await readLive(bucket))!.version).toBe(1);
    const listing = await listDeployments(bucket);
    expect(listing.deployments.map((d) => [d.version, d.isLive, d.wasLive])).toEqual([
      [2, false, false],
      [1, true, true],
    ]);
    const r = await gc(bucket, { keep: 1, graceMs: 0, yes: true, log: quiet });
    expect(r.keptVersions).toEqual([1, 2]);
    expect(r.garbage).toEqual([]);
    const keys = (await bucket.list("")).map((o) => o.key);
    for (const o of a.objects) expect(keys).toContain(o.key);
    // The next deploy of B takes version 3 (2 is taken) and finds everything uploaded.
    const again = countingBucket(bucket);
    const b = await run(again, B);
    expect(b.live!.version).toBe(3);
    expect(again.puts).toEqual(["deployments/3.json", "live.json"]);
  });
});
