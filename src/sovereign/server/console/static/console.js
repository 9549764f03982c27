// The console in the browser: the API key lives in session storage only and goes as a Bearer
// header on every htmx request and API call; chat streaming (SSE over fetch), a run's live
// trace, document upload, and API errors shown by their message. No other host is contacted.
const KEY = "sovereign.apiKey";
const MAX_ATTACHMENT = 512 * 1024;
const $ = (selector) => document.querySelector(selector);
const apiKey = () => sessionStorage.getItem(KEY);
const authHeaders = () => ({ Authorization: "Bearer " + apiKey() });

function errorMessage(text, status) {
  try {
    return JSON.parse(text).error.message;
  } catch {
    return `the server answered ${status}`;
  }
}

function flash(message) {
  const box = $("#flash");
  box.textContent = message;
  box.hidden = !message;
}

async function api(path, { method = "GET", body } = {}) {
  const headers = authHeaders();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  if (!response.ok) throw new Error(errorMessage(text, response.status));
  return JSON.parse(text);
}

// --- sign-in ------------------------------------------------------------------------------------

function showSignedIn(signedIn) {
  $("#sign-in").hidden = signedIn;
  $("#main").hidden = !signedIn;
  $("#sign-out").hidden = !signedIn;
}

function signOut(reason) {
  sessionStorage.removeItem(KEY);
  showSignedIn(false);
  $("#sign-in-error").textContent = reason || "";
}

function wireSignIn() {
  $("#sign-in").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = event.target.elements.key.value.trim();
    if (!value) return;
    sessionStorage.setItem(KEY, value);
    event.target.reset();
    $("#sign-in-error").textContent = "";
    showSignedIn(true);
    htmx.trigger(document.body, "signed-in");
    document.dispatchEvent(new Event("console:signed-in"));
  });
  $("#sign-out").addEventListener("click", () => signOut("signed out"));
  showSignedIn(Boolean(apiKey()));
}

// --- htmx wiring ----------------------------------------------------------------------------------

function wireHtmx() {
  htmx.defineExtension("json-body", {
    onEvent(name, event) {
      if (name === "htmx:configRequest") event.detail.headers["Content-Type"] = "application/json";
    },
    encodeParameters(xhr, parameters) {
      xhr.overrideMimeType("text/json");
      const body = {};
      parameters.forEach((value, name) => { if (value !== "") body[name] = value; });
      return JSON.stringify(body);
    },
  });
  document.body.addEventListener("htmx:configRequest", (event) => {
    if (!apiKey()) { event.preventDefault(); return; }  // nothing is asked before sign-in
    event.detail.headers.Authorization = "Bearer " + apiKey();
  });
  document.body.addEventListener("htmx:responseError", (event) => {
    const xhr = event.detail.xhr;
    const message = errorMessage(xhr.responseText, xhr.status);
    if (xhr.status === 401) signOut(message);
    else flash(message);
  });
  document.body.addEventListener("htmx:sendError", () => flash("the server cannot be reached"));
  document.body.addEventListener("htmx:afterRequest", (event) => {
    if (event.detail.successful && event.detail.requestConfig.verb !== "get") flash("");
  });
  document.body.addEventListener("htmx:afterSwap", (event) => {
    const who = event.target.id === "nav" ? $("#who") : null;
    if (who) document.body.dataset.canUse = who.dataset.canUse;
  });
}

// --- chat ---------------------------------------------------------------------------------------

const conversation = [];

function bubble(role) {
  const box = document.createElement("div");
  box.className = "msg " + role;
  $("#chat-log").append(box);
  return box;
}

async function readAttachments(files) {
  const out = [];
  for (const file of files) {
    if (file.size > MAX_ATTACHMENT) throw new Error(`${file.name} is over ${MAX_ATTACHMENT / 1024} KB`);
    out.push({ name: file.name, text: await file.text() });
  }
  return out;
}

async function* sseData(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length) yield { event, data: data.join("\n") };
    }
  }
}

function assistantBubble() {
  const box = bubble("assistant");
  const thinking = document.createElement("details");
  thinking.className = "thinking";
  thinking.hidden = true;
  thinking.innerHTML = "<summary>thinking</summary><pre></pre>";
  const answer = document.createElement("div");
  answer.className = "answer";
  const meta = document.createElement("small");
  meta.className = "meta";
  box.append(thinking, answer, meta);
  return { box, thinking, answer, meta };
}

