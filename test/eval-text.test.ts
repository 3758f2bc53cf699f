/**
 * The evaluation text and the eval command's inputs: the shipped real-prose set is there, disjoint
 * from the calibration text and large enough; a bad `--text` file (missing, a folder, binary, NUL
 * bytes, empty) or token budget fails with a message naming the problem, before anything is built;
 * the target line follows the rows it is computed from.
 */
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { DEFAULT_CONFIG } from "../src/compress/build-variants.ts";
import { CALIBRATION_TEXT, readParagraphs, TextFileError } from "../src/compress/calibration.ts";
import { type EvalRow, evalTarget, evaluate } from "../src/compress/eval-variants.ts";
import { sharedModelPath, tempDirs } from "./helpers/paths.ts";

const dirs = tempDirs("eval-text");
afterAll(() => dirs.cleanup());

describe("held-out real text (data/heldout)", () => {
  it("ships tens of paragraphs, a few thousand words, none of them calibration text", () => {
    const prose = readParagraphs(CALIBRATION_TEXT.prose);
    expect(prose.length).toBeGreaterThanOrEqual(60);
    const words = prose.join(" ").split(" ").length;
    expect(words).toBeGreaterThan(3000);
    const train = new Set(readParagraphs(CALIBRATION_TEXT.train));
    for (const p of prose) expect(train.has(p)).toBe(false);
  });
});

describe("a text file that is not text fails clearly", () => {
  const cases: [string, (dir: string) => string, RegExp][] = [
    ["a missing file", (d) => join(d, "nope.txt"), /nope\.txt: cannot read text \(ENOENT\)/],
    ["a folder", (d) => d, /cannot read text \(EISDIR\)/],
    [
      "bytes that are not UTF-8",
      (d) => write(d, "bin.txt", Uint8Array.from([0x50, 0x4b, 0x03, 0x04, 0xff, 0xfe, 0x80, 0x81])),
      /bin\.txt: not UTF-8 text/,
    ],
    ["NUL bytes", (d) => write(d, "nul.txt", "hello\0world\n\nagain"), /nul\.txt: not text \(contains NUL/],
    ["an empty file", (d) => write(d, "empty.txt", ""), /empty\.txt: no text/],
    ["whitespace only", (d) => write(d, "blank.txt", " \n\n\t\r\n \n"), /blank\.txt: no text/],
  ];
  function write(dir: string, name: string, content: string | Uint8Array): string {
    const path = join(dir, name);
    writeFileSync(path, content);
    return path;
  }

  for (const [what, make, message] of cases) {
    it(`readParagraphs: ${what}`, () => {
      const path = make(dirs.make());
      expect(() => readParagraphs(path)).toThrow(TextFileError);
      expect(() => readParagraphs(path)).toThrow(message);
    });

    it(`eval --text: ${what}, before building anything`, async () => {
      const dir = dirs.make();
      const out = join(dir, "variants");
      await expect(
        evaluate({ model: sharedModelPath(), config: DEFAULT_CONFIG, out, log: () => {}, text: make(dir) }),
      ).rejects.toThrow(message);
      expect(existsSync(out)).toBe(false);
    });
  }

  for (const tokens of [0, 7, 1.5, Number.NaN, -100]) {
    it(`eval --tokens ${tokens} is refused before building anything`, async () => {
      const out = join(dirs.make(), "variants");
      await expect(
        evaluate({ model: sharedModelPath(), config: DEFAULT_CONFIG, out, log: () => {}, tokens }),
      ).rejects.toThrow(/tokens must be an integer ≥ 8/);
      expect(existsSync(out)).toBe(false);
    });
  }
});

describe("evalTarget", () => {
  const row = (variant: string, kl: number, bytes: number): EvalRow => ({
    variant,
    method: "x",
    bytes,
    bits_per_weight: 4.5,
    kl_mean: kl,
    top1_agreement: 0.9,
    perplexity: 10,
    reference_perplexity: 9,
    eval_tokens: 100,
    decode_tok_s: null,
  });

  it("met only at half Q4_0's KL or less and no more bytes", () => {
    expect(evalTarget([row("quality", 0.1, 100), row("q4_0", 0.2, 100)])).toMatchObject({
      ratio: 0.5,
      met: true,
    });
    expect(evalTarget([row("quality", 0.11, 100), row("q4_0", 0.2, 100)])!.met).toBe(false);
    expect(evalTarget([row("quality", 0.05, 101), row("q4_0", 0.2, 100)])).toMatchObject({
      bytes_ok: false,
      met: false,
    });
    expect(evalTarget([row("speed", 0.05, 10), row("q4_0", 0.2, 100)])).toBeNull();
  });
});
