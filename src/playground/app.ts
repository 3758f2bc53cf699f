/**
 * The playground page (src/playground/index.html): a chat with the API. The conversation so far is
 * sent with each message to POST /v1/chat/completions (streamed), or, with "run in this browser",
 * generated in the page by the engine bundle (/playground/engine.js, loaded on first use). Each
 * answer shows the variant that served it and its timings. When the API answers 401 the page asks
 * for a key and retries with `Authorization: Bearer <key>`. When the conversation outgrows the
 * model's context, the oldest exchanges stop being sent (./history-window.ts) and the answer says so.
 *
 * Bundled by scripts/build-playground.ts into build/playground/app.js.txt, served by the Worker at
 * /playground/app.js. `document.body.dataset.state` is idle | running | done | stopped | error.
 */
import { browserKeyStore } from "./api-key.ts";
import { ApiError, type ChatTurn, streamChat, type Tier } from "./chat-api.ts";
import { isSendKey } from "./composer-keys.ts";
import type * as Engine from "./engine.ts";
import { conversationWindow, dropOldestExchange, isContextOverflow } from "./history-window.ts";
import { keyDialog } from "./key-dialog.ts";
import { fetchDeployment, fillTierMenu } from "./tier-menu.ts";
import { type AssistantTurn, appendAssistantTurn, appendUserTurn } from "./view.ts";

/** A separate bundle (it inlines the WASM kernels), fetched only when the user runs in the browser. */
const ENGINE_URL = "/playground/engine.js";

function byId<T extends HTMLElement>(id: string, kind: { new (): T; prototype: T }): T {
  const el = document.getElementById(id);
  if (!(el instanceof kind)) throw new Error(`the page has no ${kind.name} #${id}`);
  return el;
}

const ui = {
  tier: byId("tier", HTMLSelectElement),
  budget: byId("budget", HTMLInputElement),
  budgetValue: byId("budget-value", HTMLOutputElement),
  maxTokens: byId("max-tokens", HTMLInputElement),
  maxTokensNote: byId("max-tokens-note", HTMLElement),
  temperature: byId("temperature", HTMLInputElement),
  temperatureNote: byId("temperature-note", HTMLElement),
  local: byId("local", HTMLInputElement),
  backendWrap: byId("backend-wrap", HTMLLabelElement),
  backend: byId("backend", HTMLSelectElement),
  system: byId("system", HTMLTextAreaElement),
  log: byId("log", HTMLOListElement),
  empty: byId("empty", HTMLParagraphElement),
  composer: byId("composer", HTMLFormElement),
  message: byId("message", HTMLTextAreaElement),
  send: byId("send", HTMLButtonElement),
  stop: byId("stop", HTMLButtonElement),
  status: byId("status", HTMLSpanElement),
  newChat: byId("new-chat", HTMLButtonElement),
  keyButton: byId("key-button", HTMLButtonElement),
};

const keys = browserKeyStore();
const askKey = keyDialog(
  {
    dialog: byId("key-dialog", HTMLDialogElement),
    form: byId("key-form", HTMLFormElement),
    reason: byId("key-reason", HTMLParagraphElement),
    input: byId("key-input", HTMLInputElement),
    remember: byId("key-remember", HTMLInputElement),
    cancel: byId("key-cancel", HTMLButtonElement),
    forget: byId("key-forget", HTMLButtonElement),
  },
  keys,
);

/** The finished turns, as the API gets them (the system prompt is added at send time). */
const history: ChatTurn[] = [];
/** The context (tokens) of a request to the API, from GET /v1/models; null until known. */
let serverContext: number | null = null;

/** How many of history's oldest turns are no longer sent (they outgrew the model's context). */
let dropped = 0;
let running: AbortController | null = null;

const ms = (x: number) => `${Math.round(x)} ms`;

/**
 * The number in `input` within [min, max], a whole number when `integer` (`fallback` when it is
 * empty or not a number). A value it had to change is written back to the field, and `note` says
 * so (hidden again when the value was fine), so the user sees what is sent instead of a silent fix.
 */
