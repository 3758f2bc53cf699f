/**
 * The JSON Schema subset that `response_format: {"type": "json_schema"}` decodes under constraint,
 * compiled into a small tree (`SchemaNode`) that ./json-schema-prefix.ts walks character by
 * character. Anything outside the subset is refused by name (`SchemaError`) rather than ignored:
 * an ignored keyword would let through answers the schema forbids.
 *
 * Supported (JSON Schema 2020-12 meaning; OpenAI's structured-outputs subset minus number bounds,
 * string patterns and formats):
 * - `type`: object, array, string, number, integer, boolean, null, or a list of them (= anyOf);
 * - strings: `minLength`, `maxLength` (in Unicode code points, as JSON Schema counts: a surrogate
 *   pair, written raw or as two \u escapes, is one);
 * - objects: `properties`, `required` (names among the properties), `additionalProperties` (a
 *   boolean; no extra keys are ever generated). Keys come in the order of `properties`;
 * - arrays: `items` (one schema), `minItems`, `maxItems`;
 * - `enum`, `const` (any JSON values; generated as their canonical JSON text);
 * - `anyOf`; local `$ref` ("#", "#/$defs/NAME", "#/definitions/NAME"), not recursive;
 * - annotations, ignored: title, description, $schema, $id, $comment, examples, default, $defs,
 *   definitions.
 * The root must be an object schema (as OpenAI requires).
 */

export type SchemaNode =
  | { id: number; kind: "object"; props: SchemaProp[] }
  | { id: number; kind: "array"; items: SchemaNode; minItems: number; maxItems: number | null }
  /** maxLength null: unbounded. */
  | { id: number; kind: "string"; minLength: number; maxLength: number | null }
  | { id: number; kind: "number"; integer: boolean }
  /** enum, const, boolean, null: one of these JSON texts, exactly. */
  | { id: number; kind: "literal"; texts: string[] }
  /** Options are never anyOf themselves (nested anyOf is flattened). */
  | { id: number; kind: "anyOf"; options: SchemaNode[] };

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

export interface SchemaProp {
  name: string;
  /** The key as generated: JSON.stringify(name), quotes included. */
  keyText: string;
  node: SchemaNode;
  required: boolean;
}

export interface CompiledSchema {
  /** The schema's JSON text (what names it in caches: equal texts compile alike). */
  source: string;
  root: SchemaNode;
  /** Shortest JSON text of each node's values, by node id (the closing text uses it). */
  minText: string[];
}

/** A schema outside the subset, or malformed; `message` names the keywords and where (JSON pointer). */
export class SchemaError extends Error {
  override readonly name = "SchemaError";
}

const TYPES = ["object", "array", "string", "number", "integer", "boolean", "null"] as const;
type TypeName = (typeof TYPES)[number];

const ANNOTATIONS = new Set([
  "title",
  "description",
  "$schema",
  "$id",
  "$comment",
  "examples",
  "default",
  "$defs",
  "definitions",
]);
const KEYWORDS: Record<string, Set<string>> = {
  any: new Set(["type", "enum", "const", "anyOf", "$ref"]),
  object: new Set(["properties", "required", "additionalProperties"]),
  array: new Set(["items", "minItems", "maxItems"]),
  string: new Set(["minLength", "maxLength"]),
};
/**
 * Keywords of JSON Schema's validation vocabulary this subset refuses (an ignored one would let
 * answers through that the schema forbids): named in the error so a client knows what to drop.
 */
