/**
 * Rollback (CLI: scripts/rollback.ts, `npm run rollback`).
 *
 * Switches live.json back to an earlier deployment's variant set (default: the newest earlier one that
 * went live with a different set), after checking that every manifest, shard and tokenizer blob it
 * references is still in the bucket with content that hashes to its key. A rollback is a deployment too: it takes the next version and is
 * recorded (kind "rollback"), so live.json's version only grows and a rollback can itself be undone.
 */
import { LivePointer } from "../format/manifest.ts";
import type { Bucket } from "./buckets.ts";
import {
  checkComplete,
  DeployError,
  type Deployment,
  nextVersion,
  readHistory,
  readLive,
  sameVariants,
  switchLive,
  wentLive,
  writeDeployment,
} from "./history.ts";

export interface RollbackOptions {
  /** Deployment version whose variant set to restore (default: the previous live one). */
  to?: number;
  log?: (line: string) => void;
}

export interface RollbackResult {
  previous: LivePointer;
  target: Deployment;
  live: LivePointer;
  deployment: Deployment | null;
  outcome: "rolled-back" | "already-live";
  checkedObjects: number;
}

function pickTarget(history: Deployment[], live: LivePointer, to: number | undefined): Deployment {
  const known = history.map((d) => d.version).join(", ") || "none";
  if (to !== undefined) {
    const d = history.find((h) => h.version === to);
    if (!d) throw new DeployError(`no deployment version ${to} in the history (known: ${known})`);
    return d;
  }
  const live_ = wentLive(history, live);
  const earlier = history
    .filter(
      (d) =>
        d.version < live.version && live_.has(d.version) && !sameVariants(d.live.variants, live.variants),
    )
    .at(-1);
  if (!earlier) {
    throw new DeployError(
      `no earlier deployment with a different variant set to roll back to (versions: ${known})`,
    );
  }
  return earlier;
}

export async function rollback(bucket: Bucket, opts: RollbackOptions = {}): Promise<RollbackResult> {
  const log = opts.log ?? ((m: string) => console.error(m));
  const previous = await readLive(bucket);
  if (!previous) throw new DeployError(`nothing is deployed in ${bucket.description} (no live.json)`);
  const history = await readHistory(bucket);
  const target = pickTarget(history, previous, opts.to);
  const alreadyLive = sameVariants(target.live.variants, previous.variants);
  log(
    `rollback: checking that version ${target.version}'s manifests, shards and blobs are in the bucket, intact`,
  );
  let checkedObjects: number;
  try {
    checkedObjects = await checkComplete(bucket, target.live.variants);
  } catch (e) {
    // Already live too: switching would change nothing, and the live set itself needs the repair.
    throw new DeployError(
      `cannot roll back to version ${target.version}: ${(e as Error).message} ` +
        `(${alreadyLive ? `that set is live already (version ${previous.version}); ` : ""}` +
        "deploy that variant set again to upload or repair these objects)",
    );
  }
  log(`  ${checkedObjects} object(s) present, each read back and matching its sha256`);
  // Outcome "already-live" is the caller's to report (the CLI prints it once, on stdout), not a progress line.
  if (alreadyLive) {
    return { previous, target, live: previous, deployment: null, outcome: "already-live", checkedObjects };
  }
  const version = nextVersion(previous, history);
  const live = LivePointer.parse({
    format: "shardlm-live",
    version,
    variants: target.live.variants,
    updatedAt: new Date().toISOString(),
  });
  const deployment: Deployment = {
    format: "shardlm-deployment",
    version,
    createdAt: live.updatedAt,
    kind: "rollback",
    rollbackOf: target.version,
    previousVersion: previous.version,
    live,
    variants: target.variants,
    uploaded: { objects: 0, bytes: 0 },
  };
  await writeDeployment(bucket, deployment);
  await checkComplete(bucket, live.variants, { content: false }); // gc may have run since the check above
  await switchLive(bucket, live, previous);
  log(
    `switch: live.json -> version ${version} (variant set of version ${target.version}; was ${previous.version})`,
  );
  return { previous, target, live, deployment, outcome: "rolled-back", checkedObjects };
}
