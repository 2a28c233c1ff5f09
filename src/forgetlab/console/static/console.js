// The forgetlab console: the public HTTP API of `forgetlab serve`, shown. Everything a response holds is written
// into the page as text (textContent), never as markup.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { assistant: null, history: [], learning: false, busy: false };

async function api(path, options = {}) {
  const r = await fetch(path, options);
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  if (!r.ok) {
    const error = new Error((body && body.error && body.error.message) || `${r.status} ${r.statusText}`);
    error.status = r.status;
    throw error;
  }
  return body;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(child ?? ""));
  return node;
}

const fmt = (v) => v == null ? "–" : typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(3)) : String(v);
const say = (text) => { $("status").textContent = text; };

function fill(table, header, rows, decorate) {
  const body = rows.map((row, i) => {
    const tr = el("tr", {}, ...row.map((cell) => el("td", {}, fmt(cell))));
    if (decorate) decorate(tr, i);
    return tr;
  });
  table.replaceChildren(el("thead", {}, el("tr", {}, ...header.map((h) => el("th", {}, h)))), el("tbody", {}, ...body));
}

// --- chat ---------------------------------------------------------------------------------------------------------

async function send(text) {
  const list = $("messages");
  state.history.push({ role: "user", content: text });
  list.append(el("li", { class: "user" }, text));
  const answer = el("span", { class: "answer" });
  const meta = el("span", { class: "meta" });
  const bubble = el("li", { class: "assistant" }, answer, meta);
  list.append(bubble);
  const request = { model: state.assistant, messages: state.history, stream: true };
  if (state.learning) request.learn = $("learn").checked;
  const r = await fetch("/v1/chat/completions", { method: "POST", headers: { "content-type": "application/json" },
                                                   body: JSON.stringify(request) });
  if (!r.ok) {
    const body = await r.json().catch(() => null);
    answer.textContent = "error: " + ((body && body.error && body.error.message) || r.status);
    state.history.pop();
    return;
  }
  const session = r.headers.get("X-Forgetlab-Session");
  const turn = r.headers.get("X-Forgetlab-Turn");
  const reader = r.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let reply = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
        const chunk = JSON.parse(line.slice(6));
        const piece = chunk.choices && chunk.choices[0] && chunk.choices[0].delta.content;
        if (piece) {
          reply += piece;
          answer.textContent = reply;
          list.scrollTop = list.scrollHeight;
        }
      }
    }
  }
  state.history.push({ role: "assistant", content: reply });
  meta.textContent = (session === "None" ? "the base model" : `session ${session}`) + (turn ? ` · turn ${turn}` : "")
    + (state.learning && !request.learn ? " · not learned from" : "");
  bubble.dataset.done = "1";
}

$("chat-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = $("prompt").value.trim();
  if (!text || state.busy) return;
  $("prompt").value = "";
  state.busy = true;
  $("send").disabled = true;
  try { await send(text); } catch (e) { say(`chat: ${e.message}`); }
  state.busy = false;
  $("send").disabled = false;
  $("prompt").focus();
  refresh();
});
$("prompt").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    $("chat-form").requestSubmit();
  }
});
$("reset").addEventListener("click", () => {
  state.history = [];
  $("messages").replaceChildren();
  $("prompt").focus();
});

// --- learning, memory, plots --------------------------------------------------------------------------------------

function renderLearning(status, history) {
  const last = history.updates[history.updates.length - 1];
  const items = [["queue", status.queue], ["turns", status.turns], ["turns learned", status.turns_learned],
    ["facts stored", status.facts_stored], ["facts learned", status.facts_learned],
    ["updates kept", history.updates_kept], ["updates undone by the gate", history.updates_undone],
    ["last update", last ? `turn ${last.turn}, ${last.kind}: loss ${fmt(last.first_loss)} → ${fmt(last.last_loss)}, `
      + `${last.steps} steps, ${fmt(last.seconds)} s, ${last.kept ? "kept" : "undone"}` : "none yet"]];
  if (status.errors && status.errors.length) items.push(["errors", status.errors.join("; ")]);
  $("learning").replaceChildren(...items.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, fmt(v))]));
}