export const REFUSED_KEYWORDS = [
  "minimum",
  "maximum",
  "exclusiveMinimum",
  "exclusiveMaximum",
  "multipleOf",
  "pattern",
  "format",
  "oneOf",
  "allOf",
  "not",
  "if",
  "then",
  "else",
  "patternProperties",
  "propertyNames",
  "uniqueItems",
  "contains",
  "prefixItems",
  "minProperties",
  "maxProperties",
] as const;
/** Longest minLength a string may ask for (characters of the shortest answer). */
const MAX_MIN_LENGTH = 4096;
/** Deepest nesting of schemas (the recognizer's stack and the compiler's recursion stay small). */
const MAX_DEPTH = 64;
/** Longest shortest-answer a schema may have (characters; a token each at worst). */
const MAX_MIN_TEXT = 32_768;
/** Most values an enum may list. */
const MAX_ENUM = 1000;
/** Most nodes a compiled schema may have (refs are inlined, so a schema can multiply). */
const MAX_NODES = 10_000;

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** Compiles `schema` (parsed JSON); throws SchemaError naming what is unsupported or malformed. */
export function compileSchema(schema: unknown): CompiledSchema {
  if (!isPlainObject(schema)) throw new SchemaError("the schema must be a JSON object");
  const minText: string[] = [];
  const nodes: SchemaNode[] = [];
  const add = (n: DistributiveOmit<SchemaNode, "id">, min: string): SchemaNode => {
    if (nodes.length >= MAX_NODES) throw new SchemaError(`the schema has more than ${MAX_NODES} nodes`);
    if (min.length > MAX_MIN_TEXT) {
      throw new SchemaError(
        `the shortest answer the schema allows is longer than ${MAX_MIN_TEXT} characters`,
      );
    }
    const node = { ...n, id: nodes.length } as SchemaNode;
    nodes.push(node);
    minText.push(min);
    return node;
  };
  const refsInUse: string[] = [];

  const resolveRef = (ref: unknown, at: string): Record<string, unknown> => {
    if (typeof ref !== "string") throw new SchemaError(`${at}: $ref must be a string`);
    if (ref === "#") return schema;
    const m = /^#\/(\$defs|definitions)\/([^/]+)$/.exec(ref);
    const defs = m ? schema[m[1]!] : undefined;
    const name = m ? m[2]!.replace(/~1/g, "/").replace(/~0/g, "~") : "";
    const target = isPlainObject(defs) && Object.hasOwn(defs, name) ? defs[name] : undefined;
    if (!isPlainObject(target)) {
      throw new SchemaError(
        `${at}: $ref ${JSON.stringify(ref.slice(0, 80))} does not name a local definition`,
      );
    }
    return target;
  };

  let depth = 0;
  const compile = (s: unknown, at: string): SchemaNode => {
    if (depth >= MAX_DEPTH) throw new SchemaError(`the schema nests deeper than ${MAX_DEPTH} levels`);
    depth++;
    try {
      return compileNode(s, at);
    } finally {
      depth--;
    }
  };

  const compileNode = (s: unknown, at: string): SchemaNode => {
    if (!isPlainObject(s)) throw new SchemaError(`${at}: a schema must be a JSON object`);
    const keys = Object.keys(s);
    const types = typesOf(s.type, at);
    const allowed = new Set([...KEYWORDS.any!]);
    if (types.includes("object")) for (const k of KEYWORDS.object!) allowed.add(k);
    if (types.includes("array")) for (const k of KEYWORDS.array!) allowed.add(k);
    if (types.includes("string")) for (const k of KEYWORDS.string!) allowed.add(k);
    const shapes = ["$ref", "enum", "const", "anyOf"].filter((k) => k in s);
    if (shapes.length + (types.length > 0 ? 1 : 0) === 0) {
      const other = keys.filter((k) => !ANNOTATIONS.has(k)).slice(0, 10);
      throw new SchemaError(
        `${at}: a schema needs type, enum, const, anyOf or $ref${other.length ? ` (unsupported here: ${other.map((k) => JSON.stringify(k.slice(0, 40))).join(", ")})` : ""}`,
      );
    }
    const unsupported = keys.filter((k) => !allowed.has(k) && !ANNOTATIONS.has(k));
    if (unsupported.length > 0) {
      throw new SchemaError(
        `${at}: unsupported JSON Schema keyword${unsupported.length > 1 ? "s" : ""} ${unsupported
          .slice(0, 10)
          .map((k) => JSON.stringify(k.slice(0, 40)))
          .join(", ")}${types.length === 0 ? "" : ` (for type ${types.join(", ")})`}`,
      );
    }
    if (
      shapes.length > 1 ||
      (shapes.length === 1 && shapes[0] !== "enum" && shapes[0] !== "const" && types.length > 0)
    ) {
      throw new SchemaError(
        `${at}: combine at most one of type, anyOf, $ref (enum/const may come with type)`,
      );
    }
    if ("$ref" in s) {
      const ref = String(s.$ref);
      if (refsInUse.includes(ref))
        throw new SchemaError(`${at}: recursive $ref ${JSON.stringify(ref.slice(0, 80))} is not supported`);
      refsInUse.push(ref);
      try {
        return compile(resolveRef(s.$ref, at), `${at}/$ref`);
      } finally {
        refsInUse.pop();
      }
    }
    if ("enum" in s || "const" in s) {
      const values = "const" in s ? [s.const] : s.enum;
      if (Array.isArray(values) && values.length > MAX_ENUM) {
        throw new SchemaError(`${at}/enum: at most ${MAX_ENUM} values are supported`);
      }
      if (!Array.isArray(values) || values.length === 0)
        throw new SchemaError(`${at}/enum: must be a non-empty array`);
      const texts = [...new Set(values.map((v) => JSON.stringify(v)))];
      for (const v of values) {
        if (types.length > 0 && !types.some((t) => hasType(v, t))) {
          throw new SchemaError(
            `${at}: enum/const value ${JSON.stringify(v).slice(0, 40)} is not of type ${types.join(", ")}`,
          );
        }
      }
      return add(
        { kind: "literal", texts },
        texts.reduce((a, b) => (b.length < a.length ? b : a)),
      );
    }
    if ("anyOf" in s) {
      if (!Array.isArray(s.anyOf) || s.anyOf.length === 0)
        throw new SchemaError(`${at}/anyOf: must be a non-empty array`);
      return anyOf(s.anyOf.map((o, i) => compile(o, `${at}/anyOf/${i}`)));
    }
    if (types.length > 1) return anyOf(types.map((t) => compileType(s, t, at)));
    return compileType(s, types[0]!, at);
  };

  const anyOf = (options: SchemaNode[]): SchemaNode => {
    const flat = options.flatMap((o) => (o.kind === "anyOf" ? o.options : [o]));
    if (flat.length === 1) return flat[0]!;
    const min = flat.map((o) => minText[o.id]!).reduce((a, b) => (b.length < a.length ? b : a));
    return add({ kind: "anyOf", options: flat }, min);
  };

  const compileType = (s: Record<string, unknown>, t: TypeName, at: string): SchemaNode => {
    switch (t) {
      case "string": {
        const minLength = count(s.minLength, 0, `${at}/minLength`);
        const maxLength = s.maxLength === undefined ? null : count(s.maxLength, 0, `${at}/maxLength`);
        if (maxLength !== null && maxLength < minLength)
          throw new SchemaError(`${at}: maxLength is below minLength`);
        if (minLength > MAX_MIN_LENGTH)
          throw new SchemaError(`${at}/minLength: at most ${MAX_MIN_LENGTH} is supported`);
        return add({ kind: "string", minLength, maxLength }, `"${STRING_FILL.repeat(minLength)}"`);
      }
      case "number":
      case "integer":
        return add({ kind: "number", integer: t === "integer" }, "0");
      case "boolean":
        return add({ kind: "literal", texts: ["true", "false"] }, "true");
      case "null":
        return add({ kind: "literal", texts: ["null"] }, "null");
      case "array": {
        const minItems = count(s.minItems, 0, `${at}/minItems`);
        const maxItems = s.maxItems === undefined ? null : count(s.maxItems, 0, `${at}/maxItems`);
        if (maxItems !== null && maxItems < minItems)
          throw new SchemaError(`${at}: maxItems is below minItems`);
        if (minItems > 256) throw new SchemaError(`${at}/minItems: at most 256 is supported`);
        if (s.items === undefined) throw new SchemaError(`${at}: an array schema needs items`);
        const items = compile(s.items, `${at}/items`);
        if ((minText[items.id]!.length + 1) * minItems > MAX_MIN_TEXT) {
          throw new SchemaError(
            `${at}: the shortest answer the schema allows is longer than ${MAX_MIN_TEXT} characters`,
          );
        }
        const min = `[${Array.from({ length: minItems }, () => minText[items.id]!).join(",")}]`;
        return add({ kind: "array", items, minItems, maxItems }, min);
      }
      case "object": {
        const props = s.properties === undefined ? {} : s.properties;
        if (!isPlainObject(props)) throw new SchemaError(`${at}/properties: must be an object`);
        const required = s.required === undefined ? [] : s.required;
        if (!Array.isArray(required) || !required.every((r) => typeof r === "string")) {
          throw new SchemaError(`${at}/required: must be an array of property names`);
        }
        const unknown = required.filter((r) => !Object.hasOwn(props, r));
        if (unknown.length > 0) {
          throw new SchemaError(
            `${at}/required: ${JSON.stringify(unknown[0]!.slice(0, 40))} is not among the properties`,
          );
        }
        if (s.additionalProperties !== undefined && typeof s.additionalProperties !== "boolean") {
          throw new SchemaError(`${at}/additionalProperties: only true or false is supported (not a schema)`);
        }
        const list: SchemaProp[] = Object.entries(props).map(([name, p]) => ({
          name,
          keyText: JSON.stringify(name),
          node: compile(p, `${at}/properties/${name.replace(/~/g, "~0").replace(/\//g, "~1")}`),
          required: required.includes(name),
        }));
        const minLength = list
          .filter((p) => p.required)
          .reduce((n, p) => n + p.keyText.length + minText[p.node.id]!.length + 2, 2);
        if (minLength > MAX_MIN_TEXT) {
          throw new SchemaError(
            `${at}: the shortest answer the schema allows is longer than ${MAX_MIN_TEXT} characters`,
          );
        }
        const min = `{${list
          .filter((p) => p.required)
          .map((p) => `${p.keyText}:${minText[p.node.id]!}`)
          .join(",")}}`;
        return add({ kind: "object", props: list }, min);
      }
    }
  };

  const root = compile(schema, "#");
  if (root.kind !== "object") throw new SchemaError("#: the root schema must be of type object");
  return { source: JSON.stringify(schema), root, minText };
}

function typesOf(t: unknown, at: string): TypeName[] {
  if (t === undefined) return [];
  const list = Array.isArray(t) ? t : [t];
  if (list.length === 0 || !list.every((x): x is TypeName => TYPES.includes(x as TypeName))) {
    throw new SchemaError(`${at}/type: must be one of ${TYPES.join(", ")} or a list of them`);
  }
  return [...new Set(list)];
}

/** What the shortest answer fills a string up to its minLength with (one code point each). */
export const STRING_FILL = "a";

function count(v: unknown, min: number, at: string): number {
  if (v === undefined) return min;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0)
    throw new SchemaError(`${at}: must be a non-negative integer`);
  return v;
}

function hasType(v: unknown, t: TypeName): boolean {
  switch (t) {
    case "null":
      return v === null;
    case "boolean":
      return typeof v === "boolean";
    case "string":
      return typeof v === "string";
    case "number":
      return typeof v === "number";
    case "integer":
      return typeof v === "number" && Number.isInteger(v);
    case "array":
      return Array.isArray(v);
    case "object":
      return isPlainObject(v);
  }
}
