// The scoring page: comments (typed, one per line, or from a .txt/.csv file) in; per
// comment three score bars, the suggested action, its evidence, its duplicate cluster and
// whether it was truncated out; the whole result as a CSV download.
"use strict";

// Display names; the axes themselves (and their order) come from /info.
const AXIS_NAMES = {
  warmth: ["温度", "warmth"],
  substance: ["实质", "substance"],
  template: ["模板化", "template"],
};

// The level definitions (data_cards/labels.md), shown on hover.
const LEVELS = {
  warmth: ["hostile 敌意", "neutral, mechanical 中性、机械", "some warmth 有些温度", "strong, specific warmth 温暖而具体"],
  substance: ["nothing 无内容", "bare opinion 只有态度", "a concrete detail or reason 有具体细节或理由",
              "several details, advice, a story 多个细节、建议或经历"],
  template: ["written for this content 针对内容而写", "mostly specific 大体具体", "largely generic 大体套话",
             "filler, copy-paste, ads, bot text 灌水、复制粘贴、广告、机器文本"],
};
const ACTIONS = { pass: "通过 pass", review: "复核 review", fold: "折叠 fold" };

const $ = (id) => document.getElementById(id);
let axes = ["warmth", "substance", "template"];
let maxComments = null;
let lastRows = [];  // [{text, result}] of the last scoring, for the CSV download
let downloadUrl = null;

function levelTitle(axis) {
  const { zh, en } = axisLabel(axis);
  const defs = LEVELS[axis] || [];
  return `${zh} ${en}\n` + defs.map((d, i) => `${i}: ${d}`).join("\n");
}

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
    th.title = levelTitle(axis);
    th.innerHTML = `<span class="zh"></span> <span class="en"></span>`;
    th.querySelector(".zh").textContent = zh;
    th.querySelector(".en").textContent = en;
    row.appendChild(th);
  }
  row.querySelectorAll("th.verdict").forEach((th) => th.remove());
  for (const [cls, zh, en] of [["action", "处理", "action"], ["evidence", "证据", "evidence"],
                               ["cluster", "重复", "duplicates"], ["truncated", "截断", "truncated"]]) {
    const th = document.createElement("th");
    th.className = `verdict col-${cls}`;
    th.textContent = `${zh} ${en}`;
    row.appendChild(th);
  }
}

function evidenceText(evidence) {
  return (evidence || []).map((e) => {
    if (e.kind === "duplicate") return `${e.category === "exact" ? "复制 exact copy" : "近似 near copy"} ×${e.count}`;
    return `${e.category}: ${e.match}`;
  });
}

function verdictCells(result) {
  const action = document.createElement("td");
  action.className = "action";
  if (result.action) {
    const badge = document.createElement("span");
    badge.className = `action-badge action-${result.action}`;
    badge.textContent = ACTIONS[result.action] || result.action;
    badge.dataset.action = result.action;
    action.appendChild(badge);
  } else {
    action.textContent = "–";
  }
  const evidence = document.createElement("td");
  evidence.className = "evidence";
  const items = evidenceText(result.evidence);
  evidence.textContent = items.length ? items.join("; ") : "–";
  const cluster = document.createElement("td");
  cluster.className = "cluster";
  const dup = result.duplicates;
  if (dup) {
    const copies = dup.exact_count + dup.near_count;
    cluster.textContent = copies > 0 ? `${dup.cluster_id.slice(0, 8)} ×${copies + 1}` : dup.cluster_id.slice(0, 8);
    cluster.title = `cluster ${dup.cluster_id}: ${dup.exact_count} exact, ${dup.near_count} near copies seen before`;
    cluster.dataset.cluster = dup.cluster_id;
  } else {
    cluster.textContent = "–";
  }
  const truncated = document.createElement("td");
  truncated.className = "truncated";
  truncated.textContent = result.truncated ? "截断 yes" : "";
  truncated.title = result.truncated ? "the model read only the start of this comment (its first max_length tokens)" : "";
  return [action, evidence, cluster, truncated];
}

function scoreCell(axis, score, level) {
  const td = document.createElement("td");
  td.className = `score axis-${axis}`;
  const { zh, en } = axisLabel(axis);
  td.title = `${zh} ${en}: ${score.toFixed(3)}, level ${level}: ${(LEVELS[axis] || [])[level] || ""}`;
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
    tr.append(...verdictCells(result));
    tbody.appendChild(tr);
  });
  $("results-card").hidden = false;
  lastRows = lines.map((text, i) => ({ text, result: body.results[i] }));
  offerCsv();
}