function numberIn(
  input: HTMLInputElement,
  note: HTMLElement,
  range: { min: number; max: number; integer?: boolean; fallback: number; maxWhy?: string },
): number {
  const raw = input.value.trim();
  const n = Number(raw);
  let value: number;
  let why: string | null = null;
  if (raw === "" || !Number.isFinite(n)) {
    value = range.fallback;
    why = "not a number";
  } else if (n < range.min) {
    value = range.min;
    why = `the minimum is ${range.min}`;
  } else if (n > range.max) {
    value = range.max;
    why = range.maxWhy ?? `the maximum is ${range.max}`;
  } else {
    value = range.integer ? Math.round(n) : n;
    if (value !== n) why = "a whole number";
  }
  note.hidden = why === null;
  note.textContent = why === null ? "" : `adjusted to ${value} (${why})`;
  if (why !== null) input.value = String(value);
  return value;
}

function settings() {
  const budget = Number(ui.budget.value);
  const maxTokens = Number(ui.maxTokens.max) || 2048;
  return {
    tier: ui.tier.value as Tier | "auto",
    budgetMs: budget > 0 ? budget : null,
    maxTokens: numberIn(ui.maxTokens, ui.maxTokensNote, {
      min: 1,
      max: maxTokens,
      integer: true,
      fallback: 128,
      ...(serverContext !== null ? { maxWhy: `the model's context is ${serverContext} tokens` } : {}),
    }),
    temperature: numberIn(ui.temperature, ui.temperatureNote, { min: 0, max: 2, fallback: 0 }),
  };
}

function conversation(): ChatTurn[] {
  return conversationWindow(ui.system.value.trim(), history, dropped);
}

/**
 * After a context overflow (`e`): leaves the oldest exchange out of what is sent and says so on
 * `answer`; true to retry. Rethrows `e`, reworded, when only the newest question is left.
 */
function dropForContext(e: unknown, answer: AssistantTurn): boolean {
  if (!isContextOverflow(e)) return false;
  const next = dropOldestExchange(history, dropped);
  if (next === null) {
    const why = e instanceof Error ? e.message : String(e);
    throw new Error(
      `${why} Even without the earlier turns this message does not fit: shorten it or the system prompt.`,
    );
  }
  dropped = next;
  const note = `${dropped} oldest turn${dropped === 1 ? "" : "s"} no longer sent (over the model's context)`;
  answer.setMeta("history", note);
  setStatus(`The conversation outgrew ${contextWords()}: ${note}.`);
  return true;
}

/** "the model's context", with its size in tokens when the API reported it (server answers only). */
function contextWords(): string {
  return serverContext !== null && !ui.local.checked
    ? `the model's context (${serverContext} tokens)`
    : "the model's context";
}

/**
 * Shows `text` in the status line, below the composer. An error scrolls it into view: after a
 * long paste the page is taller than the window and the line would stay out of sight.
 */
function setStatus(text: string, error = false): void {
  ui.status.textContent = text;
  ui.status.classList.toggle("error", error);
  if (error) ui.status.scrollIntoView({ block: "nearest" });
}

function setRunning(on: boolean): void {
  ui.send.hidden = on;
  ui.stop.hidden = !on;
  ui.newChat.disabled = on;
}

function showKeyState(): void {
  const where = keys.where();
  ui.keyButton.textContent = where ? "API key \u2713" : "API key";
  ui.keyButton.title = where ? `A key is kept for ${where}.` : "No key set.";
}

/**
 * The Tier menu from GET /v1/models (the tiers deployed). Without a key an API that wants one
 * answers 401: the menu keeps "auto" until a key is entered (then this runs again).
 */
