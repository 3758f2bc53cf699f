/**
 * `npm run gc -- [--keep <n>] [--grace <minutes>] [--yes] [--local | --remote] [--persist-to <dir>]`
 *
 * Deletes shards/, blobs/ and manifests/ objects that no kept deployment references, and the records
 * of the deployments not kept. Kept: the newest <n> records (default 5) and whatever live.json names.
 * A dry run (the default) prints what would go and how many bytes; --yes deletes. Objects uploaded
 * less than --grace minutes ago (default 60) stay: a deploy may be uploading them right now, before
 * its record exists. Records go first, then manifests, then shards and blobs, so nothing kept ever
 * names something deleted.
 */
import { z } from "zod";
import { gc } from "../src/publish/gc.ts";
import {
  BUCKET_OPTIONS,
  BUCKET_USAGE,
  bucketFromFlags,
  humanBytes,
  IntFlag,
  parseFlags,
  runMain,
} from "./deploy/cli.ts";

const MAX_KEEP = 100_000;
/** Ten years. */
const MAX_GRACE_MINUTES = 10 * 365 * 24 * 60;

const USAGE = `usage: npm run gc -- [--keep <n>] [--grace <minutes>] [--yes]
  --keep <n>            deployments kept, newest first, besides the live one (default 5, at most ${MAX_KEEP})
  --grace <minutes>     never delete objects uploaded more recently than this (default 60,
                        at most ${MAX_GRACE_MINUTES}: ten years)
  --yes                 delete; without it gc only prints what it would delete
${BUCKET_USAGE}`;

async function main(): Promise<void> {
  const flags = parseFlags(
    process.argv.slice(2),
    { ...BUCKET_OPTIONS, keep: { type: "string" }, grace: { type: "string" }, yes: { type: "boolean" } },
    z.looseObject({
      // Bounds far above any real use, so a typo's digits are not taken as meant.
      keep: IntFlag("--keep", 1, MAX_KEEP).optional(),
      grace: IntFlag("--grace", 0, MAX_GRACE_MINUTES).optional(),
      yes: z.boolean().optional(),
    }),
    USAGE,
  );
  if (!flags) return;
  const bucket = await bucketFromFlags(flags, { readOnly: flags.yes !== true });
  try {
    const r = await gc(bucket, {
      ...(flags.keep === undefined ? {} : { keep: flags.keep }),
      ...(flags.grace === undefined ? {} : { graceMs: flags.grace * 60_000 }),
      yes: flags.yes === true,
    });
    const what = `${r.garbage.length} object(s), ${humanBytes(r.bytes)}`;
    const dropped = r.droppedVersions.length
      ? `; forgets deployment(s) ${r.droppedVersions.map((v) => `v${v}`).join(", ")}`
      : "";
    const young = r.young.length
      ? `; ${r.young.length} unreferenced object(s) kept, younger than the grace period`
      : "";
    console.log(
      r.deleted
        ? `gc: deleted ${what}${dropped}${young}`
        : `gc dry run: would delete ${what}${dropped}${young}. Nothing deleted; pass --yes to delete.`,
    );
  } finally {
    await bucket.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await runMain(main);
