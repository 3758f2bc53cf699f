/**
 * A chat request's prompt: rendered with the deployment's chat template, tokenized (message
 * contents never yield control tokens, see src/runtime/chat.ts), checked against the context, and
 * the completion length that fits after it.
 */
import type { Manifest } from "../format/manifest.ts";
import { promptHead, promptText, promptTokens, type RenderedPrompt } from "../runtime/chat.ts";
import { maxTokenBytes, type Tokenizer } from "../runtime/tokenizer/index.ts";
import { ApiError, badRequest } from "./errors.ts";

export const DEFAULT_MAX_TOKENS = 256;
/** Characters of a long prompt tokenized first to see whether it can fit at all. */
const PROMPT_HEAD_CHARS_PER_TOKEN = 16;

/**
 * The context every live variant can serve: the smallest of what each variant's engine gets
 * (`contextFor`: EngineCache.contextFor, the model's context capped by the engine's and the memory
 * budget).
 */
export function contextOf(variants: Manifest[], contextFor: (m: Manifest) => number): number {
  return Math.min(...variants.map(contextFor));
}

/**
 * The context a request may fill (prompt plus completion, tokens): a pinned variant's own (it is
 * never swapped, ./router.ts), else contextOf every live variant (routing and load fallback may pick
 * any). GET /v1/models reports it per entry as `context_length`, so both answer from this function.
 */
export function requestContext(
  variants: Manifest[],
  pinned: string | null,
  contextFor: (m: Manifest) => number,
): number {
  const pin = pinned === null ? undefined : variants.find((m) => m.variant === pinned);
  return contextOf(pin ? [pin] : variants, contextFor);
}

/**
 * Prompt tokens and the completion budget. `requested` is max_completion_tokens or max_tokens
 * (`param` names which). Throws 400 context_length_exceeded when the prompt leaves no room, 400
 * naming `param` when the request asks for more than the context, 400 naming `promptParam` when the
 * prompt encodes to no tokens (an empty completions prompt on a model without a BOS token: there is
 * nothing to predict the first token from).
 */
export function planPrompt(
  rendered: RenderedPrompt,
  tok: Tokenizer,
  context: number,
  requested: { value: number | null; param: string },
  promptParam = "messages",
): { prompt: number[]; maxTokens: number } {
  // "your messages use" / "your prompt uses": the parameter's name is the grammatical subject.
  const verb = promptParam === "messages" ? "use" : "uses";
  const tooLong = (used: string) =>
    new ApiError(
      400,
      `This model's maximum context length is ${context} tokens; your ${promptParam} ${verb} ${used}.`,
      "invalid_request_error",
      "context_length_exceeded",
      promptParam,
    );
  // A prompt far over the context is refused without tokenizing it whole (that costs CPU in
  // proportion to its size: ~5 s per MB of a whitespace run): from its head where the head holds
  // more tokens than the context, else by its length where no token covers enough of it.
  const chars = promptText(rendered).length;
  const headChars = context * PROMPT_HEAD_CHARS_PER_TOKEN;
  if (chars > headChars) {
    const head = promptTokens(promptHead(rendered, headChars), tok).length;
    if (head > context) throw tooLong(`at least ${head - 1}`);
    const mostBytes = maxTokenBytes(tok);
    if (chars > context * mostBytes)
      throw tooLong(
        `more than ${context} tokens (${chars} characters; one token covers at most ${mostBytes} bytes)`,
      );
  }
  const prompt = promptTokens(rendered, tok);
  if (prompt.length === 0)
    throw badRequest(
      `${promptParam} is empty: it encodes to no tokens, and this model has no BOS token to start a completion from.`,
      promptParam,
    );
  if (prompt.length >= context) throw tooLong(String(prompt.length));
  if (requested.value !== null && requested.value > context) {
    throw badRequest(
      `${requested.param} is ${requested.value}; this model's context holds ${context} tokens in all.`,
      requested.param,
    );
  }
  return { prompt, maxTokens: Math.min(requested.value ?? DEFAULT_MAX_TOKENS, context - prompt.length) };
}
