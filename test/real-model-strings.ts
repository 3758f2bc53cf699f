/**
 * ≥ 2,000 deterministic test strings for comparing tokenizers on a real vocabulary: chat markup,
 * code, emoji, CJK, whitespace runs, numbers, real prose and random Unicode (seeded, so a failure
 * names a reproducible string).
 */
import { readFileSync } from "node:fs";
import { mulberry32 } from "./helpers/random.ts";
import { randomText, SAMPLE_TEXTS } from "./tokenizer-fixtures.ts";

const CODE = [
  "function add(a, b) {\n  return a + b;\n}",
  "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
  "for (let i = 0; i < n; i++) sum += x[i] * w[i];",
  '#include <stdio.h>\nint main(void) { printf("%d\\n", 42); }',
  "SELECT name, COUNT(*) FROM users WHERE age >= 18 GROUP BY name;",
  'fn main() {\n\tlet v: Vec<u8> = vec![1, 2, 3];\n\tprintln!("{:?}", v);\n}',
  "const re = /^[a-z_][\\w-]*$/i; // identifiers",
  '<div class="card"><span>{{ title }}</span></div>',
  "x = [i**2 for i in range(10) if i % 2 == 0]",
  'if err != nil {\n\t\treturn fmt.Errorf("open: %w", err)\n\t}',
  "$ npm run build && ./bin/app --port=8080 2>&1 | tee log.txt",
  '{"id": 17, "tags": ["a", "b"], "ok": true, "v": null}',
  "   indented()\n\t\ttabbed()\n",
  "a->b; c::d; e=>f; g!==h; i<=j; k>>=2; l||m && !n",
];
const EMOJI = ["😀", "👍🏽", "👩‍👩‍👧‍👦", "🇫🇷", "🏳️‍🌈", "❤️", "🤖", "🔥🔥🔥", "✨", "🙏🏿", "1️⃣", "🧑‍💻"];
const CJK = [
  "你好，世界！",
  "机器学习模型",
  "日本語のテキストです。",
  "カタカナとひらがな",
  "한국어 문장입니다.",
  "漢字と仮名",
  "中文、标点；测试？",
  "東京タワー",
];
const WORDS = [
  "the",
  "model",
  "SmolLM2",
  "Hello",
  "world",
  "naïve",
  "café",
  "über",
  "don't",
  "I'm",
  "it's",
  "GPT-4",
  "e.g.",
  "U.S.A.",
];
const SPECIAL = [
  "<|im_start|>",
  "<|im_end|>",
  "<|endoftext|>",
  "<|im_start",
  "im_end|>",
  "<|",
  "|>",
  "<repo_name>",
  "<file_sep>",
];
const ROLES = ["system", "user", "assistant"];
const SPACES = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n ", "\u00a0", "\u3000", "    \n\t  "];

export function realModelTestStrings(): { text: string; category: string }[] {
  const r = mulberry32(2025);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const int = (n: number) => Math.floor(r() * n);
  const out: { text: string; category: string }[] = [];
  const add = (category: string, count: number, make: () => string) => {
    for (let i = 0; i < count; i++) out.push({ category, text: make() });
  };
  const prose = readFileSync(new URL("../data/calibration/heldout.txt", import.meta.url), "utf8")
    .concat(readFileSync(new URL("../data/calibration/train.txt", import.meta.url), "utf8"))
    .split(/(?<=[.!?])\s+/)
    .filter((s) => s.length > 0);

  for (const t of SAMPLE_TEXTS) out.push({ category: "samples", text: t });
  add("chat markup", 300, () => {
    const turns = 1 + int(3);
    let s = "";
    for (let t = 0; t < turns; t++) s += `<|im_start|>${pick(ROLES)}\n${pick(prose)}<|im_end|>\n`;
    if (r() < 0.5) s += "<|im_start|>assistant\n";
    if (r() < 0.3) s = s.replace(pick(SPECIAL), pick(SPECIAL));
    return s;
  });
  add("code", 300, () => {
    const a = pick(CODE);
    const b = pick(CODE);
    return r() < 0.5 ? a : `${a}${pick(SPACES)}${b.slice(0, int(b.length))}`;
  });
  add("emoji", 200, () =>
    Array.from({ length: 1 + int(5) }, () =>
      r() < 0.5 ? pick(EMOJI) : `${pick(WORDS)} ${pick(EMOJI)}`,
    ).join(pick(["", " ", "\n"])),
  );
  add("cjk", 200, () =>
    Array.from({ length: 1 + int(4) }, () => (r() < 0.7 ? pick(CJK) : pick(WORDS))).join(
      pick(["", " ", "\n"]),
    ),
  );
  add("whitespace", 300, () =>
    Array.from(
      { length: 1 + int(6) },
      () => `${pick(SPACES).repeat(1 + int(3))}${r() < 0.7 ? pick(WORDS) : ""}`,
    ).join(""),
  );
  add("numbers", 300, () => {
    const forms = [
      () => String(int(10 ** (1 + int(12)))),
      () => (r() * 10 ** int(6)).toFixed(int(6)),
      () => (int(2_000_000_000) - 1_000_000_000).toLocaleString("en-US"),
      () =>
        `${1900 + int(200)}-${String(1 + int(12)).padStart(2, "0")}-${String(1 + int(28)).padStart(2, "0")}`,
      () => `+1 (${100 + int(900)}) ${100 + int(900)}-${1000 + int(9000)}`,
      () => `0x${int(2 ** 31).toString(16)}`,
      () => `${int(100)}%, ${int(1000)}ms, v${int(10)}.${int(20)}.${int(30)}`,
      () => `${(r() * 1e-5).toExponential(3)} ${int(7)}/${1 + int(9)}`,
    ];
    return Array.from({ length: 1 + int(3) }, () => pick(forms)()).join(pick([" ", "", ", ", "\n"]));
  });
  add("prose", 250, () => (r() < 0.5 ? pick(prose) : `${pick(prose)} ${pick(prose)}`));
  add("random unicode", 200, () => randomText(r, 40));
  return out;
}
