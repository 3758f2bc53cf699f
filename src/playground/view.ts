/**
 * The conversation as the page shows it: one list item per turn in the log (role="log", so screen
 * readers hear new answers). An assistant turn fills in as it streams and ends with a line of
 * facts: the chosen variant, the server's timings, the finish reason. `data-state` on an assistant
 * turn is streaming | done | stopped | error.
 */
export type TurnState = "streaming" | "done" | "stopped" | "error";

/** Which facts an answer's meta line can hold, in display order, with their labels. */
const META = {
  variant: "variant",
  engine: "engine",
  predicted: "predicted",
  "server-timing": "Server-Timing",
  timings: "timings",
  tokens: "tokens",
  "first-token": "first token",
  finish: "finish",
  history: "history",
} as const;
export type MetaKey = keyof typeof META;

export interface AssistantTurn {
  element: HTMLLIElement;
  append(delta: string): void;
  text(): string;
  setMeta(key: MetaKey, value: string | null): void;
  /** Ends the turn; an `error` is shown in it. Returns the error's element (null without one). */
  finish(state: TurnState, error?: string): HTMLElement | null;
}

function turn(log: HTMLOListElement, role: "user" | "assistant", who: string): HTMLLIElement {
  const li = document.createElement("li");
  li.className = `turn ${role}`;
  const label = document.createElement("div");
  label.className = "who";
  label.textContent = who;
  li.append(label);
  log.append(li);
  return li;
}

export function appendUserTurn(log: HTMLOListElement, content: string): HTMLLIElement {
  const li = turn(log, "user", "You");
  const text = document.createElement("div");
  text.className = "text";
  text.textContent = content;
  li.append(text);
  li.scrollIntoView({ block: "nearest" });
  return li;
}

export function appendAssistantTurn(log: HTMLOListElement): AssistantTurn {
  const li = turn(log, "assistant", "shardlm");
  li.dataset.state = "streaming";
  li.dataset.deltas = "0";
  li.setAttribute("aria-busy", "true");
  const body = document.createElement("div");
  body.className = "text";
  const meta = document.createElement("dl");
  meta.className = "meta";
  meta.hidden = true;
  li.append(body, meta);
  let content = "";
  const rows = new Map<MetaKey, HTMLElement>();
  return {
    element: li,
    append(delta) {
      content += delta;
      body.textContent = content;
      li.dataset.deltas = String(Number(li.dataset.deltas) + 1);
      li.scrollIntoView({ block: "nearest" });
    },
    text: () => content,
    setMeta(key, value) {
      let dd = rows.get(key);
      if (value === null || value === "") {
        dd?.parentElement?.remove();
        rows.delete(key);
        return;
      }
      if (!dd) {
        const row = document.createElement("div");
        const dt = document.createElement("dt");
        dt.textContent = META[key];
        dd = document.createElement("dd");
        dd.className = key;
        row.append(dt, dd);
        rows.set(key, dd);
        // Keep the display order of META whatever order the facts arrive in.
        const order = Object.keys(META) as MetaKey[];
        const next = order.slice(order.indexOf(key) + 1).find((k) => rows.has(k) && k !== key);
        meta.insertBefore(row, next ? rows.get(next)!.parentElement : null);
      }
      dd.textContent = value;
      meta.hidden = false;
    },
    finish(state, error) {
      li.dataset.state = state;
      li.removeAttribute("aria-busy");
      if (!error) return null;
      const p = document.createElement("p");
      p.className = "error";
      p.textContent = error;
      li.insertBefore(p, meta);
      return p;
    },
  };
}