async function streamReply(body, view) {
  const response = await fetch("/v1/chat/completions", {
    method: "POST", headers: { ...authHeaders(), "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  if (!response.ok) throw new Error(errorMessage(await response.text(), response.status));
  const routed = response.headers.get("X-Sovereign-Route-Model");
  const route = routed ? ` · routed to ${routed}: ${response.headers.get("X-Sovereign-Route-Reason") || ""}` : "";
  let text = "";
  for await (const { data } of sseData(response)) {
    if (data === "[DONE]") break;
    const chunk = JSON.parse(data);
    if (chunk.error) throw new Error(chunk.error.message);
    const delta = chunk.choices && chunk.choices[0] ? chunk.choices[0].delta || {} : {};
    if (delta.reasoning_content) {
      view.thinking.hidden = false;
      view.thinking.querySelector("pre").textContent += delta.reasoning_content;
    }
    if (delta.content) {
      text += delta.content;
      view.answer.textContent = text;
    }
    if (chunk.usage) {
      const u = chunk.usage;
      view.meta.textContent = `${chunk.model || body.model} · ${u.prompt_tokens} in / ${u.completion_tokens} out${route}`;
    }
  }
  return text;
}

async function sendChat(event) {
  event.preventDefault();
  const input = $("#chat-input");
  const prompt = input.value.trim();
  if (!prompt) return;
  const send = $("#chat-send");
  send.disabled = true;
  try {
    const files = await readAttachments($("#chat-files").files);
    let content = prompt;
    for (const file of files) content += `\n\nAttached file ${file.name}:\n\`\`\`\n${file.text}\n\`\`\``;
    const mine = bubble("user");
    mine.textContent = prompt + (files.length ? `\n📎 ${files.map((f) => f.name).join(", ")}` : "");
    conversation.push({ role: "user", content });
    input.value = "";
    $("#chat-files").value = "";
    $("#chat-attached").textContent = "";
    const body = { model: $("#chat-model").value || undefined, messages: conversation, stream: true,
                   stream_options: { include_usage: true } };
    if ($("#chat-thinking").checked) body.thinking = { type: "enabled" };
    if (body.model === "auto" && $("#chat-data-class").value) body.data_class = $("#chat-data-class").value;
    const view = assistantBubble();
    try {
      conversation.push({ role: "assistant", content: await streamReply(body, view) });
    } catch (error) {
      conversation.pop();
      view.box.classList.add("error");
      view.answer.textContent = error.message;
    }
  } catch (error) {
    flash(error.message);
  } finally {
    send.disabled = false;
  }
}

function wireChat() {
  if (!$("#chat-form")) return;
  $("#chat-form").addEventListener("submit", sendChat);
  $("#chat-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) $("#chat-form").requestSubmit();
  });
  $("#chat-files").addEventListener("change", (event) => {
    $("#chat-attached").textContent = [...event.target.files].map((f) => f.name).join(", ");
  });
  $("#chat-clear").addEventListener("click", () => { conversation.length = 0; $("#chat-log").textContent = ""; });
}

// --- a run's live trace ------------------------------------------------------------------------------

function traceRow(step, line) {
  const row = document.createElement("tr");
  row.className = "step kind-" + step.kind + (step.error ? " failed" : "");
  const usage = step.usage || {};
  const cells = [step.index, step.kind, (step.started_at || "").slice(11, 23), `${Math.round(step.duration_ms || 0)} ms`,
                 usage.prompt_tokens === undefined ? "" : `${usage.prompt_tokens} / ${usage.completion_tokens}`,
                 step.cost_usd ? "$" + step.cost_usd.toFixed(6) : "", step.error || line];
  for (const value of cells) {
    const cell = document.createElement("td");
    cell.textContent = value;
    row.append(cell);
  }
  return row;
}

async function followTrace() {
  const table = $("#trace");
  if (!table || !apiKey()) return;
  const status = $("#trace-status");
  const body = table.querySelector("tbody");
  body.textContent = "";
  try {
    const response = await fetch(`/v1/runs/${encodeURIComponent(table.dataset.run)}/events`, { headers: authHeaders() });
    if (!response.ok) throw new Error(errorMessage(await response.text(), response.status));
    status.textContent = "live";
    for await (const { event, data } of sseData(response)) {
      const payload = JSON.parse(data);
      if (event === "step") body.append(traceRow(payload.step, payload.line));
      if (event === "node") htmx.trigger("#run-header", "refresh");  // a swarm's sub-agent changed
      if (event === "done") {
        status.textContent = `finished: ${payload.status}`;
        htmx.trigger(document.body, "run-done");
        return;
      }
    }
    status.textContent = "the stream ended";
  } catch (error) {
    status.textContent = error.message;
  }
}

// --- knowledge upload -----------------------------------------------------------------------------

function wireIngest() {
  const form = $("#kb-ingest");
  if (!form) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const result = $("#kb-ingest-result");
    const lines = [];
    for (const file of $("#kb-files").files) {
      try {
        const done = await api("/v1/kb/documents", { method: "POST", body: { name: file.name, content: await file.text() } });
        lines.push(`${file.name}: ${done.outcome}, ${done.chunks} chunks`);
      } catch (error) {
        lines.push(`${file.name}: ${error.message}`);
      }
    }
    result.textContent = lines.join("; ");
    form.reset();
    htmx.trigger("#kb-documents", "refresh");
  });
}

wireHtmx();
wireSignIn();
wireChat();
wireIngest();
followTrace();
document.addEventListener("console:signed-in", followTrace);
