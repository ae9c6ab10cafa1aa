// The agent page's script: log in, read the pop stream (GET /api/v1/events) with fetch (an
// EventSource cannot send the bearer token), show each pop, and send state changes to the
// agents API. Everything shown goes through textContent: a caller-controlled field is
// never HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { token: sessionStorage.getItem("ccb-token"), me: null, lastPop: null, abort: null };

function show(id, value) {
  $(id).textContent = value === null || value === undefined || value === "" ? "-" : String(value);
}

function say(text) { $("message").textContent = text || ""; }

async function api(method, path, body) {
  const resp = await fetch(path, {
    method,
    headers: { "Authorization": "Bearer " + state.token, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try { data = await resp.json(); } catch (e) { data = null; }
  if (!resp.ok) {
    const why = data && data.error ? data.error + ": " + (data.message || "") : "HTTP " + resp.status;
    throw new Error(why);
  }
  return data;
}

function render(pop) {
  state.lastPop = pop;
  $("pop").dataset.kind = pop.type;
  show("pop-title", pop.type === "agent_ringing" ? "Ringing" : "On the call");
  show("caller", pop.caller || "unknown caller");
  const h = pop.history || {};
  show("history-count", h.available ? h.count + " in " + h.days + " days" : "unavailable");
  show("history-last", h.available && h.count ? (h.last_outcome || "-") + " / " + (h.last_agent || "-") : "");
  show("did", pop.did ? pop.did + (pop.did_kind ? " (" + pop.did_kind + ")" : "") : "");
  show("queue", pop.queue + (pop.service ? " / " + pop.service : ""));
  show("language", pop.language);
  show("ivr", (pop.ivr_path || []).join(" > "));
  show("lookup", pop.lookup ? (pop.lookup.answer || pop.lookup.result) : "");
  show("waited", pop.waiting_s === null || pop.waiting_s === undefined ? "" : Math.round(pop.waiting_s) + " s");
  show("call-id", pop.call_id);
  if (pop.site && !$("t-site").value) { $("t-site").placeholder = pop.site; }
}

function onMessage(kind, data) {
  if (kind === "hello") {
    state.me = data;
    show("who", data.user + (data.agent ? " (agent " + data.agent + ")" : ""));
    show("stream", "live");
  } else if (kind === "agent_ringing" || kind === "agent_answered") {
    render(data);
  } else if (kind === "closed") {
    show("stream", "reconnecting");
  }
}

// One SSE message: lines of "field: value", ended by a blank line.
function parseBlock(block) {
  let kind = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) kind = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  if (!data.length) return;
  try { onMessage(kind, JSON.parse(data.join("\n"))); } catch (e) { /* not ours: skip */ }
}

async function readStream() {
  while (state.token) {
    state.abort = new AbortController();
    try {
      const resp = await fetch("/api/v1/events", {
        headers: { "Authorization": "Bearer " + state.token, "Accept": "text/event-stream" },
        signal: state.abort.signal,
      });
      if (resp.status === 401 || resp.status === 403) {
        const data = await resp.json().catch(() => ({}));
        say("stream refused: " + (data.error || resp.status));
        logout();
        return;
      }
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let at;
        while ((at = buffer.indexOf("\n\n")) >= 0) {
          parseBlock(buffer.slice(0, at));
          buffer = buffer.slice(at + 2);
        }
      }
    } catch (e) {
      if (!state.token) return;
    }
    show("stream", "reconnecting");
    await new Promise((r) => setTimeout(r, 2000));
  }
}

function start() {
  $("login").hidden = true;
  $("desk").hidden = false;
  readStream();
}

function logout() {
  state.token = null;
  sessionStorage.removeItem("ccb-token");
  if (state.abort) state.abort.abort();
  $("desk").hidden = true;
  $("login").hidden = false;
}

function site() {
  if (state.lastPop) return state.lastPop.site;
  return state.me && state.me.sites.length === 1 ? state.me.sites[0] : undefined;
}

async function setPaused(paused) {
  if (!state.me || !state.me.agent) { say("this user is no agent"); return; }
  const path = "/api/v1/agents/" + encodeURIComponent(state.me.agent) + (paused ? "/pause" : "/unpause");
  const body = {};
  if (site()) body.site = site();
  try {
    await api("POST", path, body);
    show("state", paused ? "paused" : "ready");
    say("");
  } catch (e) { say(e.message); }
}

async function transfer() {
  if (!state.lastPop) { say("no call to transfer"); return; }
  const body = { service: $("t-service").value.trim() };
  for (const [key, id] of [["language", "t-language"], ["site", "t-site"], ["note", "t-note"]]) {
    const v = $(id).value.trim();
    if (v) body[key] = v;
  }
  try {
    await api("POST", "/api/v1/calls/" + encodeURIComponent(state.lastPop.call_id) + "/transfer", body);
    say("transferred");
  } catch (e) { say(e.message); }
}

$("login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    const resp = await fetch("/api/v1/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ user: $("user").value, password: $("password").value }),
    });
    const data = await resp.json();
    if (!resp.ok) { say(data.error + ": " + data.message); return; }
    state.token = data.token;
    sessionStorage.setItem("ccb-token", data.token);
    say("");
    start();
  } catch (e) { say(e.message); }
});
$("logout").addEventListener("click", logout);
$("pause").addEventListener("click", () => setPaused(true));
$("ready").addEventListener("click", () => setPaused(false));
$("transfer").addEventListener("click", transfer);
if (state.token) start();
