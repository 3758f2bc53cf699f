/**
 * Which part of a chat's history the playground sends. A conversation that outgrows the model's
 * context is refused (400 context_length_exceeded from the API, the same error from the in-browser
 * engine); the page then stops sending its oldest exchange (a user turn and the answers to it),
 * again until the request fits, always keeping the system prompt and the newest question, and
 * tells the user. The page keeps the turns on screen; only what is sent shrinks.
 */

export interface Turn {
  role: "system" | "user" | "assistant";
  content: string;
}

/** OpenAI's code for a prompt longer than the model's context (the API's and the engine's). */
export const CONTEXT_OVERFLOW = "context_length_exceeded";

/** The conversation's rendered prompt does not fit the context (thrown by the in-browser engine). */
export class ContextOverflowError extends Error {
  readonly code = CONTEXT_OVERFLOW;
  constructor(
    readonly promptTokens: number,
    readonly contextTokens: number,
  ) {
    super(
      `This model's maximum context length is ${contextTokens} tokens; the conversation uses ${promptTokens}.`,
    );
    this.name = "ContextOverflowError";
  }
}

/**
 * Whether `e` says the prompt was too long. Checked by `code`, not class: the engine bundle and the
 * page bundle each carry their own copy of ContextOverflowError.
 */
export function isContextOverflow(e: unknown): boolean {
  return typeof e === "object" && e !== null && (e as { code?: unknown }).code === CONTEXT_OVERFLOW;
}

/** The messages to send: the system prompt (when set), then history without its `dropped` oldest turns. */
export function conversationWindow(system: string, history: readonly Turn[], dropped: number): Turn[] {
  const kept = history.slice(dropped);
  return system ? [{ role: "system", content: system }, ...kept] : kept;
}

/**
 * `dropped` after leaving out one more exchange: the oldest sent user turn and every turn up to the
 * next user turn. Null when the newest user turn is the only one left (nothing more can go).
 */
export function dropOldestExchange(history: readonly Turn[], dropped: number): number | null {
  const lastUser = history.findLastIndex((t) => t.role === "user");
  let next = dropped + 1;
  while (next < history.length && history[next]!.role !== "user") next++;
  return next > lastUser ? null : next;
}
