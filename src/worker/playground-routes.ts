/**
 * The playground (src/playground, built into build/playground by scripts/build-playground.ts; npm
 * start and the tests' global setup build it):
 *   GET /                       the page
 *   GET /playground/app.js      its script
 *   GET /playground/app.css     its style sheet
 *   GET /playground/engine.js   the in-browser engine, kernels inlined
 */
import type { Hono } from "hono";
import appCss from "../../build/playground/app.css.txt";
import appJs from "../../build/playground/app.js.txt";
import engineJs from "../../build/playground/engine.js.txt";
import pageHtml from "../../build/playground/index.html.txt";
import type { AppEnv } from "./app-env.ts";

const FILES: Record<string, { body: string; type: string }> = {
  "/": { body: pageHtml, type: "text/html; charset=utf-8" },
  "/playground/app.js": { body: appJs, type: "text/javascript; charset=utf-8" },
  "/playground/app.css": { body: appCss, type: "text/css; charset=utf-8" },
  "/playground/engine.js": { body: engineJs, type: "text/javascript; charset=utf-8" },
};

export function registerPlaygroundRoutes(app: Hono<AppEnv>): void {
  for (const [path, file] of Object.entries(FILES)) {
    app.get(path, (c) => {
      c.header("Content-Type", file.type);
      // Each deploy replaces these files under the same names: always revalidate.
      c.header("Cache-Control", "no-cache");
      return c.body(file.body);
    });
  }
}
