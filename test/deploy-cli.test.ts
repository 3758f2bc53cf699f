/**
 * The commands as a user runs them (tsx, as npm run does): bad flags and missing paths (a --persist-to
 * that read-only and rollback commands would otherwise create, a --skip-build --out) exit 2,
 * config errors exit 1, each with one clear line; --dry-run writes nothing (not even a state folder); progress goes to stderr and the
 * summary to stdout; variants, rollback and gc on the same local state.
 */
import { execFile } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { localBucket, openBucket } from "../src/publish/buckets.ts";
import { deploy } from "../src/publish/deploy.ts";
import { BUCKET_NAME, build, MODEL, quiet, type VariantSet, variantsA, variantsB } from "./deploy-helpers.ts";
import { tempDirs } from "./helpers/paths.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const TSX = join(ROOT, "node_modules/.bin/tsx");
const temp = tempDirs("deploy-cli");

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function cli(script: string, args: string[], env: Record<string, string | undefined> = {}): Promise<Run> {
  const clean = { ...process.env };
  for (const k of Object.keys(clean)) if (k.startsWith("R2_")) delete clean[k];
  return new Promise((resolve) => {
    execFile(
      TSX,
      [join(ROOT, "scripts", script), ...args],
      { cwd: ROOT, env: { ...clean, ...env }, timeout: 180_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
        // a timeout or crash kills the child: say so in the failure message (stderr is what it prints)
        const killed = err?.signal ? `\n(killed by ${err.signal})` : "";
        resolve({ code, stdout, stderr: stderr + killed });
      },
    );
  });
}

let A: VariantSet;
let B: VariantSet;

beforeAll(async () => {
  const dir = temp.make();
  [A, B] = [await variantsA(dir), await variantsB(dir)];
}, 600_000);

afterAll(() => temp.cleanup());

