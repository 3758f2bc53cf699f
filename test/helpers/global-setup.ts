/**
 * Once per test run: build the playground (page, script, style sheet, engine bundle), which the Worker imports
 * (src/worker/playground-routes.ts), so every test that bundles the Worker finds it.
 */
import { buildPlayground } from "../../scripts/build-playground.ts";

export default async function setup(): Promise<void> {
  await buildPlayground();
}
