/**
 * Builds the playground (this folder) into build/playground/, as text files the Worker imports as
 * strings (wrangler's default Text rule for .txt; esbuild's text loader in the test harness) and
 * serves (src/worker/playground-routes.ts):
 *   index.html.txt  the page (src/playground/index.html, as written)        GET /
 *   app.js.txt      the page's script (src/playground/app.ts, bundled)     GET /playground/app.js
 *   app.css.txt     its style sheet (src/playground/style.css, minified)   GET /playground/app.css
 *   engine.js.txt   the in-browser engine (src/playground/engine.ts), the WASM kernels inlined
 *                                                                          GET /playground/engine.js
 * Node only. CLI: scripts/build-playground.ts (npm run build:playground); npm start and the tests'
 * global setup call it too, with the kernel binaries they built (src/kernels/wasm/build.ts).
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build, type Plugin } from "esbuild";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const SRC = path.join(root, "src/playground");
export const PLAYGROUND_BUILD_DIR = path.join(root, "build/playground");
export const PLAYGROUND_ENGINE_PATH = path.join(PLAYGROUND_BUILD_DIR, "engine.js.txt");

/** `shardlm:kernels/relaxed` and `shardlm:kernels/simd`: the kernels' bytes as Uint8Arrays. */
function kernelsPlugin(files: { relaxed: string; simd: string }): Plugin {
  return {
    name: "shardlm-kernels",
    setup(b) {
      b.onResolve({ filter: /^shardlm:kernels\// }, (args) => ({ path: args.path, namespace: "kernels" }));
      b.onLoad({ filter: /.*/, namespace: "kernels" }, async (args) => {
        const which = args.path.endsWith("/relaxed") ? files.relaxed : files.simd;
        return { contents: await readFile(which), loader: "binary" };
      });
    },
  };
}

const browserBuild = {
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  minify: true,
  write: false,
  legalComments: "none",
  logLevel: "silent",
} as const;

async function bundled(entry: string, plugins: Plugin[] = []): Promise<string> {
  const result = await build({ ...browserBuild, entryPoints: [path.join(SRC, entry)], plugins });
  return result.outputFiles[0]!.text;
}

/**
 * Builds every playground file; `kernels` are the built .wasm files to inline. A file whose text is
 * unchanged is not rewritten: a `wrangler dev` already serving watches build/ and would reload (and
 * drop its loaded variants) for a rewrite with the same bytes. Returns every file's path.
 */
export async function buildPlayground(kernels: { relaxed: string; simd: string }): Promise<string[]> {
  const files = kernels;
  const outputs: Record<string, string> = {
    "index.html.txt": await readFile(path.join(SRC, "index.html"), "utf8"),
    "app.js.txt": await bundled("app.ts"),
    "app.css.txt": await bundled("style.css"),
    "engine.js.txt": await bundled("engine.ts", [kernelsPlugin(files)]),
  };
  await mkdir(PLAYGROUND_BUILD_DIR, { recursive: true });
  return Promise.all(
    Object.entries(outputs).map(async ([name, text]) => {
      const file = path.join(PLAYGROUND_BUILD_DIR, name);
      if ((await readFile(file, "utf8").catch(() => null)) !== text) await writeFile(file, text);
      return file;
    }),
  );
}
