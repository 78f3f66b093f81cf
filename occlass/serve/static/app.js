// The review page: one row at a time from a queue; every decision is saved at once.
// Every text from a file or the server is set with textContent: a title is data, never HTML.
// Safe at keying speed: no key acts while a decision is being saved (keys pressed then are
// dropped, never applied to a row the reviewer has not seen), and search hits belong to the row
// and the query that found them. Rows of one title are shown once, with their count, and
// decided together. Skips and undo history are the reviewer's, kept by the server; other
// reviewers' decisions show up on focus and every POLL_MS.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { file: null, rows: [], skipped: [], history: [], shown: null, built: null,
                same: [],
                pinned: null, busy: false, changes: 0, info: null,
                search: { row: null, query: "", hits: [], at: 0 } };
const POLL_MS = 5000;
const ALTERNATES_SHOWN = 30;
const GROUPS = ["detailed", "broad", "minor", "major"];
const LEVELS = { onet: "O*NET-SOC occupation", detailed: "SOC occupation",
                 broad: "broad group", minor: "minor group", major: "major group",
                 uncodable: "uncodable", insufficient_information: "insufficient information",
                 not_in_labour_force: "not in the labour force" };
const OUTCOME_KEYS = { x: "uncodable", "?": "insufficient_information",
                       n: "not_in_labour_force" };

