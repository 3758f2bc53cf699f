/**
 * Server-sent events as OpenAI streams them: `data: <payload>` lines, events separated by a blank
 * line (https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation;
 * only the `data` field matters here). Yields each event's data, multi-line data joined by "\n";
 * events without data (comments, keep-alives) are skipped, and so is an event the body ends in the
 * middle of (as the spec says). Ends when the body ends; a reader
 * cancelled through an AbortSignal rejects with the signal's reason.
 */
export async function* sseData(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  let heldCR = "";
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      // Normalise CR LF and lone CR line ends to LF so one separator search suffices; a CR at the
      // end of a read waits for the next, which may begin with its LF.
      let text = heldCR + decoder.decode(value, { stream: true });
      heldCR = text.endsWith("\r") ? "\r" : "";
      if (heldCR) text = text.slice(0, -1);
      buf += text.replace(/\r\n?/g, "\n");
      for (let end = buf.indexOf("\n\n"); end >= 0; end = buf.indexOf("\n\n")) {
        const data = eventData(buf.slice(0, end));
        buf = buf.slice(end + 2);
        if (data !== null) yield data;
      }
    }
  } finally {
    reader.releaseLock();
  }
}

function eventData(event: string): string | null {
  const lines = event
    .split("\n")
    .filter((l) => l.startsWith("data:"))
    .map((l) => (l.startsWith("data: ") ? l.slice(6) : l.slice(5)));
  return lines.length ? lines.join("\n") : null;
}
