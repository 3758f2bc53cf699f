/**
 * An incremental recognizer of JSON text (RFC 8259) whose top-level value is an object, as
 * OpenAI's `response_format: {"type": "json_object"}` asks: fed characters one at a time, it says
 * whether the text so far is still a prefix of some valid JSON object text, and whether it is
 * complete. A pushdown automaton over characters; `clone()` is cheap (a short stack), so a token
 * mask can try every vocabulary entry's text from the current state. A key repeated within one
 * object is refused (RFC 8259 says keys SHOULD be unique; a model at temperature 0 otherwise loops
 * over them), compared as written (an escaped spelling of the same key is not caught).
 *
 * Used by ./json-mask.ts for response_format json_object.
 */

type Mode =
  | "start" // before the top-level object: whitespace, then "{"
  | "value" // a value is expected (after ":" or ",")
  | "keyOrEnd" // after "{": a key or "}"
  | "key" // after "," in an object: a key
  | "colon" // after a key
  | "valueOrEnd" // after "[": a value or "]"
  | "after" // after a value: "," or the closing bracket
  | "string"
  | "number"
  | "literal"
  | "done";

const WS = new Set([" ", "\t", "\n", "\r"]);
const ESCAPES = new Set(['"', "\\", "/", "b", "f", "n", "r", "t"]);
const HEX = /^[0-9a-fA-F]$/;

export class JsonPrefix {
  private mode: Mode = "start";
  /** Open containers, innermost last: "{" or "[". */
  private stack: string[] = [];
  /**
   * The keys written so far in each open object, innermost last, as written (escapes raw). Never
   * mutated in place (replaced on change), so clones share them.
   */
  private keys: readonly (readonly string[])[] = [];
  /** Inside a key string: its text so far, as written. */
  private keyText = "";
  /** Inside a string: it is an object key (then ":" follows), escape state, \u digits left. */
  private isKey = false;
  private escape = false;
  private hexLeft = 0;
  /** Inside a number: where in -?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)? it is. */
  private num: "minus" | "zero" | "int" | "dot" | "frac" | "e" | "eSign" | "exp" = "int";
  /** Inside true/false/null: the characters still to come. */
  private rest = "";
  /** Once a character is refused, the recognizer stays refused. */
  private failed = false;
  /** Insignificant whitespace characters in the current run. */
  private wsRun = 0;

  /**
   * `maxWhitespaceRun`: longest run of insignificant whitespace allowed, and then only spaces and
   * newlines (compact answers under constraint); omitted = any JSON whitespace, any amount.
   */
  constructor(private readonly maxWhitespaceRun = Number.POSITIVE_INFINITY) {}

  clone(): JsonPrefix {
    const c = Object.create(JsonPrefix.prototype) as JsonPrefix;
    Object.assign(c, this);
    c.stack = [...this.stack];
    return c;
  }

  /** The text so far is a complete JSON object (only whitespace may follow). */
  get complete(): boolean {
    return this.mode === "done" && !this.failed;
  }

  /** Inside a string, not in an escape: any character but '"', '\\' and controls continues it and changes nothing. */
  get inFreeString(): boolean {
    return this.mode === "string" && !this.escape && this.hexLeft === 0 && !this.failed;
  }

  /** Equal keys mean equal futures (what a token mask may cache on). */
  key(): string {
    // The keys written decide which keys may still come (JSON.stringify keeps them apart).
    const keys =
      this.keys.some((k) => k.length > 0) || this.keyText ? JSON.stringify([this.keys, this.keyText]) : "";
    return `${this.mode}|${this.stack.join("")}|${this.isKey ? 1 : 0}${this.escape ? 1 : 0}${this.hexLeft}|${this.num}|${this.rest}|${this.wsRun}|${this.failed ? 1 : 0}|${keys}`;
  }

  /** Feeds `text`; false (and refused for good) as soon as it stops being a valid prefix. */
  push(text: string): boolean {
    for (const ch of text) if (!this.step(ch)) return false;
    return true;
  }

  /** Shortest text that completes the value from here (to close it when the token budget runs out). */
  closing(): string {
    if (this.failed) return "";
    let out = "";
    const c = this.clone();
    const feed = (s: string) => {
      c.push(s);
      out += s;
    };
    for (let guard = 0; guard < 10_000 && c.mode !== "done"; guard++) {
      switch (c.mode) {
        case "start":
          feed("{");
          break;
        case "string":
          // A key that would repeat one of its object's is lengthened until it does not.
          feed(c.hexLeft > 0 ? "0".repeat(c.hexLeft) : c.escape ? "n" : c.repeatsKey(c.keyText) ? "0" : '"');
          break;
        case "number":
          feed(c.num === "minus" || c.num === "dot" || c.num === "e" || c.num === "eSign" ? "0" : " ");
          break;
        case "literal":
          feed(c.rest);
          break;
        case "colon":
          feed(":");
          break;
        case "value":
          feed("0");
          break;
        case "key":
          feed('"');
          break;
        case "keyOrEnd":
        case "after":
          feed(c.stack.at(-1) === "{" ? "}" : "]");
          break;
        case "valueOrEnd":
          feed("]");
          break;
      }
    }
    return out.replace(/ $/, "");
  }

  /** Whether `key` (as written) is already a key of the innermost open object. */
  private repeatsKey(key: string): boolean {
    return this.isKey && (this.keys.at(-1)?.includes(key) ?? false);
  }

