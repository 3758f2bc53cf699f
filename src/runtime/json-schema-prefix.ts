/**
 * An incremental recognizer of JSON text that matches a compiled schema (./json-schema.ts), for
 * `response_format: {"type": "json_schema"}`: fed characters (UTF-16 code units) one at a time, it
 * says whether the text so far is still a prefix of some JSON text the schema accepts, and whether
 * it is complete. A pushdown automaton over the schema tree; anyOf runs its options side by side
 * (a set of "threads", each one stack) until the text tells them apart.
 *
 * Insignificant whitespace is limited to runs of one space or newline (compact answers).
 * Object keys come in the schema's property order, each at most once; numbers are JSON numbers
 * (integers without fraction or exponent).
 */
import { type CompiledSchema, type SchemaNode, STRING_FILL } from "./json-schema.ts";

type NumState = "minus" | "zero" | "int" | "dot" | "frac" | "e" | "eSign" | "exp";

type Frame =
  /** A value of `node` comes next (whitespace may come first). */
  | { t: "value"; node: SchemaNode }
  | {
      t: "object";
      node: Extract<SchemaNode, { kind: "object" }>;
      /** open: after "{"; key: inside a key; colon: after a key; after: after a value; comma: after ",". */
      phase: "open" | "key" | "colon" | "after" | "comma";
      /** Index of the first property that may still come. */
      next: number;
      /** Inside a key: its text so far (from the opening quote) and the property it became. */
      key: string;
      chosen: number;
    }
  | {
      t: "array";
      node: Extract<SchemaNode, { kind: "array" }>;
      phase: "open" | "after" | "comma";
      count: number;
    }
  | {
      t: "string";
      escape: boolean;
      hexLeft: number;
      /** The \u escape's hex digits so far, as a number. */
      hex: number;
      /** The node's minLength and maxLength (null: none). */
      min: number;
      max: number | null;
      /** Code points so far (a surrogate pair counts once). */
      len: number;
      /** The last UTF-16 unit was a high surrogate (a low one next completes its code point). */
      high: boolean;
    }
  | { t: "number"; integer: boolean; num: NumState }
  | { t: "literal"; texts: string[]; matched: string };

interface Thread {
  frames: Frame[];
  /** Whitespace characters in the current run of insignificant whitespace. */
  ws: number;
}

const ESCAPES = '"\\/bfnrt';
const MAX_WS_RUN = 1;
const isWs = (ch: string) => ch === " " || ch === "\n";
const isDigit = (ch: string) => ch >= "0" && ch <= "9";
const isHex = (ch: string) => /^[0-9a-fA-F]$/.test(ch);

/** Most threads kept: any one of them is a valid parse, so dropping the rest keeps answers valid. */
const MAX_THREADS = 64;

/** Threads in equal states merged (anyOf options that agree would otherwise multiply per item). */
function distinct(threads: Thread[]): Thread[] {
  const seen = new Set<string>();
  const out: Thread[] = [];
  for (const t of threads) {
    const k = threadKey(t);
    if (seen.has(k)) continue;
    seen.add(k);
    out.push(t);
    if (out.length === MAX_THREADS) break;
  }
  return out;
}

const cloneThread = (t: Thread): Thread => ({ frames: t.frames.map((f) => ({ ...f })), ws: t.ws });

export class JsonSchemaPrefix {
  private threads: Thread[];

  constructor(private readonly schema: CompiledSchema) {
    this.threads = [{ frames: [{ t: "value", node: schema.root }], ws: 0 }];
  }

  clone(): JsonSchemaPrefix {
    const c = Object.create(JsonSchemaPrefix.prototype) as JsonSchemaPrefix;
    (c as unknown as { schema: CompiledSchema }).schema = this.schema;
    c.threads = this.threads.map(cloneThread);
    return c;
  }

  /** The text so far is a complete value of the schema (nothing more may follow). */
  get complete(): boolean {
    return this.threads.some((t) => t.frames.length === 0);
  }

  /**
   * Inside a string value, not in an escape, and past its length bounds' reach (no maxLength,
   * minLength reached): any character but '"', '\' and controls continues it and changes nothing.
   */
  get inFreeString(): boolean {
    if (this.threads.length !== 1) return false;
    const f = this.threads[0]!.frames.at(-1);
    return f?.t === "string" && !f.escape && f.hexLeft === 0 && lengthSettled(f);
  }

  /** Equal keys mean equal futures (what a token mask may cache on). */
  key(): string {
    return this.threads.map(threadKey).join("||");
  }