async function api(method, path, body) {
  // the server refuses a request that changes something without this header (CSRF)
  const options = { method, headers: { "X-Requested-With": "occlass" } };
  if (body !== undefined) {
    options.body = body instanceof Blob ? body : JSON.stringify(body);
    if (!(body instanceof Blob)) options.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw Object.assign(new Error(data.error || `${response.status} ${response.statusText}`),
                        { data });
  }
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

const percent = (x) => (x === null || x === undefined || x === "" ? "" :
                        `${Math.round(Number(x) * 100)}%`);

const same = (a, b) => Boolean(a && b && a.row === b.row);
const key = (title) => (title || "").trim().toLowerCase().replace(/\s+/g, " ");
// The code the model gave a row it accepted, or its coded code: what `c` confirms.
const modelCode = (row) => row.prediction.coded_code ||
  (row.audit && !("coded_code" in row.prediction) ? row.prediction.pred_code_1 : null);

// Whether a row passes the filters: the level the model coded it at ("none": not coded), and
// its confidence (the coded code's, else the top candidate's) below a percentage.
function filtered(r) {
  const [level, below] = [$("level").value, $("below").value];
  const p = r.prediction;
  const confidence = Number((p.coded_code ? p.coded_confidence : p.confidence) ?? 0);
  return (!level || (p.coded_level || "none") === level) &&
    (below === "" || confidence * 100 < Number(below));
}

const filtering = () => Boolean($("level").value || $("below").value);

// The queue of the chosen view: rows to review and the audit sample's (rows the model
// accepted, to check), the audit sample only, or rows the model coded at a SOC group (to
// confirm or refine); undecided, filtered, rows of one title as one entry (a list of rows; an
// audit row only with audit rows), in file order or most frequent first, skipped entries last.
function queue() {
  const view = $("view").value;
  const titles = new Map();
  const wanted = { review: (r) => r.review || r.audit, audit: (r) => r.audit,
                   groups: (r) => !r.review && GROUPS.includes(r.prediction.coded_level) }[view];
  for (const r of state.rows) {
    if (r.decision || !filtered(r) || !wanted(r)) continue;
    const k = `${r.audit ? "audit\n" : ""}${key(r.title)}`;
    if (!titles.has(k)) titles.set(k, []);
    titles.get(k).push(r);
  }
  const entries = [...titles.values()].sort((a, b) => a[0].row - b[0].row);  // file order
  if ($("order").value === "frequency") entries.sort((a, b) => b.length - a.length);
  const skipped = (e) => state.skipped.indexOf(e[0].row);
  return entries.filter((e) => skipped(e) < 0)
    .concat(entries.filter((e) => skipped(e) >= 0).sort((a, b) => skipped(a) - skipped(b)));
}

function candidates(row) {
  const list = [];
  for (let i = 1; row.prediction[`pred_code_${i}`] !== undefined; i++) {
    const code = row.prediction[`pred_code_${i}`];
    if (code === null) break;
    list.push({ code, title: row.prediction[`pred_title_${i}`] });
  }
  return list;
}

function clearSearch() {
  state.search = { row: null, query: "", hits: [], at: 0 };
  $("search").value = "";
  $("results").replaceChildren();
}

function render() {
  const rows = state.rows.filter((r) => r.review);
  const decided = rows.filter((r) => r.decision);
  const learnt = decided.filter((r) => r.decision.decided_by === "correction").length;
  const groups = state.rows.filter((r) => !r.review && GROUPS.includes(r.prediction.coded_level));
  $("progress").textContent = state.file === null ? "Open a file to review." :
    `${decided.length} of ${rows.length} rows to review decided` +
    (learnt ? ` (${learnt} learnt from your decisions)` : "") +
    ` · ${groups.filter((r) => r.decision).length} of ${groups.length} coded at a group ` +
    `level checked · ${state.rows.length} rows in the file`;
  const entries = queue();
  if (state.file !== null && filtering()) {
    $("progress").textContent += ` · ${entries.flat().length} undecided rows pass the filters`;
  }
  const entry = state.pinned ? [state.rows.find((r) => r.row === state.pinned)] :
    entries[0] || [];
  const current = entry[0] || null;
  if (!same(current, state.shown)) {
    clearSearch();
    $("description-box").open = false;
    state.info = null;
    $("reference").hidden = true;
  }
  state.shown = current;
  state.same = entry.slice(1).map((r) => r.row);
  renderDecisions();
  $("card").hidden = !current;
  $("done").hidden = state.file === null || Boolean(current);
  $("done").textContent = filtering() ? "No undecided row of this queue passes the filters." :
    "Every row in this queue has a decision. Export below.";
  $("exports").hidden = state.file === null;
  if (!current) return;
  const p = current.prediction;
  $("row-id").textContent = `row ${current.row + 1}` +
    (state.same.length ? ` · ×${entry.length} rows of this title (rows ` +
      `${entry.map((r) => r.row + 1).join(", ")}), decided together` : "") +
    (state.skipped.includes(current.row) ? " · skipped before" : "") +
    (current.audit ? " · audit sample: the model accepted this row; confirm (c) or correct " +
      "its code" : "") +
    (current.decision ? ` · decided: ${describe(current.decision)}, by ` +
      `${current.decision.decided_by === "correction" ? "learning from " : ""}` +
      `${current.decision.reviewer} — decide again to change it` : "");
  $("title").textContent = current.title || "(empty title)";
  $("description").textContent = current.description || "";
  $("description-box").hidden = !current.description;
  $("model").textContent = p.coded_code ?
    `Model: ${p.coded_code} ${p.coded_title} · ${LEVELS[p.coded_level]} · ` +
    `${percent(p.coded_confidence)} confident — c confirms` : modelCode(current) ?
    `Model: ${p.pred_code_1} ${p.pred_title_1} · ${percent(p.confidence)} confident — ` +
    "c confirms" :
    `Model: not coded at any level` + (p.confidence != null ?
      ` (top candidate ${percent(p.confidence)} confident)` : "");
  $("confirm").hidden = !modelCode(current);
  if (same(current, state.built)) return;  // a refresh: the same row keeps its elements
  state.built = current;
  const body = $("candidates").tBodies[0];
  body.replaceChildren();
  candidates(current).slice(0, 5).forEach((c, i) => {
    const tr = el("tr");
    tr.append(el("td", i + 1, "key"), el("td", c.code, "code"), el("td", c.title),
              el("td", i === 0 ? percent(p.confidence) : "", "score"),
              el("td", i === 0 ? p.pred_evidence_1 : "", "evidence"));
    tr.addEventListener("click", () => decide(current, { code: c.code }));
    body.append(tr);
  });
  const details = $("details");
  details.replaceChildren();
  const keys = Object.keys(p)
    .filter((k) => !/^pred_(code|title|score)_\d+$/.test(k) && k !== "pred_evidence_1");
  keys.sort((a, b) => b.startsWith("coded_") - a.startsWith("coded_"));
  for (const key of keys) {
    const cls = key.startsWith("coded_") ? "coded" : undefined;
    details.append(el("dt", key, cls), el("dd", p[key] ?? "", cls));
  }
}

// A candidate's reference text (`i`; again: the next candidate's, after the last none), each
// code's fetched once; it belongs to the row and the candidate it was asked for.
const references = new Map();
async function reference() {
  const row = state.shown;
  const list = candidates(row).slice(0, 5);
  const at = state.info && same(state.info.row, row) ? state.info.at + 1 : 0;
  state.info = at < list.length ? { row, at } : null;
  [...$("candidates").tBodies[0].rows].forEach((tr, i) =>
    tr.classList.toggle("at", state.info !== null && i === at));
  $("reference").hidden = true;
  if (!state.info) return;
  const { code } = list[at];
  if (!references.has(code)) {
    references.set(code, api("GET", `/v1/occupations/${encodeURIComponent(code)}`)
      .catch((err) => { references.delete(code); throw err; }));
  }
  const found = await references.get(code);
  if (!state.info || !same(row, state.shown) || state.info.at !== at) return;
  const more = found.alternate_titles.length - ALTERNATES_SHOWN;
  $("reference-title").textContent = `${at + 1}: ${found.code} ${found.title}`;
  $("reference-groups").textContent =
    found.hierarchy.map((g) => `${g.code} ${g.title}`).join(" › ");
  $("reference-description").textContent = found.description || "";
  $("reference-alternates").textContent =
    found.alternate_titles.slice(0, ALTERNATES_SHOWN).join(" · ") +
    (more > 0 ? ` … (${more} more)` : "") || "—";
  $("reference-related").textContent =
    found.related.map((o) => `${o.code} ${o.title}`).join(" · ") || "—";
  $("reference").hidden = false;
}

function describe(decision) {
  return decision.code ? `${decision.code} (${LEVELS[decision.level]})` : LEVELS[decision.level];
}

// The list of decided rows (learnt ones too), built while it is open; a click revisits one.
function renderDecisions() {
  const decided = state.rows.filter((r) => r.decision);
  $("decisions-count").textContent = String(decided.length);
  if (!$("decisions-box").open) return;
  $("decisions").replaceChildren(...decided.map((r) => {
    const li = el("li", `row ${r.row + 1} · ${r.title || "(empty title)"} → ` +
                        `${describe(r.decision)} · ${r.decision.decided_by} ` +
                        `${r.decision.reviewer}`);
    li.addEventListener("click", () => pin(r.row));
    return li;
  }));
}

function pin(row) {
  if (state.busy) return;
  state.pinned = state.rows.some((r) => r.row === row) ? row : null;
  render();
}

function reviewerName() {
  const name = $("reviewer").value.trim();
  if (!name) {
    say("Type your name (Reviewer) before deciding.", true);
    $("reviewer").focus();
  }
  return name;
}

// Save `choice` ({code} or {outcome}) for `row`, the row on screen when it was made. One save
// at a time: the next row is shown when it returns.
async function decide(row, choice) {
  if (state.busy || !same(row, state.shown)) return;
  const reviewer = reviewerName();
  if (!reviewer) return;
  const also = state.same;
  state.busy = true;
  state.changes++;
  document.body.dataset.busy = "true";
  say(`saving row ${row.row + 1}…`);
  try {
    const comment = $("comment").value.trim() || null;
    const saved = await api("PUT", `/v1/files/${state.file}/rows/${row.row}/decision`,
                            { ...choice, comment, reviewer, also });
    for (const id of [row.row, ...saved.also]) {
      state.rows.find((x) => x.row === id).decision = {
        code: saved.code, level: saved.level, comment, decided_by: "reviewer", reviewer };
    }
    state.pinned = null;
    if (row.audit) loadAudit().catch((err) => say(err.message, true));
    for (const r of saved.resolved) {
      const other = state.rows.find((x) => x.row === r.row);
      other.decision = { code: r.code, level: "onet", decided_by: "correction", reviewer };
    }
    state.history.push(row.row);
    $("comment").value = "";
    const replaced = saved.replaced && saved.replaced.reviewer !== reviewer ?
      ` (replaces ${saved.replaced.reviewer}'s ${saved.replaced.code || saved.replaced.level})` : "";
    say(`Saved ${saved.code ? `${saved.code} ${saved.title}` : LEVELS[saved.level]} for ` +
        `“${row.title}”${also.length ? ` (×${also.length + 1})` : ""}${replaced}` +
        (saved.resolved.length ? `; learnt: ${saved.resolved.length} more row(s) resolved` : ""));
  } catch (err) {
    say(err.message, true);
  } finally {
    state.busy = false;
    delete document.body.dataset.busy;
  }
  $("search").blur();
  render();
}

async function skip() {
  const current = state.shown;
  if (!current || state.busy || state.pinned !== null) return;
  const reviewer = reviewerName();
  if (!reviewer) return;
  state.skipped = state.skipped.filter((id) => id !== current.row).concat([current.row]);
  render();
  const path = `/v1/files/${state.file}/rows/${current.row}/skip`;
  await api("PUT", `${path}?reviewer=${encodeURIComponent(reviewer)}`)
    .catch((err) => say(err.message, true));
}

// Undo the reviewer's own last decision (never another reviewer's: the server refuses).
async function undo() {
  if (state.busy) return;
  const reviewer = reviewerName();
  if (!reviewer) return;
  const row = state.history.pop();
  if (row === undefined) return say("Nothing to undo.");
  state.busy = true;
  state.changes++;
  try {
    const path = `/v1/files/${state.file}/rows/${row}/decision`;
    const { undone } = await api("DELETE", `${path}?reviewer=${encodeURIComponent(reviewer)}`);
    for (const id of undone) state.rows.find((r) => r.row === id).decision = null;
    state.skipped = state.skipped.filter((id) => id !== row);
    state.pinned = null;
    say(`Undone: row ${row + 1}` + (undone.length > 1 ? ` and ${undone.length - 1} more` : ""));
  } catch (err) {
    say(err.message, true);
  } finally {
    state.busy = false;
  }
  render();
}

// The rows' decisions again (other reviewers' too), and this reviewer's skips and history; a
// refresh that began before a decision of this page is dropped.
async function refresh() {
  if (state.file === null || state.busy) return;
  const [file, changes, reviewer] = [state.file, state.changes, $("reviewer").value.trim()];
  const { decisions } = await api("GET", `/v1/files/${file}/decisions`);
  const session = reviewer ? await api("GET", `/v1/files/${file}/session?reviewer=` +
                                              encodeURIComponent(reviewer)) : null;
  if (file !== state.file || changes !== state.changes || state.busy) return;
  for (const r of state.rows) r.decision = decisions[r.row] || null;
  if (session) Object.assign(state, { skipped: session.skipped, history: session.history });
  render();
  await loadAudit();
}

// The audit sample's state: rows checked and the reviewer–model agreement on them.
async function loadAudit() {
  if (state.file === null) return;
  const file = state.file;
  const report = await api("GET", `/v1/files/${file}/audit`);
  if (file !== state.file) return;
  $("audit-summary").textContent = report.seed === null ? "none drawn" :
    `${report.checked} of ${report.size} checked · agreement ${report.agreed}/` +
    `${report.checked}` + (report.checked ? ` (${percent(report.agreement)})` : "") +
    ` · seed ${report.seed}`;
}

async function drawAudit(event) {
  event.preventDefault();
  if (state.file === null || state.busy) return;
  document.activeElement.blur();
  try {
    const sample = { size: Number($("audit-size").value), seed: Number($("audit-seed").value) };
    const report = await api("PUT", `/v1/files/${state.file}/audit`, sample);
    await openFile(state.file);
    say(`Audit sample drawn: ${report.size} rows the model accepted.`);
  } catch (err) {
    say(err.message, true);
  }
}

function showHits() {
  const { hits, at } = state.search;
  $("results").replaceChildren(...hits.map((o, i) => {
    const li = el("li", undefined, i === at ? "at" : undefined);
    li.append(el("span", o.code, "code"), el("span", ` ${o.title}`),
              el("span", o.level !== "onet" ? ` · ${LEVELS[o.level]}` : "", "match"),
              el("span", o.match ? ` · ${o.match}` : "", "match"));
    li.addEventListener("click", () => decide(state.search.row, { code: o.code }));
    return li;
  }));
}

// The hits of the search box's query for the row on screen; null when the row or the query
// changed while they were fetched (they are then no one's).
let searching = 0;
async function search() {
  const row = state.shown;
  const q = $("search").value.trim();
  if (same(state.search.row, row) && state.search.query === q) return state.search.hits;
  const ticket = ++searching;
  const hits = q ? (await api("GET", `/v1/occupations?q=${encodeURIComponent(q)}`)).occupations
                 : [];
  if (ticket !== searching || !same(row, state.shown) || q !== $("search").value.trim()) {
    return null;
  }
  state.search = { row, query: q, hits, at: 0 };
  showHits();
  return hits;
}

async function takeHit() {
  const row = state.shown;
  const hits = await search();
  if (hits && same(row, state.shown) && hits[state.search.at]) {
    await decide(row, { code: hits[state.search.at].code });
  }
}

function onSearchKey(event) {
  if (event.key === "Enter") {
    event.preventDefault();
    takeHit().catch((err) => say(err.message, true));
  } else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
    event.preventDefault();
    const { hits } = state.search;
    if (!hits.length) return;
    const step = event.key === "ArrowDown" ? 1 : hits.length - 1;
    state.search.at = (state.search.at + step) % hits.length;
    showHits();
  } else if (event.key === "Escape") {
    $("search").blur();
  }
}

