/**
 * The deployments recorded in the bucket (CLI: scripts/variants.ts, `npm run variants`).
 *
 * Lists the deployments recorded in the bucket, newest first: version, time, kind, and each variant's
 * manifest, size and quality; marks the live one (and records that never went live).
 */
import type { LivePointer } from "../format/manifest.ts";
import type { Bucket } from "./buckets.ts";
import { type Deployment, readHistory, readLive, wentLive } from "./history.ts";

export interface DeploymentListing {
  live: LivePointer | null;
  /** Newest first. */
  deployments: (Deployment & { isLive: boolean; wasLive: boolean })[];
  /** live.json names a version with no record (published without the deploy script). */
  liveWithoutRecord: boolean;
}

export async function listDeployments(bucket: Bucket): Promise<DeploymentListing> {
  const live = await readLive(bucket);
  const history = await readHistory(bucket);
  const was = wentLive(history, live);
  return {
    live,
    deployments: history
      .map((d) => ({ ...d, isLive: d.version === live?.version, wasLive: was.has(d.version) }))
      .reverse(),
    liveWithoutRecord: live !== null && !history.some((d) => d.version === live.version),
  };
}
