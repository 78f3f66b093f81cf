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
                pinned: null, busy: false, changes: 0,
                search: { row: null, query: "", hits: [], at: 0 } };
const POLL_MS = 5000;
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

const percent = (x) => (x === null || x === undefined || x === "" ? "" :
                        `${Math.round(Number(x) * 100)}%`);

const same = (a, b) => Boolean(a && b && a.row === b.row);
const key = (title) => (title || "").trim().toLowerCase().replace(/\s+/g, " ");

// The queue of the chosen view: rows to review, or rows the model coded at a SOC group (to
// confirm or refine); undecided, rows of one title as one entry (a list of rows), in file
// order or most frequent first, skipped entries last.
function queue() {
  const view = $("view").value;
  const titles = new Map();
  for (const r of state.rows) {
    if (r.decision || !(view === "groups" ? !r.review && GROUPS.includes(r.prediction.coded_level)
                                          : r.review)) continue;
    if (!titles.has(key(r.title))) titles.set(key(r.title), []);
    titles.get(key(r.title)).push(r);
  }
  const entries = [...titles.values()];
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
  const entry = state.pinned ? [state.rows.find((r) => r.row === state.pinned)] :
    queue()[0] || [];
  const current = entry[0] || null;
  if (!same(current, state.shown)) {
    clearSearch();
    $("description-box").open = false;
  }
  state.shown = current;
  state.same = entry.slice(1).map((r) => r.row);
  renderDecisions();
  $("card").hidden = !current;
  $("done").hidden = state.file === null || Boolean(current);
  $("exports").hidden = state.file === null;
  if (!current) return;
  const p = current.prediction;
  $("row-id").textContent = `row ${current.row + 1}` +
    (state.same.length ? ` · ×${entry.length} rows of this title (rows ` +
      `${entry.map((r) => r.row + 1).join(", ")}), decided together` : "") +
    (state.skipped.includes(current.row) ? " · skipped before" : "") +
    (current.decision ? ` · decided: ${describe(current.decision)}, by ` +
      `${current.decision.decided_by === "correction" ? "learning from " : ""}` +
      `${current.decision.reviewer} — decide again to change it` : "");
  $("title").textContent = current.title || "(empty title)";
  $("description").textContent = current.description || "";
  $("description-box").hidden = !current.description;
  $("model").textContent = p.coded_code ?
    `Model: ${p.coded_code} ${p.coded_title} · ${LEVELS[p.coded_level]} · ` +
    `${percent(p.coded_confidence)} confident — c confirms` :
    `Model: not coded at any level` + (p.confidence != null ?
      ` (top candidate ${percent(p.confidence)} confident)` : "");
  $("confirm").hidden = !p.coded_code;
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
  } else if (event.key === "c" && current && current.prediction.coded_code) {
    decide(current, { code: current.prediction.coded_code });
  } else if (OUTCOME_KEYS[event.key] && current) {
    decide(current, { outcome: OUTCOME_KEYS[event.key] });
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
  $("upload").blur();  // the keys work at once
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
  for (const id of ["view", "order"]) {
    $(id).addEventListener("change", () => {
      $(id).blur();
      state.pinned = null;
      render();
    });
  }
  $("jump").addEventListener("keydown", (event) => {
    if (event.key !== "Enter") return;
    const row = Number($("jump").value) - 1;
    if (!state.rows.some((r) => r.row === row)) return say(`No row ${$("jump").value}.`, true);
    $("jump").value = "";
    $("jump").blur();
    pin(row);
  });
  $("decisions-box").addEventListener("toggle", renderDecisions);
  window.addEventListener("focus", () => refresh().catch(() => {}));
  setInterval(() => refresh().catch(() => {}), POLL_MS);
  $("upload").addEventListener("change", () => $("upload").files[0] && upload($("upload").files[0]));
  $("skip").addEventListener("click", skip);
  $("undo").addEventListener("click", undo);
  $("confirm").addEventListener("click", () =>
    decide(state.shown, { code: state.shown.prediction.coded_code }));
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
