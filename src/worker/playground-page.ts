/**
 * The playground: one HTML page (served at GET /) with its CSS and script inline. The script is plain
 * modern JS (no build step): it streams POST /v1/chat/completions over SSE and shows the routing
 * headers. "Run in this browser" loads the engine bundle (/playground/engine.js, see
 * ./playground-routes.ts) and generates in the page from the same shards.
 * Kept free of template-literal syntax so it can live in this string.
 */
const CSS = `
:root { --fg: #1d2330; --muted: #6b7385; --line: #dde1ea; --accent: #2f6fed; --bg: #f6f7fb; }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
main { max-width: 760px; margin: 32px auto; padding: 0 16px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h1 small { font-weight: 400; color: var(--muted); font-size: 14px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 16px; margin-top: 16px; }
.controls { display: flex; flex-wrap: wrap; gap: 12px 20px; align-items: center; }
label { font-size: 13px; color: var(--muted); display: inline-flex; gap: 6px; align-items: center; }
select, input[type=number] { font: inherit; padding: 4px 6px; border: 1px solid var(--line); border-radius: 6px; background: #fff; }
input[type=number] { width: 72px; }
#budget-value { min-width: 56px; color: var(--fg); font-variant-numeric: tabular-nums; }
textarea { width: 100%; min-height: 72px; font: inherit; padding: 8px; border: 1px solid var(--line); border-radius: 8px; resize: vertical; }
.row { display: flex; gap: 10px; margin-top: 10px; align-items: center; }
button { font: inherit; padding: 7px 18px; border: 0; border-radius: 8px; background: var(--accent); color: #fff; cursor: pointer; }
button:disabled { opacity: .5; cursor: default; }
#status { color: var(--muted); font-size: 13px; }
#output { white-space: pre-wrap; min-height: 96px; font-size: 16px; }
#output:empty::before { content: "The answer streams here."; color: var(--muted); }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 14px; margin: 0; font-size: 13px; }
dt { color: var(--muted); }
dd { margin: 0; font-family: ui-monospace, SFMono-Regular, Menlo, monospace; word-break: break-all; }
.error { color: #b3261e; }
`;

