/**
 * `npm run rollback -- [--to <version>] [--local | --remote] [--persist-to <dir>]`
 *
 * Switches live.json back to an earlier deployment's variant set (default: the newest earlier one that
 * went live with a different set), after checking that every manifest, shard and tokenizer blob it
 * references is still in the bucket. A rollback is a deployment too: it takes the next version and is
 * recorded (kind "rollback"), so live.json's version only grows and a rollback can itself be undone.
 */
import { z } from "zod";
import { rollback } from "../src/publish/rollback.ts";
import { BUCKET_OPTIONS, BUCKET_USAGE, bucketFromFlags, IntFlag, parseFlags, runMain } from "./deploy/cli.ts";

const USAGE = `usage: npm run rollback -- [--to <version>]
  --to <version>        deployment whose variant set to restore (default: the previous live one;
                        npm run variants lists them)
${BUCKET_USAGE}`;

async function main(): Promise<void> {
  const flags = parseFlags(
    process.argv.slice(2),
    { ...BUCKET_OPTIONS, to: { type: "string" } },
    z.looseObject({ to: IntFlag("--to", 1).optional() }),
    USAGE,
  );
  if (!flags) return;
  // No local state yet: an empty bucket (rollback then says nothing is deployed), not a new state folder.
  const bucket = await bucketFromFlags(flags, { readOnly: true });
  try {
    const r = await rollback(bucket, flags.to === undefined ? {} : { to: flags.to });
    if (r.outcome === "already-live") {
      console.log(
        `version ${r.live.version} already serves version ${r.target.version}'s variant set; nothing changed`,
      );
    } else {
      const names = Object.entries(r.live.variants)
        .map(([n, id]) => `${n} ${id.slice(0, 12)}`)
        .join(", ");
      console.log(
        `rolled back: live.json version ${r.live.version} serves version ${r.target.version}'s variants (${names}); was version ${r.previous.version}`,
      );
    }
  } finally {
    await bucket.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await runMain(main);