  private fail(): boolean {
    this.failed = true;
    return false;
  }

  /** Insignificant whitespace `ch`, within the run limit. */
  private space(ch: string): boolean {
    if (this.maxWhitespaceRun === Number.POSITIVE_INFINITY) return true;
    if ((ch !== " " && ch !== "\n") || this.wsRun >= this.maxWhitespaceRun) return this.fail();
    this.wsRun++;
    return true;
  }

  private step(ch: string): boolean {
    if (this.failed) return false;
    if (!WS.has(ch)) this.wsRun = 0;
    switch (this.mode) {
      case "start":
        if (WS.has(ch)) return this.space(ch);
        if (ch !== "{") return this.fail();
        this.stack.push("{");
        this.keys = [...this.keys, []];
        this.mode = "keyOrEnd";
        return true;
      case "done":
        return WS.has(ch) ? this.space(ch) : this.fail();
      case "string":
        return this.stringChar(ch);
      case "literal":
        if (this.rest[0] !== ch) return this.fail();
        this.rest = this.rest.slice(1);
        if (this.rest === "") this.mode = "after";
        return true;
      case "number":
        if (this.numberChar(ch)) return true;
        if (this.num === "minus" || this.num === "dot" || this.num === "e" || this.num === "eSign") {
          return this.fail();
        }
        this.mode = "after";
        return this.step(ch);
    }
    if (WS.has(ch)) return this.space(ch);
    switch (this.mode) {
      case "keyOrEnd":
        if (ch === "}") return this.close("{");
        return this.openKey(ch);
      case "key":
        return this.openKey(ch);
      case "colon":
        if (ch !== ":") return this.fail();
        this.mode = "value";
        return true;
      case "valueOrEnd":
        if (ch === "]") return this.close("[");
        return this.value(ch);
      case "value":
        return this.value(ch);
      case "after":
        if (ch === ",") {
          this.mode = this.stack.at(-1) === "{" ? "key" : "value";
          return true;
        }
        if (ch === "}") return this.close("{");
        if (ch === "]") return this.close("[");
        return this.fail();
    }
    return this.fail();
  }

  private openKey(ch: string): boolean {
    if (ch !== '"') return this.fail();
    this.mode = "string";
    this.isKey = true;
    this.keyText = "";
    return true;
  }

  private close(open: string): boolean {
    if (this.stack.at(-1) !== open) return this.fail();
    this.stack.pop();
    if (open === "{") this.keys = this.keys.slice(0, -1);
    this.mode = this.stack.length === 0 ? "done" : "after";
    return true;
  }

  private value(ch: string): boolean {
    if (ch === "{" || ch === "[") {
      this.stack.push(ch);
      if (ch === "{") this.keys = [...this.keys, []];
      this.mode = ch === "{" ? "keyOrEnd" : "valueOrEnd";
      return true;
    }
    if (ch === '"') {
      this.mode = "string";
      this.isKey = false;
      return true;
    }
    if (ch === "-" || (ch >= "0" && ch <= "9")) {
      this.mode = "number";
      this.num = ch === "-" ? "minus" : ch === "0" ? "zero" : "int";
      return true;
    }
    const lit = ch === "t" ? "rue" : ch === "f" ? "alse" : ch === "n" ? "ull" : null;
    if (lit === null) return this.fail();
    this.mode = "literal";
    this.rest = lit;
    return true;
  }

  private stringChar(ch: string): boolean {
    if (!this.isKey) return this.stringCharOf(ch);
    if (ch === '"' && !this.escape && this.hexLeft === 0) {
      if (this.repeatsKey(this.keyText)) return this.fail();
      this.keys = [...this.keys.slice(0, -1), [...this.keys.at(-1)!, this.keyText]];
      this.keyText = "";
      return this.stringCharOf(ch);
    }
    if (!this.stringCharOf(ch)) return false;
    this.keyText += ch;
    return true;
  }

  private stringCharOf(ch: string): boolean {
    if (this.hexLeft > 0) {
      if (!HEX.test(ch)) return this.fail();
      this.hexLeft--;
      return true;
    }
    if (this.escape) {
      this.escape = false;
      if (ch === "u") this.hexLeft = 4;
      else if (!ESCAPES.has(ch)) return this.fail();
      return true;
    }
    if (ch === "\\") {
      this.escape = true;
      return true;
    }
    if (ch === '"') {
      this.mode = this.isKey ? "colon" : "after";
      return true;
    }
    // Control characters must be escaped inside strings.
    return ch.codePointAt(0)! >= 0x20 || this.fail();
  }

  private numberChar(ch: string): boolean {
    const digit = ch >= "0" && ch <= "9";
    switch (this.num) {
      case "minus":
        if (!digit) return false;
        this.num = ch === "0" ? "zero" : "int";
        return true;
      case "zero":
      case "int":
        if (digit && this.num === "int") return true;
        if (ch === ".") this.num = "dot";
        else if (ch === "e" || ch === "E") this.num = "e";
        else return false;
        return true;
      case "dot":
      case "frac":
        if (digit) {
          this.num = "frac";
          return true;
        }
        if (this.num === "frac" && (ch === "e" || ch === "E")) {
          this.num = "e";
          return true;
        }
        return false;
      case "e":
        if (ch === "+" || ch === "-") this.num = "eSign";
        else if (digit) this.num = "exp";
        else return false;
        return true;
      case "eSign":
      case "exp":
        if (!digit) return false;
        this.num = "exp";
        return true;
    }
  }
}
