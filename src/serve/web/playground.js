// A key holder chats with a served model. The key lives in `key` only (never in storage, a cookie or the URL).
import { call, el, micros, sseEvents } from "/web/common.js";

let key = "";
const history = [];
const $ = (id) => document.getElementById(id);

async function showBalance() {
  const balance = await call("/v1/balance", key);
  $("balance").textContent = `balance: ${micros(balance.available)}`;
  $("balance").dataset.available = String(balance.available);
}

$("key-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  key = $("key").value.trim();
  $("key").value = "";
  try {
    const models = await call("/v1/models", key);
    $("model").replaceChildren(...models.data.map((m) => el("option", { value: m.id }, m.id)));
    await showBalance();
    $("connect").classList.add("hidden");
    $("chat-panel").classList.remove("hidden");
    $("key-error").textContent = "";
  } catch (error) {
    key = "";
    $("key-error").textContent =
      error.status === 401 ? "this key is not valid (revoked, expired or mistyped)" : error.message;
  }
});

$("forget").addEventListener("click", () => {
  key = "";
  location.reload();
});

$("message-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const content = $("message").value.trim();
  if (!content) return;
  $("message").value = "";
  $("chat-error").textContent = "";
  $("send").disabled = true;
  history.push({ role: "user", content });
  $("chat").append(el("div", { class: "message user" }, content));
  const text = el("span", { class: "text" });
  const meta = el("span", { class: "meta" }, "streaming…");
  const bubble = el("div", { class: "message assistant" }, text, meta);
  $("chat").append(bubble);
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify({
        model: $("model").value,
        messages: history,
        // Empty: the model's own limit.
        ...($("max-tokens").value ? { max_tokens: Number($("max-tokens").value) } : {}),
        temperature: Number($("temperature").value),
        stream: true,
        stream_options: { include_usage: true },
      }),
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(body.error?.message ?? `HTTP ${response.status}`);
    }
    const requestId = response.headers.get("x-request-id");
    let answer = "";
    let usage;
    for await (const chunk of sseEvents(response)) {
      const delta = chunk.choices?.[0]?.delta?.content ?? "";
      answer += delta;
      // Without the blank lines an answer may open with.
      text.textContent = answer.trimStart();
      if (chunk.usage) usage = chunk.usage;
      $("chat").scrollTop = $("chat").scrollHeight;
    }
    history.push({ role: "assistant", content: answer });
    // The stream settles before its [DONE]: the charge is the ledger's own record of this request.
    const charged = await call(`/v1/requests/${encodeURIComponent(requestId)}`, key);
    meta.textContent = `${usage?.prompt_tokens ?? "?"} prompt + ${usage?.completion_tokens ?? "?"} completion tokens · ${micros(charged.charged)}`;
    meta.dataset.charged = String(charged.charged);
    await showBalance();
  } catch (error) {
    history.pop();
    bubble.remove();
    $("chat-error").textContent = error.message;
  } finally {
    $("send").disabled = false;
  }
});
