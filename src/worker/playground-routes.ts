/**
 * The playground (see ./playground-page.ts):
 *   GET /                       the page
 *   GET /playground/engine.js   the in-browser engine, kernels inlined (src/playground/engine.ts,
 *                               bundled by scripts/build-playground.ts: npm start and the tests build it)
 */
import type { Hono } from "hono";
import engineJs from "../../build/playground/engine.js.txt";
import type { AppEnv } from "./app-env.ts";
import { PLAYGROUND_HTML } from "./playground-page.ts";

export function registerPlaygroundRoutes(app: Hono<AppEnv>): void {
  app.get("/", (c) => {
    c.header("Cache-Control", "no-cache");
    return c.html(PLAYGROUND_HTML);
  });
  app.get("/playground/engine.js", (c) => {
    c.header("Content-Type", "text/javascript; charset=utf-8");
    c.header("Cache-Control", "no-cache");
    return c.body(engineJs);
  });
}
