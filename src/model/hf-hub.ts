/**
 * Downloading a Hugging Face model folder from the Hub (or any mirror: HF_ENDPOINT) into a local
 * cache: config.json, tokenizer files, and model.safetensors or its shards per the index. Files are
 * streamed to a temp name and renamed, so an interrupted download never leaves a partial file that
 * looks complete.
 */
import { createWriteStream, existsSync, mkdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { z } from "zod";

export interface HubOptions {
  revision?: string;
  /** Default: $HF_ENDPOINT or https://huggingface.co */
  endpoint?: string;
  /** Default: $HF_TOKEN, if set. */
  token?: string;
  /** Default: ~/.cache/shardlm/hub */
  cacheDir?: string;
  log?: (message: string) => void;
}

export class HubError extends Error {
  override readonly name = "HubError";
}

const REPO = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;
const REQUIRED = ["config.json", "tokenizer.json"];
const OPTIONAL = ["tokenizer_config.json", "generation_config.json", "chat_template.jinja"];
const ShardIndex = z.object({ weight_map: z.record(z.string(), z.string()) });

export async function downloadHfModel(repo: string, opts: HubOptions = {}): Promise<string> {
  if (!REPO.test(repo)) throw new HubError(`"${repo}" is not a Hub repository id (owner/name)`);
  const endpoint = (opts.endpoint ?? process.env.HF_ENDPOINT ?? "https://huggingface.co").replace(/\/+$/, "");
  const revision = opts.revision ?? "main";
  const token = opts.token ?? process.env.HF_TOKEN;
  const log = opts.log ?? ((m: string) => console.error(m));
  const dir = join(opts.cacheDir ?? join(homedir(), ".cache/shardlm/hub"), repo.replace("/", "--"), revision);
  mkdirSync(dir, { recursive: true });
  const url = (file: string) => `${endpoint}/${repo}/resolve/${encodeURIComponent(revision)}/${file}`;
  const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};

  async function fetchFile(file: string, required: boolean): Promise<boolean> {
    const target = join(dir, file);
    if (existsSync(target)) return true;
    let res: Response;
    try {
      res = await fetch(url(file), { headers, redirect: "follow" });
    } catch (e) {
      throw new HubError(
        `${url(file)}: cannot connect (${(e as Error).message}); set HF_ENDPOINT for a mirror`,
      );
    }
    if (res.status === 404 && !required) return false;
    if (!res.ok || !res.body) {
      const hint = res.status === 401 || res.status === 403 ? " (gated or private: set HF_TOKEN)" : "";
      throw new HubError(`${url(file)}: HTTP ${res.status}${hint}`);
    }
    const total = Number(res.headers.get("content-length") ?? 0);
    log(`downloading ${repo}/${file}${total ? ` (${(total / 1e6).toFixed(1)} MB)` : ""}`);
    const tmp = `${target}.part-${process.pid}`;
    try {
      await pipeline(Readable.fromWeb(res.body as never), createWriteStream(tmp));
      renameSync(tmp, target);
    } catch (e) {
      rmSync(tmp, { force: true });
      throw new HubError(`${url(file)}: download failed (${(e as Error).message})`);
    }
    return true;
  }

  for (const f of REQUIRED) await fetchFile(f, true);
  for (const f of OPTIONAL) await fetchFile(f, false);
  if (await fetchFile("model.safetensors.index.json", false)) {
    const index = ShardIndex.safeParse(
      JSON.parse(readFileSync(join(dir, "model.safetensors.index.json"), "utf8")),
    );
    if (!index.success) throw new HubError(`${repo}: model.safetensors.index.json has no weight_map`);
    for (const shard of [...new Set(Object.values(index.data.weight_map))].sort()) {
      if (!/^[\w.-]+\.safetensors$/.test(shard)) throw new HubError(`${repo}: odd shard name ${shard}`);
      await fetchFile(shard, true);
    }
  } else {
    await fetchFile("model.safetensors", true);
  }
  return dir;
}
