// The scoring page: one comment per line in, a row of three score bars per comment out.
"use strict";

// Display names; the axes themselves (and their order) come from /info.
const AXIS_NAMES = {
  warmth: ["温度", "warmth"],
  substance: ["实质", "substance"],
  template: ["模板化", "template"],
};

const $ = (id) => document.getElementById(id);
let axes = ["warmth", "substance", "template"];
let maxComments = null;

function axisLabel(axis) {
  const [zh, en] = AXIS_NAMES[axis] || [axis, ""];
  return { zh, en };
}

function showError(message, type) {
  const box = $("error");
  box.textContent = type ? `${message} (${type})` : message;
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

async function loadInfo() {
  try {
    const res = await fetch("info");
    if (!res.ok) {
      const body = await res.json().catch(() => ({}));
      $("model").textContent = body.error ? `模型未就绪 · ${body.error}` : "模型未就绪 · model not ready";
      return;
    }
    const info = await res.json();
    axes = info.axes;
    maxComments = info.limits.max_comments;
    $("model").textContent = `${info.model_id} · ${info.model_version} · ${info.backend}`;
    $("hint").textContent = `≤ ${maxComments} 条/次 · per request · Ctrl+Enter`;
    if (info.auth_required) $("key-row").hidden = false;
  } catch (err) {
    $("model").textContent = "服务不可达 · service unreachable";
  }
}

function renderHead() {
  const row = $("head-row");
  row.querySelectorAll("th.axis").forEach((th) => th.remove());
  for (const axis of axes) {
    const { zh, en } = axisLabel(axis);
    const th = document.createElement("th");
    th.className = `axis axis-${axis}`;
    th.innerHTML = `<span class="zh"></span> <span class="en"></span>`;
    th.querySelector(".zh").textContent = zh;
    th.querySelector(".en").textContent = en;
    row.appendChild(th);
  }
}

function scoreCell(axis, score, level) {
  const td = document.createElement("td");
  td.className = `score axis-${axis}`;
  const { zh, en } = axisLabel(axis);
  td.title = `${zh} ${en}: ${score.toFixed(3)} (level ${level})`;
  const bar = document.createElement("div");
  bar.className = "bar";
  bar.setAttribute("role", "meter");
  bar.setAttribute("aria-valuemin", "0");
  bar.setAttribute("aria-valuemax", "1");
  bar.setAttribute("aria-valuenow", score.toFixed(3));
  bar.setAttribute("aria-label", `${zh} ${en}`);
  const fill = document.createElement("div");
  fill.className = "fill";
  fill.style.width = `${Math.max(0, Math.min(1, score)) * 100}%`;
  bar.appendChild(fill);
  const value = document.createElement("span");
  value.className = "value";
  value.textContent = score.toFixed(2);
  const badge = document.createElement("span");
  badge.className = `level level-${level}`;
  badge.textContent = String(level);
  td.append(bar, value, badge);
  return td;
}

function renderResults(lines, body) {
  renderHead();
  const tbody = $("results").querySelector("tbody");
  tbody.replaceChildren();
  body.results.forEach((result, i) => {
    const tr = document.createElement("tr");
    tr.className = "result";
    const num = document.createElement("td");
    num.className = "num";
    num.textContent = String(i + 1);
    const text = document.createElement("td");
    text.className = "text";
    text.textContent = lines[i];
    tr.append(num, text);
    for (const axis of axes) tr.appendChild(scoreCell(axis, result[axis], result.levels[axis]));
    tbody.appendChild(tr);
  });
  $("results-card").hidden = false;
}

async function score() {
  clearError();
  const lines = $("comments").value.split("\n").filter((line) => line.trim() !== "");
  if (lines.length === 0) {
    showError("请输入至少一条评论 · Enter at least one comment", "");
    return;
  }
  const headers = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) headers["X-API-Key"] = key;
  const button = $("score");
  button.disabled = true;
  button.textContent = "评分中… Scoring";
  try {
    const res = await fetch("v1/score", {
      method: "POST",
      headers,
      body: JSON.stringify({ comments: lines.map((text, i) => ({ id: i, text })) }),
    });
    const body = await res.json().catch(() => null);
    if (!res.ok) {
      if (res.status === 401) $("key-row").hidden = false;
      const retry = res.headers.get("Retry-After");
      const message = body && body.error ? body.error : `HTTP ${res.status}`;
      showError(retry ? `${message} (retry in ${retry} s)` : message, body ? body.error_type : "");
      return;
    }
    renderResults(lines, body);
  } catch (err) {
    showError(`请求失败 · Request failed: ${err.message}`, "network");
  } finally {
    button.disabled = false;
    button.textContent = "评分 Score";
  }
}

$("score").addEventListener("click", score);
$("comments").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) score();
});
loadInfo();