  /** Feeds `text`; false (and refused for good) as soon as it stops being a valid prefix. */
  push(text: string): boolean {
    for (let i = 0; i < text.length; i++) {
      const ch = text[i]!;
      const out: Thread[] = [];
      for (const t of this.threads) this.advance(t, ch, out);
      this.threads = out.length > 1 ? distinct(out) : out;
      if (out.length === 0) return false;
    }
    return true;
  }

  /** Steps `t` over `ch`, forking it at anyOf; survivors go to `out`. */
  private advance(t: Thread, ch: string, out: Thread[]): void {
    const r = step(t, ch);
    if (r === "ok") out.push(t);
    else if (r === "fork") {
      const top = t.frames.at(-1) as { t: "value"; node: Extract<SchemaNode, { kind: "anyOf" }> };
      for (const option of top.node.options) {
        const c = cloneThread(t);
        c.frames[c.frames.length - 1] = { t: "value", node: option };
        if (step(c, ch) === "ok") out.push(c);
      }
    }
  }

  /** Shortest text that completes a schema value from here (when the token budget runs out). */
  closing(): string {
    let best: string | null = null;
    for (const t of this.threads) {
      const s = closeThread(t, this.schema.minText);
      if (best === null || s.length < best.length) best = s;
    }
    return best ?? "";
  }
}

/** A thread's state as text: equal keys, equal futures. */
function threadKey(t: Thread): string {
  return `${t.ws}:${t.frames
    .map((f) => {
      switch (f.t) {
        case "value":
          return `v${f.node.id}`;
        case "object":
          return `o${f.node.id}${f.phase}${f.next}${f.phase === "key" ? JSON.stringify(f.key) : ""}${f.phase === "colon" ? `c${f.chosen}` : ""}`;
        case "array": {
          const counted = f.node.minItems > 0 || f.node.maxItems !== null;
          return `a${f.node.id}${f.phase}${counted ? f.count : ""}`;
        }
        case "string": {
          const base = `s${f.escape ? "e" : ""}${f.hexLeft}`;
          if (lengthSettled(f)) return base;
          // Where a high surrogate waits, the escape's digits say whether its low half comes.
          const hex = f.high && f.hexLeft > 0 ? `x${f.hex}` : "";
          return `${base}:${f.len}${f.high ? "h" : ""}${hex}`;
        }
        case "number":
          return `n${f.integer ? "i" : ""}${f.num}`;
        case "literal":
          return `l${f.texts.join("\u0000")}\u0001${f.matched}`;
      }
      return "";
    })
    .join("|")}`;
}

