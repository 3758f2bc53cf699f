/**
 * The layers import one way (docs/ARCHITECTURE.md): this repository's import graph breaks no rule,
 * and the check finds each kind of break in a fixture repository that has one of each.
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { importViolations } from "./helpers/import-rules.ts";

const repoRoot = fileURLToPath(new URL("..", import.meta.url));

describe("import directions", () => {
  it("hold in this repository", () => {
    const lines = importViolations(repoRoot).map((v) => `${v.from} -> ${v.to}: ${v.why}`);
    expect(lines).toEqual([]);
  });

  it("catch a forbidden import of each kind (fixture)", () => {
    const fixture = path.join(repoRoot, "test/fixtures/import-direction");
    const found = importViolations(fixture).map((v) => `${v.from} -> ${v.to}: ${v.why}`);
    expect(found.sort()).toEqual(
      [
        "src/format/layout.ts -> src/runtime/engine.ts: src/format may not import src/runtime",
        "src/runtime/webgpu/engine.ts -> src/runtime/wasm/engine.ts: src/runtime/webgpu may not reach into src/runtime/wasm: share through src/runtime",
        "src/worker/routes.ts -> src/publish/upload.ts: src/worker may not import src/publish",
        "test/uses-script.ts -> scripts/tool.ts: test may not import scripts",
        "src/publish/bucket.ts -> src/publish/upload.ts: import cycle: src/publish/bucket.ts <-> src/publish/upload.ts",
      ].sort(),
    );
  });
});
