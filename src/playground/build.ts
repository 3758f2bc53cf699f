/**
 * Builds the playground (this folder) into build/playground/, as text files the Worker imports as
 * strings (wrangler's default Text rule for .txt; esbuild's text loader in the test harness) and
 * serves (src/worker/playground-routes.ts):
 *   index.html.txt  the page (./index.html, as written)                     GET /
 *   app.js.txt      the page's script (./app.ts, bundled)                   GET /playground/app.js
 *   app.css.txt     its style sheet (./style.css, minified)                 GET /playground/app.css
 *   engine.js.txt   the in-browser engine (./engine.ts), the WASM kernels inlined
 *                                                                           GET /playground/engine.js
 * Node only. CLI: scripts/build-playground.ts (npm run build:playground); npm start and the tests'
 * global setup call it too, with the kernel binaries they built.
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build, type Plugin } from "esbuild";

const SRC = path.dirname(fileURLToPath(import.meta.url));
export const PLAYGROUND_BUILD_DIR = path.resolve(SRC, "../../build/playground");
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

async function bundled(entry: string, plugins: Plugin[] = []): Promise<string> {
  const result = await build({
    entryPoints: [path.join(SRC, entry)],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    minify: true,
    write: false,
    legalComments: "none",
    plugins,
    logLevel: "silent",
  });
  return result.outputFiles[0]!.text;
}

/** Writes every playground file; `kernels` are the built .wasm files. Returns the paths written. */
export async function buildPlayground(kernels: { relaxed: string; simd: string }): Promise<string[]> {
  const outputs: Record<string, string> = {
    "index.html.txt": await readFile(path.join(SRC, "index.html"), "utf8"),
    "app.js.txt": await bundled("app.ts"),
    "app.css.txt": await bundled("style.css"),
    "engine.js.txt": await bundled("engine.ts", [kernelsPlugin(kernels)]),
  };
  await mkdir(PLAYGROUND_BUILD_DIR, { recursive: true });
  return Promise.all(
    Object.entries(outputs).map(async ([name, text]) => {
      const file = path.join(PLAYGROUND_BUILD_DIR, name);
      await writeFile(file, text);
      return file;
    }),
  );
}