function onKey(event) {
  if (state.busy) {  // a save is under way: the key is dropped, not kept for the next row
    if (event.key !== "Tab") event.preventDefault();
    return;
  }
  if (event.target === $("search")) return onSearchKey(event);
  const typing = event.target.tagName === "INPUT" && event.target.type !== "file";
  if (typing || event.target.tagName === "SELECT" || event.target.tagName === "TEXTAREA") return;
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const current = state.shown;
  const n = Number(event.key);
  if (n >= 1 && n <= 5 && current) {
    const c = candidates(current)[n - 1];
    if (c) decide(current, { code: c.code });
  } else if (event.key === "c" && current && modelCode(current)) {
    decide(current, { code: modelCode(current) });
  } else if (OUTCOME_KEYS[event.key] && current) {
    decide(current, { outcome: OUTCOME_KEYS[event.key] });
  } else if (event.key === "i" && current) {
    reference().catch((err) => say(err.message, true));
  } else if (event.key === "/") {
    event.preventDefault();
    $("search").focus();
  } else if (event.key === "g") {
    event.preventDefault();
    $("jump").focus();
  } else if (event.key === "Escape" && state.pinned !== null) {
    pin(null);
  } else if (event.key === "s") {
    skip();
  } else if (event.key === "u") {
    undo();
  }
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
  Object.assign(state, { file: id, rows: [], skipped: [], history: [], pinned: null,
                        shown: null, built: null });
  $("audit-summary").textContent = "none drawn";
  $("files").value = id === null ? "" : String(id);
  if (id !== null) {
    history.replaceState(null, "", `#file=${id}`);
    $("export").href = `/v1/files/${id}/export`;
    $("corrections").href = `/v1/files/${id}/corrections`;
    state.rows = (await api("GET", `/v1/files/${id}/rows`)).rows;
    await refresh();
  }
  render();
}

