/**
 * Builds the playground (src/playground) into build/playground/, as text files the Worker imports as
 * strings (wrangler's default Text rule for .txt; esbuild's text loader in the test harness) and
 * serves (src/worker/playground-routes.ts):
 *   index.html.txt  the page (src/playground/index.html, as written)        GET /
 *   app.js.txt      the page's script (src/playground/app.ts, bundled)     GET /playground/app.js
 *   app.css.txt     its style sheet (src/playground/style.css, minified)   GET /playground/app.css
 *   engine.js.txt   the in-browser engine (src/playground/engine.ts), the WASM kernels inlined
 *                                                                          GET /playground/engine.js
 *   npx tsx scripts/build-playground.ts      (npm run build:playground; npm start and the tests run it)
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build, type Plugin } from "esbuild";
import { ensureKernelsWasm } from "./build-wasm.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
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

/** Builds every playground file; returns the paths written. */
export async function buildPlayground(): Promise<string[]> {
  const files = {
    relaxed: await ensureKernelsWasm({ relaxed: true }),
    simd: await ensureKernelsWasm(),
  };
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
      await writeFile(file, text);
      return file;
    }),
  );
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const t0 = performance.now();
  const { statSync } = await import("node:fs");
  for (const file of await buildPlayground()) {
    console.log(`${path.relative(root, file)}  ${(statSync(file).size / 1024).toFixed(1)} KiB`);
  }
  console.log(`built in ${(performance.now() - t0).toFixed(0)} ms`);
}
