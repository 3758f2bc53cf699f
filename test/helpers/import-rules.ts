/**
 * The import-direction check (docs/ARCHITECTURE.md, "Layers"): reads every TypeScript file under
 * src/, scripts/ and test/ of a repository root, resolves its relative imports (static, type-only,
 * re-exports and dynamic `import()`, via TypeScript's own pre-processor) and reports each import that
 * crosses layers against LAYER_RULES, each runtime file that reaches into another engine's folder,
 * and each import cycle between files. Bare specifiers (packages, node:*) are not layers and pass.
 * test/fixtures is not scanned: it holds small repositories that break the rules on purpose.
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import ts from "typescript";

/** Layer -> the layers it may import (itself always). */
export const LAYER_RULES: Record<string, readonly string[]> = {
  "src/format": [],
  "src/kernels": ["src/format"],
  "src/runtime": ["src/format", "src/kernels"],
  // The worker imports the kernels' build output as a compiled module (build/wasm), never their code.
  "src/worker": ["src/format", "src/runtime", "build"],
  "src/playground": ["src/format", "src/runtime"],
  // Offline code builds on what runs online (tokenizers, the engine to time a variant), never the reverse.
  "src/model": ["src/format", "src/runtime"],
  "src/compress": ["src/format", "src/kernels", "src/runtime", "src/model"],
  "src/publish": ["src/format", "src/compress"],
  // The bench also serves a built variant set from local R2 (publish) to time the API.
  "src/bench": ["src/format", "src/kernels", "src/runtime", "src/model", "src/compress", "src/publish"],
  scripts: [
    "src/format",
    "src/kernels",
    "src/runtime",
    "src/worker",
    "src/playground",
    "src/model",
    "src/compress",
    "src/publish",
    "src/bench",
  ],
  test: [
    "src/format",
    "src/kernels",
    "src/runtime",
    "src/worker",
    "src/playground",
    "src/model",
    "src/compress",
    "src/publish",
    "src/bench",
    "build",
  ],
};

/** Folders inside src/runtime that are one engine each: they share code through src/runtime itself. */
const ENGINE_FOLDERS = ["src/runtime/wasm", "src/runtime/webgpu"];

export interface ImportEdge {
  from: string;
  to: string;
}

export interface Violation extends ImportEdge {
  why: string;
}

/** The layer a repository-relative path belongs to ("src/runtime", "scripts", "test", "build"), or null. */
export function layerOf(file: string): string | null {
  const parts = file.split("/");
  if (parts[0] === "src" && parts.length > 2) return `src/${parts[1]}`;
  if (parts[0] === "scripts" || parts[0] === "test" || parts[0] === "build") return parts[0];
  return null;
}

function sourceFiles(root: string, dir: string): string[] {
  const abs = path.join(root, dir);
  let entries: import("node:fs").Dirent[];
  try {
    entries = readdirSync(abs, { withFileTypes: true });
  } catch {
    return [];
  }
  return entries.flatMap((e) => {
    const rel = `${dir}/${e.name}`;
    // test/fixtures holds deliberately broken layouts (the check's own test reads them as a root).
    if (e.isDirectory()) return rel === "test/fixtures" ? [] : sourceFiles(root, rel);
    return /\.(ts|mts|tsx)$/.test(e.name) && !e.name.endsWith(".d.ts") ? [rel] : [];
  });
}

/** Every relative import of every .ts file under src/, scripts/ and test/ of `root`, as repo paths. */
export function importEdges(root: string): ImportEdge[] {
  const edges: ImportEdge[] = [];
  for (const from of ["src", "scripts", "test"].flatMap((d) => sourceFiles(root, d))) {
    const info = ts.preProcessFile(readFileSync(path.join(root, from), "utf8"), true, true);
    for (const im of info.importedFiles) {
      if (!im.fileName.startsWith(".")) continue;
      const to = path.posix.normalize(path.posix.join(path.posix.dirname(from), im.fileName));
      edges.push({ from, to });
    }
  }
  return edges;
}

function cycles(edges: ImportEdge[]): string[][] {
  const next = new Map<string, string[]>();
  for (const e of edges) next.set(e.from, [...(next.get(e.from) ?? []), e.to]);
  // Tarjan's strongly connected components; every component of two or more files is a cycle.
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string): void => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    onStack.add(v);
    for (const w of next.get(v) ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1) found.push(scc.sort());
    }
  };
  for (const v of next.keys()) if (!idx.has(v)) visit(v);
  return found;
}

/** Every import of `root` that breaks a rule, with the rule it breaks. Empty when the layering holds. */
export function importViolations(root: string): Violation[] {
  const edges = importEdges(root);
  const out: Violation[] = [];
  for (const e of edges) {
    const a = layerOf(e.from);
    const b = layerOf(e.to);
    if (b === null) {
      out.push({ ...e, why: `${e.to} is outside every layer` });
      continue;
    }
    if (a === null || a === b) {
      const engine = ENGINE_FOLDERS.find((f) => e.from.startsWith(`${f}/`));
      const other = ENGINE_FOLDERS.find((f) => f !== engine && e.to.startsWith(`${f}/`));
      if (engine && other) {
        out.push({ ...e, why: `${engine} may not reach into ${other}: share through src/runtime` });
      }
      continue;
    }
    const allowed = LAYER_RULES[a];
    if (!allowed) out.push({ ...e, why: `${a} has no import rules` });
    else if (!allowed.includes(b)) out.push({ ...e, why: `${a} may not import ${b}` });
  }
  for (const c of cycles(edges))
    out.push({ from: c[0]!, to: c[1]!, why: `import cycle: ${c.join(" <-> ")}` });
  return out;
}
