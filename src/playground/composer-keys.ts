/**
 * The composer's keyboard rule: Enter sends, Shift+Enter inserts a newline. Enter that confirms an
 * input method's composition (CJK input; `isComposing`, or keyCode 229 in older engines) is the
 * composition's, never a send.
 */
export function isSendKey(e: Pick<KeyboardEvent, "key" | "shiftKey" | "isComposing" | "keyCode">): boolean {
  return e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229;
}
