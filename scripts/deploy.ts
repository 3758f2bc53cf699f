/**
 * `npm run deploy -- [--model <path>] [--config <variants file>] [--local | --remote] [--dry-run]
 *                    [--persist-to <dir>] [--out <dir>] [--force]`
 *
 * One-command redeploy:
 *   1. build      buildVariants (variants whose inputs are unchanged are reused)
 *   2. validate   every manifest in the variants folder: its bytes hash to its name, it parses (shards
 *                 tile the data region), its shards and tokenizer are on disk with their sha256
 *   3. upload     only objects not already in the bucket with the right content (content-addressed
 *                 keys: present ones are read back and hashed; corrupt ones are uploaded again),
 *                 shards and blobs before the manifests naming them; each upload read back (size + sha256)
 *   4. record     deployments/<version>.json with the LivePointer about to go live
 *   5. switch     live.json, one small write, only after all of the above succeeded
 * Any failure exits non-zero with live.json untouched. --dry-run builds and prints the plan; it writes
 * nothing to the bucket. A set identical to the live one is not switched again.
 */
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { z } from "zod";
import { type DeployOptions, type DeployResult, deploy, preflight } from "../src/publish/deploy.ts";
import {
  BUCKET_OPTIONS,
  BUCKET_USAGE,
  bucketFromFlags,
  humanBytes,
  mb,
  parseFlags,
  runMain,
  table,
} from "./deploy/cli.ts";
import { UsageError } from "./lib/usage.ts";

export function deploySummary(r: DeployResult): string {
  const head = ["variant", "tier", "manifest", "MB", "bits/w", "KL", "top-1", "decode ms/tok", "objects"];
  const body = r.rows.map((row) => [
    row.variant,
    row.summary.tier,
    row.manifestId.slice(0, 12),
    mb(row.summary.bytes),
    row.summary.bitsPerWeight.toFixed(2),
    row.summary.klMean.toFixed(4),
    `${(row.summary.top1Agreement * 100).toFixed(1)}%`,
    row.summary.decodeMsPerToken.toFixed(3),
    r.outcome === "dry-run"
      ? `${row.uploaded} to upload, ${row.present} present`
      : `${row.uploaded} uploaded, ${row.present} present`,
  ]);
  const send = r.objects.filter((o) => o.status !== "present");
  const bytes = send.reduce((n, o) => n + o.bytes, 0);
  const corrupt = r.objects.filter((o) => o.status === "corrupt").length;
  const repaired = corrupt === 0 ? "" : ` (${corrupt} of them corrupt in the bucket, replaced)`;
  const tail =
    r.outcome === "deployed"
      ? `deployed version ${r.live!.version}${r.previous ? ` (was ${r.previous.version})` : ""}: uploaded ${r.uploaded.objects} object(s), ${humanBytes(r.uploaded.bytes)}${repaired}; ${r.objects.length - r.uploaded.objects} already present`
      : r.outcome === "unchanged"
        ? `unchanged: version ${r.live!.version} already serves these manifests; uploaded ${r.uploaded.objects} object(s)${repaired}`
        : `dry run: nothing written; would upload ${send.length} object(s), ${humanBytes(bytes)}${corrupt ? ` (${corrupt} corrupt in the bucket)` : ""}`;
  return `${table(head, body)}\n\n${tail}`;
}

const USAGE = `usage: npm run deploy -- [options]
  --model <path>        model file or HF folder (default $SHARDLM_MODEL, else SmolLM2-135M-Instruct from
                        fetch-model's cache, else ../shared/models/stories260K.gguf)
  --config <file>       variants config (default: picked by the model's size, config/variants-smollm2.json
                        or the toy config/variants.json)
  --out <dir>           variants folder the build writes (default variants/; it keeps every model's builds)
  --force               rebuild every variant (the upload still sends only what the bucket lacks or holds corrupt)
  --skip-build          deploy the --out folder as last built (its variants.json), without building
  --dry-run             build and print what would be uploaded and switched; write nothing to the bucket
${BUCKET_USAGE}`;

const DeployFlags = z.looseObject({
  model: z.string().min(1).optional(),
  config: z.string().min(1).optional(),
  out: z.string().min(1).optional(),
  force: z.boolean().optional(),
  "skip-build": z.boolean().optional(),
  "dry-run": z.boolean().optional(),
});

/** A path, or build-variants' `synthetic:<shape>`. */
const modelPath = (m: string): string => (m.startsWith("synthetic:") ? m : resolve(m));

async function main(): Promise<void> {
  const flags = parseFlags(
    process.argv.slice(2),
    {
      ...BUCKET_OPTIONS,
      model: { type: "string" },
      config: { type: "string" },
      out: { type: "string" },
      force: { type: "boolean" },
      "skip-build": { type: "boolean" },
      "dry-run": { type: "boolean" },
    },
    DeployFlags,
    USAGE,
  );
  if (!flags) return;
  // A path the user named must exist: a usage error (exit 2), said before any build or bucket work.
  for (const [flag, path] of [
    ["--model", flags.model],
    ["--config", flags.config],
  ] as const)
    if (path !== undefined && !existsSync(resolve(path)))
      throw new UsageError(`${flag} ${resolve(path)} does not exist`);
  // --skip-build deploys what --out holds: a folder that is not there is a mistyped argument too.
  if (flags["skip-build"] && flags.out !== undefined && !existsSync(resolve(flags.out)))
    throw new UsageError(`--out ${resolve(flags.out)} does not exist (--skip-build deploys a built folder)`);
  const dryRun = flags["dry-run"] === true;
  // Defaults live in build-variants (slow to import: it loads the AssemblyScript compiler).
  const skipBuild = flags["skip-build"] === true;
  const defaults =
    flags.out && (skipBuild || (flags.model && flags.config))
      ? null
      : await import("../src/compress/build-variants.ts").then((m) => ({
          config: m.defaultConfigFor,
          out: m.DEFAULT_OUT,
        }));
  const model =
    flags.model ??
    process.env.SHARDLM_MODEL ??
    (skipBuild
      ? ""
      : (await import("../src/model/default-model.ts").then((m) => m.resolveDefaultModel())).path);
  const opts: DeployOptions = {
    model: modelPath(model),
    config: resolve(flags.config ?? defaults?.config(modelPath(model)) ?? ""),
    out: resolve(flags.out ?? defaults!.out),
    force: flags.force === true,
    skipBuild,
    dryRun,
    // Imported on use: the build pulls in the AssemblyScript compiler (seconds), which errors need not wait for.
    build: async (o) => (await import("../src/compress/build-variants.ts")).buildVariants(o),
  };
  preflight(opts); // before the bucket is opened (a local state folder is created on open)
  const bucket = await bucketFromFlags(flags, { readOnly: dryRun, create: true });
  try {
    console.log(deploySummary(await deploy(bucket, opts)));
  } finally {
    await bucket.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await runMain(main);