const SCRIPT = `
const $ = (id) => document.getElementById(id);
const budget = $("budget");
function budgetLabel() {
  $("budget-value").textContent = budget.value === "0" ? "off" : budget.value + " ms";
}
budget.addEventListener("input", budgetLabel);
budgetLabel();
$("local").addEventListener("change", () => { $("backend-wrap").hidden = !$("local").checked; });

function setMeta(id, text) { $(id).textContent = text == null || text === "" ? "\\u2014" : text; }
function clearMeta() {
  for (const id of ["variant", "predicted", "server-timing", "timings", "engine"]) setMeta(id, null);
}

function request() {
  const tier = $("tier").value;
  const ms = Number(budget.value);
  return {
    tier: tier,
    budgetMs: ms > 0 ? ms : null,
    messages: [{ role: "user", content: $("message").value }],
    maxTokens: Number($("max-tokens").value) || 64,
    temperature: $("greedy").checked ? 0 : 1,
  };
}

async function runServer(req, out) {
  const headers = { "content-type": "application/json" };
  if (req.tier !== "auto") headers["X-Quality-Tier"] = req.tier;
  if (req.budgetMs !== null) headers["X-Latency-Budget-Ms"] = String(req.budgetMs);
  const res = await fetch("/v1/chat/completions", {
    method: "POST",
    headers: headers,
    body: JSON.stringify({
      model: "shardlm",
      messages: req.messages,
      max_tokens: req.maxTokens,
      temperature: req.temperature,
      stream: true,
    }),
  });
  setMeta("variant", res.headers.get("X-Variant"));
  setMeta("predicted", res.headers.get("X-Predicted-Ms") && res.headers.get("X-Predicted-Ms") + " ms");
  setMeta("server-timing", res.headers.get("Server-Timing"));
  setMeta("engine", "server (workerd, WASM)");
  if (!res.ok) {
    let msg = res.status + " " + res.statusText;
    try { msg = (await res.json()).error.message; } catch {}
    throw new Error(msg);
  }
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buf += value;
    let end;
    while ((end = buf.indexOf("\\n\\n")) >= 0) {
      const event = buf.slice(0, end);
      buf = buf.slice(end + 2);
      const data = event.split("\\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\\n");
      if (!data) continue;
      if (data === "[DONE]") return;
      const msg = JSON.parse(data);
      if (msg.error) throw new Error(msg.error.message);
      const choice = msg.choices && msg.choices[0];
      if (choice && choice.delta && choice.delta.content) {
        out(choice.delta.content);
        document.body.dataset.deltas = String(Number(document.body.dataset.deltas || 0) + 1);
      }
      if (msg.shardlm) {
        const t = msg.shardlm.timing_ms;
        setMeta("timings", "load " + t.load + " ms, prefill " + t.prefill + " ms, decode " + t.decode + " ms" +
          (msg.shardlm.budget_exhausted ? " (budget exhausted)" : "") + ", finish: " + choice.finish_reason);
      }
    }
  }
}

async function runLocal(req, out) {
  setMeta("engine", "loading the engine bundle\\u2026");
  const mod = await import("/playground/engine.js");
  const r = await mod.runInBrowser({
    tier: req.tier,
    messages: req.messages,
    maxTokens: req.maxTokens,
    temperature: req.temperature,
    budgetMs: req.budgetMs,
    backend: $("backend").value,
    onText: out,
    onStatus: (s) => setMeta("engine", s),
  });
  setMeta("variant", r.variant);
  setMeta("engine", "this browser: " + r.backend + " (" + r.reason + ")");
  setMeta("timings", "load " + r.loadMs + " ms, prefill " + r.prefillMs + " ms, decode " + r.decodeMs +
    " ms, " + r.tokens + " tokens, finish: " + r.finishReason);
}

$("form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const send = $("send");
  send.disabled = true;
  $("output").textContent = "";
  $("status").textContent = "";
  $("status").className = "";
  clearMeta();
  const t0 = performance.now();
  const req = request();
  const out = (t) => { $("output").textContent += t; };
  try {
    document.body.dataset.state = "running";
    document.body.dataset.deltas = "0";
    await ($("local").checked ? runLocal(req, out) : runServer(req, out));
    $("status").textContent = "done in " + Math.round(performance.now() - t0) + " ms";
    document.body.dataset.state = "done";
  } catch (err) {
    $("status").textContent = String(err && err.message ? err.message : err);
    $("status").className = "error";
    document.body.dataset.state = "error";
  } finally {
    send.disabled = false;
  }
});
`;

export const PLAYGROUND_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>shardlm playground</title>
<style>${CSS}</style>
</head>
<body>
<main>
  <h1>shardlm <small>int4 language models on Workers, and in your browser</small></h1>
  <form id="form" class="card">
    <div class="controls">
      <label>Tier
        <select id="tier">
          <option value="auto">auto</option>
          <option value="quality">quality</option>
          <option value="balanced">balanced</option>
          <option value="speed">speed</option>
        </select>
      </label>
      <label>Latency budget
        <input id="budget" type="range" min="0" max="2000" step="50" value="0">
        <span id="budget-value">off</span>
      </label>
      <label>Max tokens <input id="max-tokens" type="number" min="1" max="512" value="64"></label>
      <label><input id="greedy" type="checkbox" checked> greedy</label>
      <label><input id="local" type="checkbox"> run in this browser</label>
      <label id="backend-wrap" hidden>Backend
        <select id="backend">
          <option value="auto">auto (WebGPU, else WASM)</option>
          <option value="webgpu">WebGPU</option>
          <option value="wasm">WASM</option>
        </select>
      </label>
    </div>
    <textarea id="message" placeholder="Once upon a time">Once upon a time</textarea>
    <div class="row"><button id="send" type="submit">Send</button><span id="status"></span></div>
  </form>
  <section class="card"><div id="output"></div></section>
  <section class="card">
    <dl>
      <dt>X-Variant</dt><dd id="variant">&mdash;</dd>
      <dt>X-Predicted-Ms</dt><dd id="predicted">&mdash;</dd>
      <dt>Server-Timing</dt><dd id="server-timing">&mdash;</dd>
      <dt>Timings</dt><dd id="timings">&mdash;</dd>
      <dt>Engine</dt><dd id="engine">&mdash;</dd>
    </dl>
  </section>
</main>
<script type="module">${SCRIPT}</script>
</body>
</html>
`;