// Open a file (CSV, JSONL, Parquet, .xlsx); `columns`: its title_column and
// description_column, which the reviewer picks when the file has no `title` column.
async function upload(file, columns = {}) {
  say(`opening ${file.name} (a raw file is predicted first)…`);
  $("pick-columns").hidden = true;
  try {
    const query = new URLSearchParams({ name: file.name, ...columns });
    const opened = await api("POST", `/v1/files?${query}`, file);
    await loadFiles();
    await openFile(opened.id);
    say(`Opened ${opened.name}.`);
  } catch (err) {
    say(err.message, true);
    if (err.data && err.data.columns) pickColumns(file, err.data.columns);
  }
  $("upload").value = "";
  document.activeElement.blur();  // the keys work at once
}

// The column pickers for a file without a `title` column, each column's likeliest first.
function pickColumns(file, columns) {
  const guess = (pattern) => columns.find((c) => pattern.test(c));
  const fill = (select, chosen, none) => {
    select.replaceChildren(...(none ? [el("option", "(none)")] : []),
                           ...columns.map((c) => el("option", c)));
    if (none) select.firstChild.value = "";
    select.value = chosen ?? "";
  };
  fill($("title-column"), guess(/title|job|occupation|position|role/i) ?? columns[0], false);
  fill($("description-column"), guess(/desc|duties|task/i), true);
  $("pick-file").textContent = file.name;
  $("pick-columns").hidden = false;
  $("pick-columns").onsubmit = (event) => {
    event.preventDefault();
    const chosen = { title_column: $("title-column").value };
    if ($("description-column").value) chosen.description_column = $("description-column").value;
    upload(file, chosen);
  };
}

