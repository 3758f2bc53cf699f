/**
 * What the deploy, rollback, variants and gc commands share: bucket flags, flag validation, error
 * reporting (a clear one-line error; exit code 2 for usage errors, 1 otherwise) and table formatting. Progress goes to stderr,
 * results to stdout.
 */
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { type ParseArgsConfig, parseArgs } from "node:util";
import { z } from "zod";
import { ConfigError } from "../../src/compress/variants-config.ts";
import { ModelImportError } from "../../src/format/model.ts";
import {
  type Bucket,
  BucketConfigError,
  DEFAULT_PERSIST_TO,
  openBucket,
  wranglerBucketName,
} from "../../src/publish/buckets.ts";
import { DeployError, formatIssues } from "../../src/publish/history.ts";
import { PublishError } from "../../src/publish/publish.ts";
import { S3Error } from "../../src/publish/s3-bucket.ts";
import { persistToProblem } from "../../src/publish/state-folder.ts";
import { exitCodeFor, UsageError } from "../lib/usage.ts";

export { UsageError };

export const BUCKET_OPTIONS = {
  local: { type: "boolean" },
  remote: { type: "boolean" },
  "persist-to": { type: "string" },
  bucket: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const satisfies ParseArgsConfig["options"];

export const BUCKET_USAGE = `bucket:
  --local               wrangler's local R2 state (default), as \`wrangler dev\` sees it
  --persist-to <dir>    local state folder, as wrangler's --persist-to (default .wrangler/state)
  --remote              the real R2 bucket over its S3 API
                        (env: R2_ACCOUNT_ID, R2_ACCESS_KEY_ID, R2_SECRET_ACCESS_KEY)
  --bucket <name>       bucket name (default: the SHARDS binding's bucket_name in wrangler.toml)`;

const BucketFlags = z
  .object({
    local: z.boolean().optional(),
    remote: z.boolean().optional(),
    "persist-to": z.string().min(1, "--persist-to needs a folder").optional(),
    bucket: z
      .string()
      .regex(
        /^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/,
        "--bucket must be an R2 bucket name (3-63 characters of a-z, 0-9 and -)",
      )
      .optional(),
  })
  .superRefine((f, ctx) => {
    if (f.local && f.remote)
      ctx.addIssue({ code: "custom", message: "--local and --remote exclude each other" });
    if (f.remote && f["persist-to"])
      ctx.addIssue({ code: "custom", message: "--persist-to is for --local state only" });
  });

/** parseArgs (strict, no positionals) with errors as UsageError; `schema` validates the values. */
export function parseFlags<T extends z.ZodType>(
  argv: string[],
  options: ParseArgsConfig["options"],
  schema: T,
  usage: string,
): z.infer<T> | null {
  let values: Record<string, unknown>;
  try {
    values = parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values;
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\n\n${usage}`);
  }
  if (values.help) {
    console.log(usage);
    return null;
  }
  const r = schema.safeParse(values);
  if (!r.success) throw new UsageError(`${flagIssues(r.error)}\n\n${usage}`);
  const b = BucketFlags.safeParse(values);
  if (!b.success) throw new UsageError(`${b.error.issues.map((i) => i.message).join("; ")}\n\n${usage}`);
  return r.data;
}

/** Flag errors as the user typed them: "--to must be ..." (not "to: --to must be ..."). */
function flagIssues(e: z.ZodError): string {
  return e.issues
    .map((i) => (i.message.startsWith("--") ? i.message : `--${i.path.join(".")}: ${i.message}`))
    .join("; ");
}

/**
 * A whole-number flag given as a string, in [min, max] (max: at most Number.MAX_SAFE_INTEGER, so
 * 99999999999999999999 is refused rather than rounded to another number).
 */
export const IntFlag = (what: string, min: number, max: number = Number.MAX_SAFE_INTEGER) =>
  z
    .string()
    .regex(/^\d+$/, `${what} must be a whole number`)
    .transform(Number)
    .refine((n) => n >= min, `${what} must be at least ${min}`)
    .refine((n) => n <= Math.min(max, Number.MAX_SAFE_INTEGER), `${what} must be at most ${max}`);

/**
 * Opens the bucket the flags name. A --persist-to folder that does not exist is a usage error (exit 2)
 * unless `create` (deploy only): reading or rolling back a mistyped path would otherwise create an
 * empty state there and report "nothing is deployed". One that is a file is a usage error for every
 * command (read-only ones would report "nothing is deployed" too).
 */
export async function bucketFromFlags(
  values: Record<string, unknown>,
  opts: { readOnly?: boolean; create?: boolean } = {},
): Promise<Bucket> {
  const f = BucketFlags.parse(values);
  const persistTo = resolve(f["persist-to"] ?? DEFAULT_PERSIST_TO);
  if (!f.remote && f["persist-to"] !== undefined && !opts.create && !existsSync(persistTo))
    throw new UsageError(`--persist-to ${persistTo} does not exist (only deploy creates a state folder)`);
  const problem = f.remote ? null : persistToProblem(persistTo);
  if (problem)
    throw new UsageError(`--persist-to ${persistTo} ${problem} (wrangler's local state is a folder)`);
  return openBucket({
    remote: f.remote === true,
    persistTo,
    bucketName: f.bucket ?? wranglerBucketName(),
    ...(opts.readOnly ? { readOnly: true } : {}),
  });
}

const KNOWN_ERRORS = [
  UsageError,
  DeployError,
  BucketConfigError,
  ConfigError,
  ModelImportError,
  PublishError,
  S3Error,
] as const;

/** Runs a command: known errors print as one line (usage errors exit 2, others 1), anything else with its stack. */
export async function runMain(main: () => Promise<void>): Promise<void> {
  try {
    await main();
  } catch (e) {
    if (KNOWN_ERRORS.some((E) => e instanceof E) || (e as Error)?.name === "PruneError") {
      console.error(`error: ${(e as Error).message}`);
    } else if (e instanceof z.ZodError) {
      console.error(`error: ${formatIssues(e)}`);
    } else {
      console.error(e);
    }
    process.exitCode = exitCodeFor(e);
  }
}

export { humanBytes, mb } from "../../src/publish/bytes.ts";
export { table } from "../lib/table.ts";