function renderMemory(facts) {
  const query = $("memory-search").value.trim().toLowerCase();
  const shown = facts.filter((f) => !query || [f.statement, f.relation, f.value, f.subject]
    .some((x) => String(x ?? "").toLowerCase().includes(query)));
  $("memory").tBodies[0].replaceChildren(...shown.map((f) => el("tr", { "data-id": String(f.id) },
    el("td", {}, String(f.id)), el("td", {}, f.statement), el("td", {}, f.relation ?? ""), el("td", {}, fmt(f.importance)),
    el("td", {}, fmt(f.times_seen)), el("td", {}, fmt(f.first_turn)), el("td", {}, f.learned ? "yes" : "no"),
    el("td", {}, el("button", { type: "button", class: "delete", onclick: () => forget(f) }, "Delete")))));
}

async function forget(fact) {
  if (!confirm(`Forget fact ${fact.id}: "${fact.statement}"?`)) return;
  try {
    await api(`/v1/memory/${fact.id}`, { method: "DELETE" });
    say(`fact ${fact.id} deleted`);
  } catch (e) { say(`delete: ${e.message}`); }
  refresh();
}

function plot(title, points) {
  const w = 300, h = 150, pad = 24;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", title);
  const good = points.filter((p) => p[1] != null && Number.isFinite(p[1]));
  if (good.length) {
    const xs = good.map((p) => p[0]), ys = good.map((p) => p[1]);
    const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
    const sx = (x) => pad + (x1 > x0 ? (x - x0) / (x1 - x0) : 0.5) * (w - 2 * pad);
    const sy = (y) => h - pad - (y1 > y0 ? (y - y0) / (y1 - y0) : 0.5) * (h - 2 * pad);
    const line = document.createElementNS(svg.namespaceURI, "polyline");
    line.setAttribute("points", good.map((p) => `${sx(p[0])},${sy(p[1])}`).join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", "#3b6ea5");
    line.setAttribute("stroke-width", "2");
    svg.append(line);
    for (const p of good) {
      const dot = document.createElementNS(svg.namespaceURI, "circle");
      dot.setAttribute("cx", sx(p[0]));
      dot.setAttribute("cy", sy(p[1]));
      dot.setAttribute("r", "3");
      dot.setAttribute("fill", "#3b6ea5");
      svg.append(dot);
    }
    const label = (x, y, text, anchor) => {
      const t = document.createElementNS(svg.namespaceURI, "text");
      t.setAttribute("x", x);
      t.setAttribute("y", y);
      t.setAttribute("font-size", "10");
      t.setAttribute("text-anchor", anchor);
      t.textContent = text;
      svg.append(t);
    };
    label(2, pad - 6, fmt(y1), "start");
    label(2, h - 4, fmt(y0), "start");
    label(w - 2, h - 4, `turn ${x1}`, "end");
  }
  const figure = el("figure", { class: "plot", "data-points": String(good.length) }, svg,
                    el("figcaption", {}, `${title} (${good.length} measured)`));
  figure.style.margin = "0";
  return figure;
}

function renderPlots(metrics) {
  const series = [["KL to the starting model", (m) => m.kl_to_start], ["anchor perplexity", (m) => m.anchor_perplexity],
    ["control answers kept", (m) => m.control],
    ["stored facts learned", (m) => m.facts_stored ? m.facts_learned / m.facts_stored : null]];
  $("plots").replaceChildren(...series.map(([title, get]) => plot(title, metrics.map((m) => [m.turn, get(m)]))));
}

// --- sessions and runs --------------------------------------------------------------------------------------------

async function loadSessions() {
  let data;
  try { data = await api(`/v1/sessions/${encodeURIComponent(state.assistant)}`); } catch (e) {
    $("sessions-panel").hidden = true;
    return;
  }
  $("sessions-panel").hidden = false;
  const header = [...data.sessions.header, ""];
  const rows = data.sessions.rows;
  fill($("sessions"), header, rows.map((r) => [...r, ""]), (tr, i) => {
    const id = Number(rows[i][0]);
    if (id === data.active) tr.classList.add("active");
    const cell = tr.lastChild;
    const epochs = data.kept_epochs[String(id)] || [];
    if (id !== data.active || data.active_epoch != null) {
      cell.append(el("button", { type: "button", class: "rollback", "data-session": String(id),
                                 onclick: () => rollback(id, null) }, `Make ${id} active`));
    }
    for (const e of epochs) {
      cell.append(" ", el("button", { type: "button", class: "rollback-epoch", onclick: () => rollback(id, e) },
                          `epoch ${e}`));
    }
  });
  fill($("retention"), data.retention.header, data.retention.rows);
}

async function rollback(session, epoch) {
  const what = epoch == null ? `session ${session}` : `session ${session} as after epoch ${epoch}`;
  if (!confirm(`Make ${what} active and serve it? Later sessions stay on disk.`)) return;
  try {
    const done = await api(`/v1/sessions/${encodeURIComponent(state.assistant)}/rollback`, {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ to: session, epoch }) });
    say(`serving session ${done.served}`);
  } catch (e) { say(`rollback: ${e.message}`); }
  await loadSessions();
  await loadHealth();
}