describe("errors", () => {
  it("bad flags, conflicting backends and bad numbers exit 2 (usage errors) with the reason and usage", async () => {
    const runs = await Promise.all([
      cli("deploy.ts", ["--bogus"]),
      cli("deploy.ts", ["--local", "--remote"]),
      cli("rollback.ts", ["--to", "two"]),
      cli("gc.ts", ["--keep", "0"]),
      cli("variants.ts", ["--remote", "--persist-to", "x"]),
      cli("deploy.ts", ["--bucket", "Bad_Name"]),
      // Numbers past what a double holds exactly (or any real use) are refused, not rounded.
      cli("rollback.ts", ["--to", "99999999999999999999"]),
      cli("gc.ts", ["--keep", "100000000000000000000"]),
      cli("gc.ts", ["--grace", "100000000000000000000"]),
      cli("gc.ts", ["--keep", "1e20"]),
      cli("variants.ts", ["--persist-to="]),
    ]);
    const want = [
      /^error: Unknown option '--bogus'/,
      /^error: --local and --remote exclude each other/,
      /^error: --to must be a whole number/,
      /^error: --keep must be at least 1/,
      /^error: --persist-to is for --local state only/,
      /^error: --bucket must be an R2 bucket name/,
      /^error: --to must be at most 9007199254740991/,
      /^error: --keep must be at most 100000\b/,
      /^error: --grace must be at most 5256000\b/,
      /^error: --keep must be a whole number/,
      /^error: --persist-to needs a folder/,
    ];
    for (const [i, r] of runs.entries()) {
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(want[i]!);
      expect(r.stdout).toBe("");
    }
  });

  it("every script exits 2 on a bad argument, before any work", async () => {
    const runs = await Promise.all([
      cli("rollback.ts", ["--bogus"]),
      cli("rollback.ts", ["--to", "abc"]),
      cli("eval.ts", ["--bogus"]),
      cli("eval.ts", ["--tokens", "many"]),
      cli("build-variants.ts", ["--bogus"]),
      cli("start.ts", ["--bogus"]),
    ]);
    const want = [
      /Unknown option '--bogus'/,
      /--to must be a whole number/,
      /Unknown option '--bogus'/,
      /--tokens "many" is not a positive whole number/,
      /Unknown option '--bogus'/,
      /Unknown option '--bogus'/,
    ];
    for (const [i, r] of runs.entries()) {
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(want[i]!);
      expect(r.stderr).toMatch(/usage: npm (run|start)/);
      expect(r.stdout).toBe("");
    }
  });

  it("a missing model, a bad config and --remote without credentials are clear errors", async () => {
    const state = temp.make();
    const bad = join(temp.make(), "bad.json");
    writeFileSync(
      bad,
      JSON.stringify({ variants: [{ name: "q", tier: "quality", quant: { groupSize: 48 } }] }),
    );
    const out = ["--persist-to", state, "--out", join(state, "out")];
    const [model, config, remote, skip, unbuilt] = await Promise.all([
      cli("deploy.ts", ["--model", "/nonexistent/model.gguf", "--config", A.config, ...out]),
      cli("deploy.ts", ["--model", MODEL, "--config", bad, ...out]),
      cli("deploy.ts", ["--remote", "--skip-build", "--out", A.out]),
      cli("deploy.ts", ["--skip-build", ...out]),
      // an --out folder that exists but was never built: state, not a typo (exit 1)
      cli("deploy.ts", ["--skip-build", "--persist-to", state, "--out", state]),
    ]);
    // a path that does not exist is a bad argument (exit 2), as in npm start
    expect(model.code).toBe(2);
    expect(model.stderr).toMatch(/^error: --model \/nonexistent\/model.gguf does not exist/m);
    expect(config.code).toBe(1);
    expect(config.stderr).toMatch(/^error: .*bad\.json: variants\.0\.quant\.groupSize: /m);
    expect(remote.code).toBe(1);
    expect(remote.stderr).toMatch(
      /^error: --remote needs R2 credentials in the environment; missing R2_ACCOUNT_ID/m,
    );
    // --skip-build deploys --out as built: a folder that is not there is a bad argument (exit 2)
    expect(skip.code, skip.stderr).toBe(2);
    expect(skip.stderr).toMatch(
      /^error: --out \S+\/out does not exist \(--skip-build deploys a built folder\)/m,
    );
    expect(unbuilt.code).toBe(1);
    expect(unbuilt.stderr).toMatch(/^error: --skip-build: .*variants\.json does not exist \(build first\)/m);
    expect(existsSync(join(state, "v3"))).toBe(false); // no bucket opened for any of these
  });

  it("commands that read or roll back refuse a --persist-to folder that does not exist, creating nothing", async () => {
    const typo = join(temp.make(), "typo");
    const runs = await Promise.all([
      cli("variants.ts", ["--persist-to", typo]),
      cli("rollback.ts", ["--persist-to", typo]),
      cli("rollback.ts", ["--persist-to", typo, "--to", "2"]),
      cli("gc.ts", ["--persist-to", typo, "--yes"]),
    ]);
    for (const r of runs) {
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain(`error: --persist-to ${typo} does not exist`);
      expect(r.stdout).toBe("");
    }
    expect(existsSync(typo)).toBe(false);
  });
  it("every command refuses a --persist-to that is a file (read-only ones took it for no state), creating nothing", async () => {
    const dir = temp.make();
    const file = join(dir, "state.txt");
    writeFileSync(file, "not a state folder\n");
    const runs = await Promise.all([
      cli("variants.ts", ["--persist-to", file]),
      cli("rollback.ts", ["--persist-to", file]),
      cli("rollback.ts", ["--persist-to", file, "--to", "2"]),
      cli("gc.ts", ["--persist-to", file]),
      cli("gc.ts", ["--persist-to", file, "--yes"]),
      cli("deploy.ts", ["--persist-to", file, "--skip-build", "--out", A.out]),
      cli("deploy.ts", ["--persist-to", file, "--skip-build", "--out", A.out, "--dry-run"]),
    ]);
    for (const r of runs) {
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(
        new RegExp(
          `^error: --persist-to ${file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} is not a folder`,
          "m",
        ),
      );
      expect(r.stdout).toBe("");
    }
    expect(readdirSync(dir)).toEqual(["state.txt"]);
    expect(readFileSync(file, "utf8")).toBe("not a state folder\n");
    // Opened in-process (deploy's own API), a file is refused too, before Miniflare touches it.
    await expect(openBucket({ remote: false, persistTo: file, bucketName: BUCKET_NAME })).rejects.toThrow(
      new RegExp(`local state ${file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} is not a folder`),
    );
  });
});