async function start() {
  $("reviewer").value = localStorage.getItem("reviewer") || "";
  $("reviewer").addEventListener("change", () => {
    localStorage.setItem("reviewer", $("reviewer").value.trim());
    refresh().catch((err) => say(err.message, true));  // this reviewer's skips and history
  });
  $("files").addEventListener("change", () => {
    $("files").blur();
    openFile($("files").value === "" ? null : Number($("files").value));
  });
  for (const id of ["view", "order", "level"]) {
    $(id).addEventListener("change", () => {
      $(id).blur();
      state.pinned = null;
      render();
    });
  }
  $("below").addEventListener("input", () => {
    state.pinned = null;
    render();
  });
  $("below").addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === "Escape") $("below").blur();
  });
  $("jump").addEventListener("keydown", (event) => {
    if (event.key !== "Enter") return;
    const row = Number($("jump").value) - 1;
    if (!state.rows.some((r) => r.row === row)) return say(`No row ${$("jump").value}.`, true);
    $("jump").value = "";
    $("jump").blur();
    pin(row);
  });
  $("decisions-box").addEventListener("toggle", renderDecisions);
  $("audit-form").addEventListener("submit", drawAudit);
  window.addEventListener("focus", () => refresh().catch(() => {}));
  setInterval(() => refresh().catch(() => {}), POLL_MS);
  $("upload").addEventListener("change", () => $("upload").files[0] && upload($("upload").files[0]));
  $("skip").addEventListener("click", skip);
  $("undo").addEventListener("click", undo);
  $("confirm").addEventListener("click", () =>
    decide(state.shown, { code: modelCode(state.shown) }));
  for (const [key, outcome] of Object.entries(OUTCOME_KEYS)) {
    $(`outcome-${key === "?" ? "q" : key}`).addEventListener("click",
      () => decide(state.shown, { outcome }));
  }
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