async function loadRuns() {
  let data;
  try { data = await api("/v1/runs"); } catch (e) { say(`runs: ${e.message}`); return; }
  $("runs").tBodies[0].replaceChildren(...data.data.map((r) => el("tr", {},
    el("td", {}, r.created), el("td", {}, r.kind), el("td", {}, r.status), el("td", {}, r.name || r.id),
    el("td", {}, r.report ? el("button", { type: "button", class: "open-report",
                                           onclick: () => openReport(r.id) }, "Open report") : ""))));
  if (!data.data.length) say(`no runs indexed under ${data.root}`);
}

function openReport(id) {
  const frame = $("report");
  frame.hidden = false;
  frame.src = `/v1/runs/${encodeURIComponent(id)}/report`;
  frame.focus();
}

// --- start and refresh --------------------------------------------------------------------------------------------

async function loadHealth() {
  const health = await api("/health");
  const me = health.assistants.find((a) => a.assistant === state.assistant) || health;
  $("serving").textContent = `serving '${me.assistant}', session ${fmt(me.session)}`
    + (state.learning ? " · learning from every turn" : "");
}

async function refresh() {
  if (!state.learning) return;
  try {
    const [status, history, memory] = await Promise.all([api("/v1/learning"), api("/v1/learning/history"),
                                                         api("/v1/memory")]);
    renderLearning(status, history);
    state.facts = memory.data;
    renderMemory(memory.data);
    renderPlots(history.metrics);
  } catch (e) { say(`learning: ${e.message}`); }
}

$("memory-search").addEventListener("input", () => renderMemory(state.facts || []));
$("assistant").addEventListener("change", async () => {
  state.assistant = $("assistant").value;
  await loadHealth();
  await loadSessions();
});

async function start() {
  const models = await api("/v1/models");
  $("assistant").replaceChildren(...models.data.map((m) => el("option", { value: m.id }, m.id)));
  state.assistant = models.data[0].id;
  try {
    await api("/v1/learning");
    state.learning = true;
  } catch (e) { state.learning = false; }
  for (const id of ["learning-panel", "memory-panel", "plots-panel", "learn-switch"]) $(id).hidden = !state.learning;
  await loadHealth();
  await Promise.all([loadSessions(), loadRuns(), refresh()]);
  if (state.learning) setInterval(refresh, 2000);
  $("prompt").focus();
}

start().catch((e) => say(`cannot reach the server: ${e.message}`));