describe("deploy, variants, rollback, gc", () => {
  it("runs end to end on one local state", async () => {
    const state = join(temp.make(), "state");
    const flags = ["--persist-to", state];

    const dry = await cli("deploy.ts", [...flags, "--skip-build", "--out", A.out, "--dry-run"]);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stderr).toMatch(/would upload +shards\//);
    expect(dry.stdout).toMatch(/^variant +tier +manifest +MB +bits\/w +KL +top-1 +decode ms\/tok +objects$/m);
    expect(dry.stdout).toMatch(/dry run: nothing written; would upload 7 object\(s\)/);
    expect(existsSync(state)).toBe(false);

    const up = await cli("deploy.ts", [...flags, "--model", MODEL, "--config", A.config, "--out", A.out]);
    expect(up.stderr).toMatch(/quality: inputs unchanged, reusing manifest/);
    expect(up.code, up.stderr).toBe(0);
    expect(up.stderr).toMatch(
      /\[1\/7\] uploaded {2}shards\/[0-9a-f]{64} {2}[\d.]+ kB {2}[\d.]+ MB\/s {2}verified/,
    );
    expect(up.stdout).toMatch(
      /^quality +quality +[0-9a-f]{12} +0\.\d\d +[\d.]+ +[\d.]+ +[\d.]+% +[\d.]+ +3 uploaded, 0 present$/m,
    );
    expect(up.stdout).toMatch(/deployed version 1: uploaded 7 object\(s\)/);
    expect(up.stdout).not.toMatch(/uploaded {2}shards/); // progress is on stderr only

    // A second deployment, in-process, on the same state.
    const bucket = await localBucket(state, BUCKET_NAME);
    await deploy(bucket, { model: MODEL, config: B.config, out: B.out, build, log: quiet });
    await bucket.close();

    const list = await cli("variants.ts", flags);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(/^\* v2 {2}\S+ {2}deploy, uploaded 2 object\(s\) .* \(live\)$/m);
    expect(list.stdout).toMatch(/^ {2}v1 {2}\S+ {2}deploy, uploaded 7 object\(s\)/m);
    expect(list.stdout).toMatch(/^ +quality-g64 +quality +[0-9a-f]{12}/m);

    const back = await cli("rollback.ts", flags);
    expect(back.code, back.stderr).toBe(0);
    expect(back.stdout).toMatch(
      /^rolled back: live.json version 3 serves version 1's variants \(quality [0-9a-f]{12}, /,
    );
    // Rolling back to what is live says so once (stdout), not again as a progress line.
    const same = await cli("rollback.ts", [...flags, "--to", "3"]);
    expect(same.code, same.stderr).toBe(0);
    expect(same.stdout).toBe("version 3 already serves version 3's variant set; nothing changed\n");
    expect(same.stderr).not.toMatch(/nothing|already/);

    const gcDry = await cli("gc.ts", [...flags, "--keep", "1", "--grace", "0"]);
    expect(gcDry.code, gcDry.stderr).toBe(0);
    expect(gcDry.stderr).toMatch(/would delete {2}deployments\/2\.json/);
    expect(gcDry.stdout).toMatch(
      /^gc dry run: would delete 4 object\(s\), .*forgets deployment\(s\) v1, v2\. Nothing deleted/,
    );

    const gcYes = await cli("gc.ts", [...flags, "--keep", "1", "--grace", "0", "--yes"]);
    expect(gcYes.code, gcYes.stderr).toBe(0);
    expect(gcYes.stdout).toMatch(/^gc: deleted 4 object\(s\)/);
    const after = await cli("variants.ts", flags);
    expect(after.stdout).toMatch(/^\* v3 {2}\S+ {2}rollback to the set of v1 {2}\(live\)$/m);
    expect(after.stdout).not.toMatch(/^ {2}v[12] /m);

    // A shard of the live set goes bad on disk (same size): deploy re-uploads it, switches to a new
    // version (workers retry what they marked bad) and counts it with the uploads, not the present.
    const blobs = join(state, "v3", "r2", BUCKET_NAME, "blobs");
    const largest = readdirSync(blobs)
      .map((f) => join(blobs, f))
      .sort((a, b) => statSync(b).size - statSync(a).size)[0]!;
    const bytes = readFileSync(largest);
    for (let i = 100; i < 104; i++) bytes[i] = bytes[i]! ^ 0xff;
    writeFileSync(largest, bytes);
    const repair = await cli("deploy.ts", [...flags, "--skip-build", "--out", A.out]);
    expect(repair.code, repair.stderr).toBe(0);
    expect(repair.stderr).toMatch(/corrupt: shards\/[0-9a-f]{64} in the bucket does not match its sha256/);
    expect(repair.stdout).toMatch(
      /^deployed version 4 \(was 3\): uploaded 1 object\(s\), [\d.]+ kB \(1 of them corrupt in the bucket, replaced\); 6 already present$/m,
    );
  }, 300_000); // nine CLI runs, each tsx startup slow on a loaded machine
});
