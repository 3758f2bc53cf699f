/**
 * `npm run variants -- [--local | --remote] [--persist-to <dir>]`
 *
 * Lists the deployments recorded in the bucket, newest first: version, time, kind, and each variant's
 * manifest, size and quality; marks the live one (and records that never went live).
 */
import { z } from "zod";
import { type DeploymentListing, listDeployments } from "../src/publish/deployments.ts";
import type { Deployment } from "../src/publish/history.ts";
import {
  BUCKET_OPTIONS,
  BUCKET_USAGE,
  bucketFromFlags,
  mb,
  parseFlags,
  runMain,
  table,
} from "./deploy/cli.ts";

function kindText(d: Deployment): string {
  if (d.kind === "rollback") return `rollback to the set of v${d.rollbackOf}`;
  if (d.kind === "adopted") return "recorded from an existing live.json";
  return `deploy, uploaded ${d.uploaded.objects} object(s) ${mb(d.uploaded.bytes)} MB`;
}

export function formatListing(l: DeploymentListing): string {
  const out: string[] = [];
  if (!l.live && l.deployments.length === 0) return "nothing is deployed (no live.json, no deployments/)";
  if (l.liveWithoutRecord && l.live) {
    out.push(
      `* v${l.live.version}  ${l.live.updatedAt}  live, no record (published without npm run deploy): ${Object.keys(l.live.variants).join(", ")}`,
      "",
    );
  }
  for (const d of l.deployments) {
    const mark = d.isLive ? "*" : " ";
    const status = d.isLive ? "  (live)" : d.wasLive ? "" : "  (never went live)";
    out.push(`${mark} v${d.version}  ${d.createdAt}  ${kindText(d)}${status}`);
    const rows = Object.entries(d.variants).map(([name, v]) => [
      name,
      v.tier,
      v.manifest.slice(0, 12),
      mb(v.bytes),
      v.bitsPerWeight.toFixed(2),
      v.klMean.toFixed(4),
      `${(v.top1Agreement * 100).toFixed(1)}%`,
      v.decodeMsPerToken.toFixed(3),
    ]);
    const t = table(["variant", "tier", "manifest", "MB", "bits/w", "KL", "top-1", "decode ms/tok"], rows);
    out.push(...t.split("\n").map((line) => `      ${line}`), "");
  }
  return out.join("\n").trimEnd();
}

const USAGE = `usage: npm run variants -- [bucket options]
${BUCKET_USAGE}`;

async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2), BUCKET_OPTIONS, z.looseObject({}), USAGE);
  if (!flags) return;
  const bucket = await bucketFromFlags(flags, { readOnly: true });
  try {
    console.log(formatListing(await listDeployments(bucket)));
  } finally {
    await bucket.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await runMain(main);