// ------------------------------------------------------------------ CSV out

function csvField(value) {
  const s = value === null || value === undefined ? "" : String(value);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function offerCsv() {
  const head = ["text", ...axes, ...axes.map((a) => `${a}_level`), "action", "template_fused", "duplicate_cluster",
                "exact_copies", "near_copies", "evidence", "truncated"];
  const lines = [head.join(",")];
  for (const { text, result } of lastRows) {
    const dup = result.duplicates || {};
    lines.push([text, ...axes.map((a) => result[a]), ...axes.map((a) => result.levels[a]), result.action,
                result.template_fused, dup.cluster_id, dup.exact_count, dup.near_count,
                evidenceText(result.evidence).join("; "), result.truncated ? "true" : "false"].map(csvField).join(","));
  }
  if (downloadUrl) URL.revokeObjectURL(downloadUrl);
  // A byte-order mark so that spreadsheet programs read the file as UTF-8.
  downloadUrl = URL.createObjectURL(new Blob(["\ufeff" + lines.join("\r\n") + "\r\n"], { type: "text/csv" }));
  $("download").href = downloadUrl;
  $("download").hidden = false;
}

// ------------------------------------------------------------------ files in

function parseCsv(text) {
  // RFC 4180: quoted fields may hold commas, quotes ("") and line breaks.
  const rows = [];
  let row = [], field = "", quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i++; }
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") { row.push(field); field = ""; }
    else if (c === "\n" || (c === "\r" && text[i + 1] === "\n")) {
      if (c === "\r") i++;
      row.push(field); rows.push(row); row = []; field = "";
    } else field += c;
  }
  if (field !== "" || row.length) { row.push(field); rows.push(row); }
  return rows;
}

function commentsFromFile(name, text) {
  text = text.replace(/^\ufeff/, "");
  if (!name.toLowerCase().endsWith(".csv")) return text.replace(/\r\n/g, "\n").split("\n");
  const rows = parseCsv(text);
  if (rows.length === 0) return [];
  const header = rows[0].map((h) => h.trim().toLowerCase());
  const col = header.indexOf("text");
  const body = col >= 0 ? rows.slice(1) : rows;
  return body.map((r) => r[col >= 0 ? col : 0] || "");
}

async function loadFile() {
  const file = $("file").files[0];
  if (!file) return;
  const comments = commentsFromFile(file.name, await file.text());
  // One comment per line in the box: line breaks inside a comment become spaces.
  $("comments").value = comments.map((c) => c.replace(/[\r\n]+/g, " ")).join("\n");
  const n = comments.filter((c) => c.trim() !== "").length;
  $("file-note").textContent = `${file.name}: ${n} 条评论 · comments`;
}

async function score() {
  clearError();
  // The input contract (README): one comment per line; blank or white-space-only lines
  // are skipped, and how many is shown. A bare "\r" does not end a line.
  const typed = $("comments").value.replace(/\r\n/g, "\n").replace(/\n$/, "").split("\n");
  const lines = typed.filter((line) => line.trim() !== "");
  const skipped = typed.length - lines.length;
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
    // Requests of at most max_comments each (a file may hold more), in order.
    const step = maxComments || lines.length;
    const body = { results: [] };
    for (let start = 0; start < lines.length; start += step) {
      const part = lines.slice(start, start + step);
      const res = await fetch("v1/score", {
        method: "POST",
        headers,
        body: JSON.stringify({ comments: part.map((text, i) => ({ id: start + i, text })) }),
      });
      const answer = await res.json().catch(() => null);
      if (!res.ok) {
        if (res.status === 401) $("key-row").hidden = false;
        const retry = res.headers.get("Retry-After");
        const message = answer && answer.error ? answer.error : `HTTP ${res.status}`;
        showError(retry ? `${message} (retry in ${retry} s)` : message, answer ? answer.error_type : "");
        return;
      }
      body.results.push(...answer.results);
    }
    renderResults(lines, body);
    $("skipped").textContent = skipped > 0 ? `跳过 ${skipped} 个空行 · ${skipped} blank line(s) skipped` : "";
  } catch (err) {
    showError(`请求失败 · Request failed: ${err.message}`, "network");
  } finally {
    button.disabled = false;
    button.textContent = "评分 Score";
  }
}

$("score").addEventListener("click", score);
$("file").addEventListener("change", loadFile);
$("comments").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) score();
});
loadInfo();
