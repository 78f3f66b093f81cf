// The review page: one row at a time from the review queue; every decision is saved at once.
// Every text from a file or the server is set with textContent: a title is data, never HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { file: null, rows: [], skipped: [], history: [], results: [] };

async function api(method, path, body) {
  // the server refuses a request that changes something without this header (CSRF)
  const options = { method, headers: { "X-Requested-With": "occlass" } };
  if (body !== undefined) {
    options.body = body instanceof Blob ? body : JSON.stringify(body);
    if (!(body instanceof Blob)) options.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `${response.status} ${response.statusText}`);
  return data;
}

function say(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function queue() {
  const open = state.rows.filter((r) => r.review && !r.decision);
  const skipped = state.skipped.filter((id) => open.some((r) => r.row === id));
  return open.filter((r) => !skipped.includes(r.row))
    .concat(skipped.map((id) => open.find((r) => r.row === id)));
}

function candidates(row) {
  const list = [];
  for (let i = 1; row.prediction[`pred_code_${i}`] !== undefined; i++) {
    const code = row.prediction[`pred_code_${i}`];
    if (code === null) break;
    list.push({ code, title: row.prediction[`pred_title_${i}`],
                score: row.prediction[`pred_score_${i}`] });
  }
  return list;
}

function render() {
  const rows = state.rows.filter((r) => r.review);
  const decided = rows.filter((r) => r.decision);
  const learnt = decided.filter((r) => r.decision.decided_by === "correction").length;
  $("progress").textContent = state.file === null ? "Open a file to review." :
    `${decided.length} of ${rows.length} rows to review decided` +
    (learnt ? ` (${learnt} learnt from your decisions)` : "") +
    ` · ${state.rows.length} rows in the file`;
  const current = queue()[0];
  $("card").hidden = !current;
  $("done").hidden = state.file === null || Boolean(current);
  $("exports").hidden = state.file === null;
  if (!current) return;
  $("title").textContent = current.title || "(empty title)";
  $("description").textContent = current.description || "";
  $("description-box").hidden = !current.description;
  $("description-box").open = false;
  $("decision").textContent = `row ${current.row + 1}` +
    (state.skipped.includes(current.row) ? " · skipped before" : "");
  const body = $("candidates").tBodies[0];
  body.replaceChildren();
  candidates(current).slice(0, 5).forEach((c, i) => {
    const tr = el("tr");
    tr.append(el("td", i + 1, "key"), el("td", c.code), el("td", c.title),
              el("td", c.score, "score"),
              el("td", i === 0 ? current.prediction.pred_evidence_1 : "", "evidence"));
    tr.addEventListener("click", () => decide(c.code));
    body.append(tr);
  });
  const details = $("details");
  details.replaceChildren();
  const keys = Object.keys(current.prediction)
    .filter((k) => !/^pred_(code|title|score)_\d+$/.test(k) && k !== "pred_evidence_1");
  keys.sort((a, b) => b.startsWith("coded_") - a.startsWith("coded_"));
  for (const key of keys) {
    const cls = key.startsWith("coded_") ? "coded" : undefined;
    details.append(el("dt", key, cls), el("dd", current.prediction[key] ?? "", cls));
  }
}

async function decide(code) {
  const current = queue()[0];
  if (!current) return;
  const reviewer = $("reviewer").value.trim() || "reviewer";
  say(`saving row ${current.row + 1}…`);
  try {
    const saved = await api("PUT", `/v1/files/${state.file}/rows/${current.row}/decision`,
                            { code, reviewer });
    current.decision = { code, decided_by: "reviewer", reviewer };
    for (const r of saved.resolved) {
      const row = state.rows.find((x) => x.row === r.row);
      row.decision = { code: r.code, decided_by: "correction", reviewer };
    }
    state.history.push(current.row);
    const replaced = saved.replaced && saved.replaced.reviewer !== reviewer ?
      ` (replaces ${saved.replaced.reviewer}'s ${saved.replaced.code})` : "";
    say(`Saved ${code} ${saved.title} for “${current.title}”${replaced}` +
        (saved.resolved.length ? `; learnt: ${saved.resolved.length} more row(s) resolved` : ""));
  } catch (err) {
    say(err.message, true);
  }
  $("search").value = "";
  $("search").blur();
  $("results").replaceChildren();
  render();
}

function skip() {
  const current = queue()[0];
  if (!current) return;
  state.skipped = state.skipped.filter((id) => id !== current.row).concat([current.row]);
  render();
}

async function undo() {
  const row = state.history.pop();
  if (row === undefined) return say("Nothing to undo.");
  try {
    const { undone } = await api("DELETE", `/v1/files/${state.file}/rows/${row}/decision`);
    for (const id of undone) state.rows.find((r) => r.row === id).decision = null;
    state.skipped = state.skipped.filter((id) => id !== row);
    say(`Undone: row ${row + 1}` + (undone.length > 1 ? ` and ${undone.length - 1} learnt` : ""));
  } catch (err) {
    say(err.message, true);
  }
  render();
}

let searching = 0;
async function search() {
  const q = $("search").value.trim();
  const ticket = ++searching;
  const found = q ? (await api("GET", `/v1/occupations?q=${encodeURIComponent(q)}`)).occupations : [];
  if (ticket !== searching) return;  // a later search has begun
  state.results = found;
  $("results").replaceChildren(...found.map((o) => {
    const li = el("li");
    li.append(el("span", `${o.code} ${o.title}`),
              el("span", o.match ? ` · ${o.match}` : "", "match"));
    li.addEventListener("click", () => decide(o.code));
    return li;
  }));
}

async function loadFiles() {
  const { files } = await api("GET", "/v1/files");
  $("files").replaceChildren(el("option", "(none)"),
    ...files.map((f) => {
      const option = el("option", `${f.name} (${f.to_review} to review)`);
      option.value = f.id;
      return option;
    }));
  $("files").firstChild.value = "";
  return files;
}

async function openFile(id) {
  state.file = id;
  state.skipped = [];
  state.history = [];
  $("files").value = id === null ? "" : String(id);
  if (id === null) {
    state.rows = [];
  } else {
    history.replaceState(null, "", `#file=${id}`);
    state.rows = (await api("GET", `/v1/files/${id}/rows`)).rows;
    $("export").href = `/v1/files/${id}/export`;
    $("corrections").href = `/v1/files/${id}/corrections`;
  }
  render();
}

async function upload(file) {
  say(`opening ${file.name} (a raw file is predicted first)…`);
  try {
    const opened = await api("POST", `/v1/files?name=${encodeURIComponent(file.name)}`, file);
    await loadFiles();
    await openFile(opened.id);
    say(`Opened ${opened.name}.`);
  } catch (err) {
    say(err.message, true);
  }
  $("upload").value = "";
}

function onKey(event) {
  if (event.target === $("search")) {
    if (event.key === "Enter" && state.results.length) decide(state.results[0].code);
    if (event.key === "Escape") $("search").blur();
    return;
  }
  if (event.target.tagName === "INPUT" || event.target.tagName === "SELECT") return;
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const n = Number(event.key);
  const current = queue()[0];
  if (n >= 1 && n <= 5 && current) {
    const c = candidates(current)[n - 1];
    if (c) decide(c.code);
  } else if (event.key === "/") {
    event.preventDefault();
    $("search").focus();
  } else if (event.key === "s") {
    skip();
  } else if (event.key === "u") {
    undo();
  }
}

async function start() {
  $("reviewer").value = localStorage.getItem("reviewer") || "";
  $("reviewer").addEventListener("change", () =>
    localStorage.setItem("reviewer", $("reviewer").value.trim()));
  $("files").addEventListener("change", () =>
    openFile($("files").value === "" ? null : Number($("files").value)));
  $("upload").addEventListener("change", () => $("upload").files[0] && upload($("upload").files[0]));
  $("skip").addEventListener("click", skip);
  $("undo").addEventListener("click", undo);
  $("search").addEventListener("input", () => search().catch((err) => say(err.message, true)));
  document.addEventListener("keydown", onKey);
  try {
    const health = await api("GET", "/health");
    $("identity").textContent = `run ${health.run} · O*NET ${health.taxonomy}`;
    const files = await loadFiles();
    const wanted = Number((location.hash.match(/file=(\d+)/) || [])[1]);
    const chosen = files.find((f) => f.id === wanted) || files[files.length - 1];
    await openFile(chosen ? chosen.id : null);
  } catch (err) {
    say(err.message, true);
  }
  document.body.dataset.ready = "true";
}

start();