async function loadTierMenu(): Promise<void> {
  try {
    const { tiers, context } = await fetchDeployment({ apiKey: keys.get() });
    fillTierMenu(ui.tier, tiers);
    if (context !== null) {
      // A completion longer than the context is refused (400): offer at most the context.
      serverContext = context;
      ui.maxTokens.max = String(context);
      ui.maxTokens.title = `At most ${context}: the context of this deployment (GET /v1/models context_length).`;
    }
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return;
    setStatus(
      `Could not list the tiers (GET /v1/models): ${e instanceof Error ? e.message : String(e)}`,
      true,
    );
  }
}

/** Asks for a key after a 401 (`message`: the server's words); false when the user declined. */
async function keyAfter401(message: string): Promise<boolean> {
  const refused = keys.get() !== null;
  if (refused) keys.clear();
  const key = await askKey.ask(
    refused
      ? `The key was refused: ${message} Enter another key.`
      : "This API needs an API key. The page sends it with each request as Authorization: Bearer <key>.",
  );
  showKeyState();
  if (key !== null) void loadTierMenu();
  return key !== null;
}

async function answerFromServer(answer: AssistantTurn, signal: AbortSignal): Promise<void> {
  const s = settings();
  for (;;) {
    const t0 = performance.now();
    let first = true;
    try {
      const end = await streamChat(
        { ...s, messages: conversation(), apiKey: keys.get(), signal },
        {
          head(h) {
            answer.setMeta("variant", h.variant);
            answer.setMeta("engine", "server");
            answer.setMeta("predicted", h.predictedMs === null ? null : ms(h.predictedMs));
            answer.setMeta(
              "server-timing",
              h.serverTiming.map((m) => (m.durMs === null ? m.name : `${m.name} ${ms(m.durMs)}`)).join(", "),
            );
          },
          text(delta) {
            if (first) answer.setMeta("first-token", ms(performance.now() - t0));
            first = false;
            answer.append(delta);
          },
        },
      );
      const t = end.timingMs;
      if (t) {
        answer.setMeta(
          "timings",
          `load ${ms(t.load)}, prefill ${ms(t.prefill)}, decode ${ms(t.decode)}` +
            (end.budgetExhausted ? " (budget exhausted)" : ""),
        );
      }
      if (end.completionTokens !== null) {
        const rate =
          t && t.decode > 0 ? `, ${((end.completionTokens / t.decode) * 1000).toFixed(1)} tok/s` : "";
        answer.setMeta("tokens", `${end.completionTokens}${rate}`);
      }
      answer.setMeta("finish", end.finishReason);
      return;
    } catch (e) {
      if (e instanceof ApiError && e.status === 401 && !signal.aborted && (await keyAfter401(e.message)))
        continue;
      if (!signal.aborted && dropForContext(e, answer)) continue;
      throw e;
    }
  }
}

async function answerInBrowser(answer: AssistantTurn, signal: AbortSignal): Promise<void> {
  setStatus("loading the engine bundle\u2026");
  const engine = (await import(/* @vite-ignore */ ENGINE_URL)) as typeof Engine;
  const s = settings();
  for (;;) {
    try {
      const r = await engine.runInBrowser({
        ...s,
        messages: conversation(),
        backend: ui.backend.value as Engine.BrowserRunOptions["backend"],
        apiKey: keys.get(),
        signal,
        onText: (delta) => answer.append(delta),
        onStatus: (status) => setStatus(status),
      });
      answer.setMeta("variant", r.variant);
      answer.setMeta("engine", `this browser: ${r.backend} (${r.reason})`);
      answer.setMeta("timings", `load ${ms(r.loadMs)}, prefill ${ms(r.prefillMs)}, decode ${ms(r.decodeMs)}`);
      const rate = r.decodeMs > 0 ? `, ${((r.tokens / r.decodeMs) * 1000).toFixed(1)} tok/s` : "";
      answer.setMeta("tokens", `${r.tokens}${rate}`);
      answer.setMeta("finish", r.finishReason);
      return;
    } catch (e) {
      if (e instanceof engine.FetchError && e.status === 401 && (await keyAfter401(e.message))) continue;
      if (!signal.aborted && dropForContext(e, answer)) continue;
      throw e;
    }
  }
}