/** "fork": the top frame is an anyOf value and `ch` was not consumed. */
function step(t: Thread, ch: string): "ok" | "fail" | "fork" {
  const ws = isWs(ch);
  const space = (): "ok" | "fail" => {
    if (t.ws >= MAX_WS_RUN) return "fail";
    t.ws++;
    return "ok";
  };
  if (!ws) t.ws = 0;
  for (;;) {
    const f = t.frames.at(-1);
    if (!f) return "fail"; // complete: nothing may follow
    switch (f.t) {
      case "value": {
        if (ws) return space();
        const node = f.node;
        const replace = (g: Frame) => {
          t.frames[t.frames.length - 1] = g;
        };
        switch (node.kind) {
          case "anyOf":
            return "fork";
          case "object":
            if (ch !== "{") return "fail";
            replace({ t: "object", node, phase: "open", next: 0, key: "", chosen: -1 });
            return "ok";
          case "array":
            if (ch !== "[") return "fail";
            replace({ t: "array", node, phase: "open", count: 0 });
            return "ok";
          case "string":
            if (ch !== '"') return "fail";
            replace({
              t: "string",
              escape: false,
              hexLeft: 0,
              hex: 0,
              min: node.minLength,
              max: node.maxLength,
              len: 0,
              high: false,
            });
            return "ok";
          case "number":
            if (ch !== "-" && !isDigit(ch)) return "fail";
            replace({
              t: "number",
              integer: node.integer,
              num: ch === "-" ? "minus" : ch === "0" ? "zero" : "int",
            });
            return "ok";
          case "literal": {
            const texts = node.texts.filter((x) => x[0] === ch);
            if (texts.length === 0) return "fail";
            replace({ t: "literal", texts, matched: ch });
            if (texts.length === 1 && texts[0] === ch) t.frames.pop();
            return "ok";
          }
        }
        return "fail";
      }
      case "string":
        if (f.hexLeft > 0) {
          if (!isHex(ch)) return "fail";
          f.hex = f.hex * 16 + Number.parseInt(ch, 16);
          f.hexLeft--;
          return f.hexLeft > 0 || countUnit(f, f.hex) ? "ok" : "fail";
        }
        if (f.escape) {
          f.escape = false;
          if (ch === "u") {
            f.hexLeft = 4;
            f.hex = 0;
          } else if (!ESCAPES.includes(ch)) return "fail";
          else countUnit(f, 0x20); // room was checked at the backslash
          return "ok";
        }
        if (ch === "\\") {
          // An escape writes one code point (or completes a pair): it needs room for one.
          if (f.max !== null && f.len >= f.max) return "fail";
          f.escape = true;
        } else if (ch === '"') {
          if (f.len < f.min) return "fail";
          t.frames.pop();
        } else if (ch.charCodeAt(0) < 0x20 || !countUnit(f, ch.charCodeAt(0))) return "fail";
        return "ok";
      case "number": {
        const next = numberStep(f.num, ch, f.integer);
        if (next !== null) {
          f.num = next;
          return "ok";
        }
        if (f.num === "minus" || f.num === "dot" || f.num === "e" || f.num === "eSign") return "fail";
        t.frames.pop(); // the number ended before `ch`: the enclosing value takes it
        continue;
      }
      case "literal": {
        const m = f.matched + ch;
        const texts = f.texts.filter((x) => x.startsWith(m));
        if (texts.length > 0) {
          f.matched = m;
          f.texts = texts;
          if (texts.length === 1 && texts[0] === m) t.frames.pop();
          return "ok";
        }
        if (!f.texts.includes(f.matched)) return "fail";
        t.frames.pop(); // e.g. enum [1, 12] after "1": the value ended before `ch`
        continue;
      }
      case "object": {
        const props = f.node.props;
        switch (f.phase) {
          case "open":
          case "comma":
            if (ws) return space();
            if (ch === "}" && f.phase === "open") {
              if (requiredLeft(props, f.next)) return "fail";
              t.frames.pop();
              return "ok";
            }
            if (ch !== '"' || keyChoices(props, f.next).length === 0) return "fail";
            f.phase = "key";
            f.key = '"';
            return "ok";
          case "key": {
            const m = f.key + ch;
            const choices = keyChoices(props, f.next).filter((i) => props[i]!.keyText.startsWith(m));
            if (choices.length === 0) return "fail";
            f.key = m;
            const whole = choices.find((i) => props[i]!.keyText === m);
            if (whole !== undefined) {
              f.phase = "colon";
              f.chosen = whole;
              f.key = "";
            }
            return "ok";
          }
          case "colon":
            if (ws) return space();
            if (ch !== ":") return "fail";
            f.phase = "after";
            f.next = f.chosen + 1;
            t.frames.push({ t: "value", node: props[f.chosen]!.node });
            return "ok";
          case "after":
            if (ws) return space();
            if (ch === ",") {
              if (keyChoices(props, f.next).length === 0) return "fail";
              f.phase = "comma";
              return "ok";
            }
            if (ch !== "}" || requiredLeft(props, f.next)) return "fail";
            t.frames.pop();
            return "ok";
        }
        return "fail";
      }
      case "array": {
        const { minItems, maxItems } = f.node;
        if (ws) return f.phase === "after" || f.phase === "open" || f.phase === "comma" ? space() : "fail";
        if (f.phase === "after") {
          if (ch === ",") {
            if (maxItems !== null && f.count >= maxItems) return "fail";
            f.phase = "comma";
            return "ok";
          }
          if (ch !== "]" || f.count < minItems) return "fail";
          t.frames.pop();
          return "ok";
        }
        if (ch === "]" && f.phase === "open") {
          if (minItems > 0) return "fail";
          t.frames.pop();
          return "ok";
        }
        if (f.phase === "open" && maxItems === 0) return "fail";
        f.count++;
        f.phase = "after";
        t.frames.push({ t: "value", node: f.node.items });
        continue; // `ch` starts the item
      }
    }
  }
}

type StringFrame = Extract<Frame, { t: "string" }>;

/** More characters can no longer change what may follow (no maxLength, minLength reached). */
const lengthSettled = (f: StringFrame) => f.max === null && f.len >= f.min;

const isHighSurrogate = (u: number) => u >= 0xd800 && u <= 0xdbff;
const isLowSurrogate = (u: number) => u >= 0xdc00 && u <= 0xdfff;

/**
 * Counts UTF-16 unit `u` into the string's code points (a low surrogate right after a high one
 * completes it, counting nothing); false when that passes maxLength.
 */