async function send(content: string): Promise<void> {
  if (running || content.trim() === "") return;
  const ctrl = new AbortController();
  running = ctrl;
  setRunning(true);
  ui.message.value = "";
  ui.empty.hidden = true;
  appendUserTurn(ui.log, content);
  history.push({ role: "user", content });
  const answer = appendAssistantTurn(ui.log);
  document.body.dataset.state = "running";
  setStatus("");
  const droppedBefore = dropped;
  const t0 = performance.now();
  try {
    await (ui.local.checked ? answerInBrowser(answer, ctrl.signal) : answerFromServer(answer, ctrl.signal));
    if (ctrl.signal.aborted) throw ctrl.signal.reason;
    history.push({ role: "assistant", content: answer.text() });
    answer.finish("done");
    document.body.dataset.state = "done";
    const trimmed =
      dropped > droppedBefore ? ` (${dropped} oldest turns no longer sent: over ${contextWords()})` : "";
    setStatus(`answered in ${ms(performance.now() - t0)}${trimmed}`);
  } catch (e) {
    if (ctrl.signal.aborted) {
      // Stopped: what arrived stays, in the view and in the conversation the next message sends.
      if (answer.text()) history.push({ role: "assistant", content: answer.text() });
      else history.pop();
      dropped = Math.min(dropped, history.length);
      answer.finish("stopped");
      document.body.dataset.state = "stopped";
      setStatus("stopped");
    } else {
      // Failed: the question stays on screen but leaves the conversation, so it can be asked again;
      // turns left out only to fit it are sent again.
      history.pop();
      dropped = Math.min(droppedBefore, history.length);
      const message = e instanceof Error ? e.message : String(e);
      const shown = answer.finish("error", message);
      document.body.dataset.state = "error";
      setStatus(message, true);
      // The answer's own error last: when the window cannot hold both, it is the one seen.
      shown?.scrollIntoView({ block: "nearest" });
    }
  } finally {
    running = null;
    setRunning(false);
  }
}

ui.composer.addEventListener("submit", (e) => {
  e.preventDefault();
  void send(ui.message.value);
});
// Escape stops an answer wherever focus is (after Send it sits on the button or the page, not the
// message box), unless a dialog is open: there Escape closes the dialog.
document.addEventListener("keydown", (e) => {
  if (e.key !== "Escape" || !running || e.defaultPrevented) return;
  if (document.querySelector("dialog[open]")) return;
  e.preventDefault();
  running.abort();
});
ui.message.addEventListener("keydown", (e) => {
  if (!isSendKey(e)) return;
  e.preventDefault();
  if (!running) ui.composer.requestSubmit();
});
ui.stop.addEventListener("click", () => {
  running?.abort();
  ui.message.focus();
});
ui.newChat.addEventListener("click", () => {
  if (running) return;
  history.length = 0;
  dropped = 0;
  ui.log.replaceChildren();
  ui.empty.hidden = false;
  document.body.dataset.state = "idle";
  setStatus("");
  ui.message.focus();
});
ui.keyButton.addEventListener("click", async () => {
  await askKey.ask("The key is sent as Authorization: Bearer <key> to this API.");
  showKeyState();
  void loadTierMenu();
});
const budgetLabel = () => {
  ui.budgetValue.value = ui.budget.value === "0" ? "off" : `${ui.budget.value} ms`;
};
ui.budget.addEventListener("input", budgetLabel);
ui.local.addEventListener("change", () => {
  ui.backendWrap.hidden = !ui.local.checked;
});
// A note on an adjusted value stays until the user edits the field again.
for (const [input, note] of [
  [ui.maxTokens, ui.maxTokensNote],
  [ui.temperature, ui.temperatureNote],
] as const)
  input.addEventListener("input", () => {
    note.hidden = true;
  });
budgetLabel();
showKeyState();
void loadTierMenu();
ui.backendWrap.hidden = !ui.local.checked;
document.body.dataset.ready = "true";