function countUnit(f: StringFrame, u: number): boolean {
  const pairs = f.high && isLowSurrogate(u);
  if (!pairs) {
    if (f.max !== null && f.len >= f.max) return false;
    f.len++;
  }
  f.high = !pairs && isHighSurrogate(u);
  return true;
}

/** Properties that may come next after property index `next`: optional ones up to the first required one. */
function keyChoices(props: readonly { required: boolean }[], next: number): number[] {
  const out: number[] = [];
  for (let i = next; i < props.length; i++) {
    out.push(i);
    if (props[i]!.required) break;
  }
  return out;
}

const requiredLeft = (props: readonly { required: boolean }[], next: number) =>
  props.slice(next).some((p) => p.required);

function numberStep(num: NumState, ch: string, integer: boolean): NumState | null {
  const digit = isDigit(ch);
  switch (num) {
    case "minus":
      return digit ? (ch === "0" ? "zero" : "int") : null;
    case "zero":
    case "int":
      if (digit) return num === "int" ? "int" : null;
      if (integer) return null;
      return ch === "." ? "dot" : ch === "e" || ch === "E" ? "e" : null;
    case "dot":
      return digit ? "frac" : null;
    case "frac":
      return digit ? "frac" : ch === "e" || ch === "E" ? "e" : null;
    case "e":
      return ch === "+" || ch === "-" ? "eSign" : digit ? "exp" : null;
    case "eSign":
    case "exp":
      return digit ? "exp" : null;
  }
}

/** The shortest text that completes thread `t`, frame by frame from the innermost. */
function closeThread(t: Thread, minText: readonly string[]): string {
  let out = "";
  const required = (
    props: Extract<SchemaNode, { kind: "object" }>["props"],
    from: number,
    comma: boolean,
  ) => {
    let s = "";
    let first = !comma;
    for (let i = from; i < props.length; i++) {
      if (!props[i]!.required) continue;
      s += `${first ? "" : ","}${props[i]!.keyText}:${minText[props[i]!.node.id]!}`;
      first = false;
    }
    return s;
  };
  for (let d = t.frames.length - 1; d >= 0; d--) {
    const f = t.frames[d]!;
    switch (f.t) {
      case "value":
        out += minText[f.node.id]!;
        break;
      case "string": {
        // Finish an escape (zeros for missing hex digits; a code point, or the low half of a
        // pair), then fill up to minLength (room under maxLength was checked as it was written).
        let len = f.len;
        if (f.hexLeft > 0) {
          out += "0".repeat(f.hexLeft);
          const unit = f.hex * 16 ** f.hexLeft;
          if (!(f.high && isLowSurrogate(unit))) len++;
        } else if (f.escape) {
          out += "n";
          len++;
        }
        out += `${STRING_FILL.repeat(Math.max(0, f.min - len))}"`;
        break;
      }
      case "number":
        if (f.num === "minus" || f.num === "dot" || f.num === "e" || f.num === "eSign") out += "0";
        break;
      case "literal": {
        const shortest = f.texts.reduce((a, b) => (b.length < a.length ? b : a));
        out += shortest.slice(f.matched.length);
        break;
      }
      case "object": {
        const props = f.node.props;
        if (f.phase === "open") out += required(props, f.next, false);
        else if (f.phase === "after") out += required(props, f.next, true);
        else if (f.phase === "comma") {
          // A key must come now: the next required one, else the first that may.
          const rest = required(props, f.next, false);
          if (rest) out += rest;
          else {
            const p = props[keyChoices(props, f.next)[0]!]!;
            out += `${p.keyText}:${minText[p.node.id]!}`;
          }
        } else {
          // In a key or after it: finish the shortest key that fits, its value, then what is required after it.
          let i = f.chosen;
          if (f.phase === "key") {
            const fits = keyChoices(props, f.next).filter((j) => props[j]!.keyText.startsWith(f.key));
            i = fits.reduce((a, b) => (props[b]!.keyText.length < props[a]!.keyText.length ? b : a));
            out += props[i]!.keyText.slice(f.key.length);
          }
          out += `:${minText[props[i]!.node.id]!}${required(props, i + 1, true)}`;
        }
        out += "}";
        break;
      }
      case "array": {
        const need = Math.max(0, f.node.minItems - f.count);
        const item = minText[f.node.items.id]!;
        if (f.phase === "comma") out += Array.from({ length: Math.max(1, need) }, () => item).join(",");
        else if (need > 0)
          out += (f.phase === "after" ? "," : "") + Array.from({ length: need }, () => item).join(",");
        out += "]";
        break;
      }
    }
  }
  return out;
}
