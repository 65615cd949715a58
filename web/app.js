// ragd page script: plain JavaScript, no framework, nothing fetched from outside the server.
// Loaded as a module (its own scope, deferred). Talks only to ragd's own API (docs/api.md).
// Server data is hostile input: it only ever enters the page as text nodes and attribute
// values, never as HTML.

const KEY_STORAGE = "ragd.apiKey";      // sessionStorage only: gone when the tab closes
const PAGE_SIZE = 100;                  // documents per page of the list
const POLL_MS = 5000;                   // health and pool figures, while the page is visible
const MAX_EVENT_BUFFER = 16 << 20;      // an SSE event larger than this ends the stream
const MAX_RANGE = 50;                   // a citation range [a-b] wider than this stays text

const byId = (id) => document.getElementById(id);
const ui = {
  health: byId("health"), forgetKey: byId("forget-key"),
  keyPanel: byId("key-panel"), keyForm: byId("key-form"), keyInput: byId("key-input"),
  keyAlert: byId("key-alert"),
  askForm: byId("ask-form"), dbSelect: byId("db-select"), question: byId("question"),
  stop: byId("stop"), askAlert: byId("ask-alert"),
  answer: byId("answer"), badges: byId("badges"), answerText: byId("answer-text"),
  timings: byId("timings"), sources: byId("sources"),
  dropZone: byId("drop-zone"), upload: byId("upload"), progress: byId("upload-progress"),
  uploadStatus: byId("upload-status"), docsAlert: byId("docs-alert"),
  docsStatus: byId("docs-status"), docsSummary: byId("docs-summary"),
  documents: byId("documents"), pager: byId("pager"),
  prevPage: byId("prev-page"), nextPage: byId("next-page"),
  createForm: byId("create-form"), newDb: byId("new-db"), deleteDb: byId("delete-db"),
  backendsBody: byId("backends-body"), backendsUpdated: byId("backends-updated"),
};
const alerts = [ui.keyAlert, ui.askAlert, ui.docsAlert];

const state = {
  dbs: [],                  // GET /api/dbs's list
  defaultDb: "default",     // /health's default_db: where an upload goes when there is none
  maxBodyBytes: 0,          // /health's limits.max_body_bytes (0: unknown)
  docOffset: 0,
  docIds: new Set(),        // ids on the shown page, to tell "Replaced" from "Added"
  asking: null,             // the AbortController of the question being answered
  view: null,               // the AnswerView on screen; an older one's late frames are ignored
  uploads: Promise.resolve(), // uploads run one batch after the other
  keyNeeded: false,         // a request was refused 401: wait for a key before polling more
  pollTimer: 0,
  polling: false,
};

// ---- errors and the API key ----------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let keyWithoutStorage = ""; // where the key lives when the browser refuses sessionStorage

function storedKey() {
  try {
    return sessionStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return keyWithoutStorage;
  }
}

// Keeps the key for this tab (never localStorage, never a cookie); "" forgets it.
function storeKey(key) {
  try {
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
  } catch {
    keyWithoutStorage = key;
  }
  ui.forgetKey.hidden = !key;
}

// Adds the Authorization header when a key is stored; returns headers.
function withKey(headers) {
  const key = storedKey();
  if (key) headers.Authorization = "Bearer " + key;
  return headers;
}

// The envelope's message of a non-2xx reply (docs/api.md "Errors"), else the status line.
function errorFromBody(status, statusText, text) {
  let code = "http_" + status;
  let message = `${status} ${statusText || "error"}`.trim();
  try {
    const body = JSON.parse(text);
    if (body && body.error && typeof body.error.message === "string") {
      code = String(body.error.code || code);
      message = body.error.message;
    }
  } catch {
    // not JSON (a proxy's page): keep the status line
  }
  return new ApiError(status, code, message);
}

async function errorFromResponse(response) {
  let text = "";
  try {
    text = await response.text();
  } catch {
    // body lost: the status alone will do
  }
  return errorFromBody(response.status, response.statusText, text);
}

// Shows the key form for a 401: "needed" when no key was sent, "refused" when sentKey
// (the key the request carried, "" for none) was; a refused key is forgotten unless
// another one was entered meanwhile.
function noteAuthFailure(err, sentKey) {
  if (err.status !== 401) return;
  state.keyNeeded = true;
  ui.keyPanel.hidden = false;
  if (sentKey) {
    if (storedKey() === sentKey) storeKey("");
    showAlert(ui.keyAlert, `The API key was refused by the server (${err.message}). Check it and enter it again.`);
  }
  if (!ui.keyPanel.contains(document.activeElement)) ui.keyInput.focus();
}

// What to tell the user about a failed request; null when the key form already says it.
function describeError(err) {
  if (err instanceof ApiError) {
    if (err.status === 401) return null;
    if (err.status === 403) return `This API key may only read, not change anything (${err.message}).`;
    return err.message;
  }
  return `The server could not be reached (${err.message}).`;
}

// fetch() a JSON route; resolves to the parsed body of a 2xx, rejects with ApiError (or
// fetch's TypeError when the server cannot be reached).
async function api(method, path, body) {
  const sentKey = storedKey();
  const headers = withKey({ Accept: "application/json" });
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (!response.ok) {
    const err = await errorFromResponse(response);
    noteAuthFailure(err, sentKey);
    throw err;
  }
  return response.json();
}

function showAlert(element, message) {
  for (const other of alerts) {
    other.hidden = true;
    other.textContent = "";
  }
  if (!message) return;
  element.textContent = message;
  element.hidden = false;
}

function clearAlert(element) {
  element.hidden = true;
  element.textContent = "";
}

function reportError(element, err) {
  const message = describeError(err);
  if (message) showAlert(element, message);
}

// ---- small DOM helpers ---------------------------------------------------------------

// el("p", {className: "x"}, "text", node, […], …): a new element; children are strings,
// nodes or arrays of them; null, undefined and false are skipped.
function el(tag, props, ...children) {
  const node = document.createElement(tag);
  if (props) {
    for (const [name, value] of Object.entries(props)) {
      if (name === "className" || name === "textContent" || name === "href" || name === "id") {
        node[name] = value;
      } else {
        node.setAttribute(name, value);
      }
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

function formatBytes(n) {
  if (typeof n !== "number" || !isFinite(n)) return "?";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 * 1024 * 1024) return `${(n / 1048576).toFixed(1)} MiB`;
  return `${(n / 1073741824).toFixed(2)} GiB`;
}

function formatMs(ms) {
  if (typeof ms !== "number" || !isFinite(ms)) return "?";
  return ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
}

function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

// ---- collections ---------------------------------------------------------------------

function selectedDb() {
  return ui.dbSelect.value || state.defaultDb;
}

function dbExists(name) {
  return state.dbs.some((db) => db.name === name);
}

// Reloads the collection picker (keeping the choice, or choosing `prefer`) and the documents.
async function loadCollections(prefer) {
  const previous = prefer || ui.dbSelect.value;
  try {
    const body = await api("GET", "/api/dbs");
    state.dbs = Array.isArray(body.dbs) ? body.dbs : [];
  } catch (err) {
    reportError(ui.docsAlert, err);
    return;
  }
  const options = state.dbs.map((db) =>
    el("option", { value: db.name }, `${db.name} (${plural(db.documents, "document", "documents")})`));
  const wanted = previous || state.defaultDb;
  if (!dbExists(wanted)) {
    // Not there yet: an upload into it creates it (with the server's embedder).
    options.unshift(el("option", { value: wanted }, `${wanted} (new, empty)`));
  }
  ui.dbSelect.replaceChildren(...options);
  ui.dbSelect.value = wanted;
  ui.newDb.placeholder = state.dbs.length ? "name" : state.defaultDb;
  if (previous !== ui.dbSelect.value) state.docOffset = 0;
  await loadDocuments();
}

async function createCollection(event) {
  event.preventDefault();
  // Empty box: the server's default collection, offered (as the placeholder) while none exist.
  const name = ui.newDb.value.trim() || (state.dbs.length ? "" : state.defaultDb);
  if (!/^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$/.test(name)) {
    showAlert(ui.docsAlert, "A collection name is 1–64 letters, digits, '_', '-' or '.', not starting with '.'.");
    ui.newDb.focus();
    return;
  }
  try {
    await api("POST", "/api/dbs", { name });
  } catch (err) {
    reportError(ui.docsAlert, err);
    return;
  }
  clearAlert(ui.docsAlert);
  ui.newDb.value = "";
  state.docOffset = 0;
  await loadCollections(name);
  ui.docsStatus.textContent = `Created collection ${name}.`;
}

async function deleteCollection() {
  const name = selectedDb();
  if (!dbExists(name)) {
    showAlert(ui.docsAlert, `Collection ${name} does not exist yet: there is nothing to delete.`);
    return;
  }
  const db = state.dbs.find((d) => d.name === name);
  if (!window.confirm(`Delete collection ${name} and its ${plural(db.documents, "document", "documents")}? This cannot be undone.`)) return;
  try {
    await api("DELETE", "/api/dbs/" + encodeURIComponent(name));
  } catch (err) {
    reportError(ui.docsAlert, err);
    return;
  }
  clearAlert(ui.docsAlert);
  state.docOffset = 0;
  const next = state.dbs.find((d) => d.name !== name);
  await loadCollections(next ? next.name : state.defaultDb);
  ui.docsStatus.textContent = `Deleted collection ${name}.`;
}

// ---- documents -----------------------------------------------------------------------

async function loadDocuments() {
  const db = selectedDb();
  state.docIds = new Set();
  if (!dbExists(db)) {
    ui.documents.replaceChildren();
    ui.pager.hidden = true;
    ui.docsSummary.textContent = `No documents: upload files to create collection ${db}.`;
    return;
  }
  let body;
  try {
    body = await api("GET", `/api/dbs/${encodeURIComponent(db)}/documents?limit=${PAGE_SIZE}&offset=${state.docOffset}`);
  } catch (err) {
    reportError(ui.docsAlert, err);
    return;
  }
  if (db !== selectedDb()) return; // the choice changed meanwhile; that load wins
  const docs = Array.isArray(body.documents) ? body.documents : [];
  const total = typeof body.total === "number" ? body.total : docs.length;
  if (docs.length === 0 && state.docOffset > 0 && total > 0) {
    state.docOffset = Math.floor((total - 1) / PAGE_SIZE) * PAGE_SIZE; // the page emptied under us
    await loadDocuments();
    return;
  }
  ui.documents.replaceChildren(...docs.map(documentItem));
  for (const doc of docs) state.docIds.add(String(doc.id));
  const first = total ? state.docOffset + 1 : 0;
  const last = state.docOffset + docs.length;
  ui.docsSummary.textContent = total === 0
    ? `Collection ${db} has no documents.`
    : `${first}–${last} of ${plural(total, "document", "documents")} in ${db}` +
      (body.truncated ? " (the list was cut short by the server's response limit)" : "") + ".";
  ui.pager.hidden = total <= PAGE_SIZE;
  ui.prevPage.disabled = state.docOffset === 0;
  ui.nextPage.disabled = last >= total;
}

function documentItem(doc) {
  const id = String(doc.id);
  const details = [];
  // The source only when it says more than the id (not "notes" next to "notes.txt").
  if (doc.source && !String(doc.source).includes(id)) details.push(String(doc.source));
  if (typeof doc.chunks === "number") details.push(plural(doc.chunks, "chunk", "chunks"));
  if (typeof doc.text_bytes === "number") details.push(formatBytes(doc.text_bytes));
  const remove = el("button", { type: "button", className: "small danger", "aria-label": `Delete ${id}` }, "Delete");
  remove.addEventListener("click", () => deleteDocument(id));
  return el("li", null,
    el("div", { className: "doc-text" },
      el("span", { className: "doc-id" }, id),
      details.length ? el("span", { className: "doc-meta" }, details.join(" · ")) : null),
    remove);
}

async function deleteDocument(id) {
  const db = selectedDb();
  if (!window.confirm(`Delete document ${id} from collection ${db}?`)) return;
  try {
    await api("DELETE", `/api/dbs/${encodeURIComponent(db)}/documents/${encodeURIComponent(id)}`);
  } catch (err) {
    reportError(ui.docsAlert, err);
    return;
  }
  clearAlert(ui.docsAlert);
  await loadCollections(db);
  ui.docsStatus.textContent = `Deleted ${id}.`;
  if (!ui.documents.contains(document.activeElement)) {
    const next = ui.documents.querySelector("button");
    (next || ui.upload).focus();
  }
}

// ---- uploads -------------------------------------------------------------------------

// POSTs one file as multipart/form-data (field "file", docs/api.md "Uploads") with
// XMLHttpRequest, whose upload events give progress. onProgress(bytesOfThisFileSent).
// Resolves to the ingest response, rejects with ApiError.
function uploadOne(db, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    const key = storedKey();
    xhr.open("POST", "/api/ingest?db=" + encodeURIComponent(db));
    xhr.setRequestHeader("Accept", "application/json");
    if (key) xhr.setRequestHeader("Authorization", "Bearer " + key);
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable && e.total > 0) onProgress(file.size * Math.min(1, e.loaded / e.total));
    });
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        try {
          resolve(JSON.parse(xhr.responseText));
        } catch {
          reject(new ApiError(xhr.status, "bad_response", "the server's answer was not JSON"));
        }
        return;
      }
      const err = errorFromBody(xhr.status, xhr.statusText, xhr.responseText);
      noteAuthFailure(err, key);
      reject(err);
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, "network", "the upload could not reach the server")));
    xhr.addEventListener("abort", () => reject(new ApiError(0, "aborted", "the upload was cancelled")));
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  });
}

function ingestOutcome(file, result, known) {
  let line;
  if (result.duplicates > 0) line = `Unchanged ${file.name} (already stored)`;
  else line = `${known ? "Replaced" : "Added"} ${file.name} (${plural(result.chunks, "chunk", "chunks")})`;
  if (result.quarantined > 0) line += `, ${plural(result.quarantined, "chunk", "chunks")} quarantined as prompt injection`;
  if (Array.isArray(result.warnings) && result.warnings.length) line += `. Note: ${result.warnings.join(" ")}`;
  return line;
}

// Queues files for upload after any batch still going; the input may be reset at once.
function uploadFiles(fileList) {
  const files = Array.from(fileList || []);
  if (!files.length) return;
  state.uploads = state.uploads.then(() => uploadBatch(files))
    .catch((err) => showAlert(ui.docsAlert, `The upload failed: ${err.message}`));
}

// Uploads files one request each, so that every file gets its own result and a file the
// server refuses does not take the others with it.
async function uploadBatch(files) {
  const db = selectedDb();
  const totalBytes = files.reduce((sum, f) => sum + f.size, 0) || 1;
  const lines = [];
  const showLines = () => ui.uploadStatus.replaceChildren(...lines.map((line) => el("div", null, line)));
  let doneBytes = 0;
  ui.progress.max = totalBytes;
  ui.progress.value = 0;
  clearAlert(ui.docsAlert);
  ui.uploadStatus.dataset.state = "uploading";
  lines.push(`Uploading ${plural(files.length, "file", "files")} to ${db}…`);
  showLines();
  lines.length = 0;
  for (const file of files) {
    if (state.maxBodyBytes && file.size > state.maxBodyBytes) {
      lines.push(`Refused ${file.name}: ${formatBytes(file.size)} is more than the server takes (${formatBytes(state.maxBodyBytes)}, RAGD_MAX_BODY_BYTES)`);
    } else if (file.size === 0) {
      lines.push(`Refused ${file.name}: the file is empty`);
    } else {
      const known = state.docIds.has(file.name);
      try {
        const result = await uploadOne(db, file, (sent) => { ui.progress.value = doneBytes + sent; });
        lines.push(ingestOutcome(file, result, known));
      } catch (err) {
        if (err.status === 401) {
          lines.push("Upload stopped: this server needs an API key (above).");
          break;
        }
        lines.push(`Refused ${file.name}: ${describeError(err)}`);
        if (err.status === 403) {
          reportError(ui.docsAlert, err); // the key, not the file: the rest would fail alike
          break;
        }
      }
    }
    doneBytes += file.size;
    ui.progress.value = doneBytes;
    showLines();
  }
  showLines();
  ui.upload.value = "";
  await loadCollections(db);
  ui.uploadStatus.dataset.state = "done"; // and the lists show what it added
}

function setUpDropZone() {
  const zone = ui.dropZone;
  const hasFiles = (e) => e.dataTransfer && Array.from(e.dataTransfer.types || []).includes("Files");
  zone.addEventListener("dragenter", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragover", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = "copy";
  });
  zone.addEventListener("dragleave", (e) => {
    if (!zone.contains(e.relatedTarget)) zone.classList.remove("dragging");
  });
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("dragging");
    uploadFiles(e.dataTransfer.files);
  });
  // A file dropped beside the zone would make the browser leave the page to show it.
  for (const name of ["dragover", "drop"]) {
    window.addEventListener(name, (e) => {
      if (hasFiles(e) && !zone.contains(e.target)) e.preventDefault();
    });
  }
}

// ---- asking: SSE over fetch ----------------------------------------------------------

// Reads a text/event-stream body and calls onEvent(name, data) per complete event.
// Events may be split anywhere across chunks; lines end in LF, CRLF or CR.
async function readEvents(body, onEvent) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
    // A CR at the very end may be the first half of a CRLF still to come: keep it back.
    const heldCr = !done && buffer.endsWith("\r");
    if (heldCr) buffer = buffer.slice(0, -1);
    buffer = buffer.replace(/\r\n?/g, "\n");
    let end = buffer.indexOf("\n\n");
    while (end >= 0) {
      dispatchBlock(buffer.slice(0, end), onEvent);
      buffer = buffer.slice(end + 2);
      end = buffer.indexOf("\n\n");
    }
    if (heldCr) buffer += "\r";
    if (buffer.length > MAX_EVENT_BUFFER) {
      reader.cancel().catch(() => {});
      throw new ApiError(0, "stream", "the answer stream sent an event too large to read");
    }
    if (done) return; // an unterminated last event is dropped, as EventSource does
  }
}

function dispatchBlock(block, onEvent) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line === "" || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") name = value;
    else if (field === "data") data.push(value);
  }
  if (data.length) onEvent(name, data.join("\n"));
}

// One answer being shown: its text, its sources and the marks around it.
class AnswerView {
  constructor() {
    this.text = "";
    this.sourceNumbers = new Set();
    this.renderPending = false;
    this.started = performance.now();
    this.firstTokenMs = null;
    this.flagged = false;
    state.view = this;
    ui.badges.replaceChildren();
    ui.answerText.replaceChildren();
    ui.timings.textContent = "";
    ui.sources.replaceChildren();
    ui.answer.setAttribute("aria-busy", "true");
    ui.answerText.setAttribute("aria-busy", "true");
    delete ui.answer.dataset.firstTokenMs;
    ui.answer.dataset.state = "streaming";
  }

  badge(kind, text) {
    ui.badges.append(el("span", { className: `badge badge-${kind}` }, text));
  }

  // The question was judged a prompt injection (said once, by `sources` or `done`).
  flag(rule) {
    if (this.flagged) return;
    this.flagged = true;
    this.badge("flagged", `Flagged: the question looks like a prompt injection${rule ? ` (${rule})` : ""}`);
  }

  setSources(list) {
    if (!Array.isArray(list)) return;
    this.sourceNumbers = new Set(list.map((s) => s.n));
    ui.sources.replaceChildren(...list.map(sourceItem));
    this.scheduleRender();
  }

  addText(piece) {
    if (this.firstTokenMs === null) {
      this.firstTokenMs = performance.now() - this.started;
      ui.answer.dataset.firstTokenMs = this.firstTokenMs.toFixed(1);
    }
    this.text += piece;
    this.scheduleRender();
  }

  // Renders at most once a frame, however fast tokens come.
  scheduleRender() {
    if (this.renderPending) return;
    this.renderPending = true;
    requestAnimationFrame(() => {
      this.renderPending = false;
      this.render();
    });
  }

  render() {
    if (state.view !== this) return;
    ui.answerText.replaceChildren(...citedText(this.text, this.sourceNumbers));
  }

  finish(done) {
    if (typeof done.answer === "string") this.text = done.answer;
    if (!ui.sources.childElementCount && Array.isArray(done.sources)) this.setSources(done.sources);
    this.render();
    const injection = done.injection || {};
    if (done.cached) this.badge("cached", "Cached answer");
    if (done.degraded) this.badge("degraded", `Degraded: ${done.degraded_reason || "the answer is worse than asked for"}`);
    if (injection.flagged || (Array.isArray(done.flags) && done.flags.length)) this.flag(injection.rule);
    if (injection.output_withheld) this.badge("flagged", "Withheld: the model's answer leaked its instructions; this one is built from the passages");
    if (done.truncated) this.badge("info", "Some sources were left out to keep the response small");
    const t = done.timings_ms || {};
    const parts = [done.provider === "extractive" ? "extractive answer" : `${done.provider || "?"} ${done.model || ""}`.trim()];
    if (this.firstTokenMs !== null) parts.push(`first words after ${formatMs(this.firstTokenMs)}`);
    if (typeof t.total === "number") parts.push(`server total ${formatMs(t.total)}`);
    if (typeof t.retrieve === "number") parts.push(`retrieve ${formatMs(t.retrieve)}`);
    if (typeof t.generate === "number") parts.push(`generate ${formatMs(t.generate)}`);
    ui.timings.textContent = parts.join(" · ");
  }

  end(outcome) {
    this.render();
    ui.answer.setAttribute("aria-busy", "false");
    ui.answerText.setAttribute("aria-busy", "false");
    ui.answer.dataset.state = outcome;
  }
}

// The answer as nodes: citation markers [n], [n, m], [n; m], [n-m] become links to the
// sources they name (only to numbers that are sources); everything else stays text.
function citedText(text, sourceNumbers) {
  const nodes = [];
  const marker = /\[(\d{1,4}(?:\s*[,;\-\u2013]\s*\d{1,4})*)\]/g;
  let last = 0;
  for (const match of text.matchAll(marker)) {
    const numbers = markerNumbers(match[1]);
    if (!numbers || !numbers.some((n) => sourceNumbers.has(n))) continue;
    if (match.index > last) nodes.push(document.createTextNode(text.slice(last, match.index)));
    for (const n of numbers) {
      if (sourceNumbers.has(n)) nodes.push(el("a", { href: `#source-${n}`, className: "cite" }, `[${n}]`));
      else nodes.push(document.createTextNode(`[${n}]`));
    }
    last = match.index + match[0].length;
  }
  if (last < text.length) nodes.push(document.createTextNode(text.slice(last)));
  return nodes;
}

// "1, 3-5" → [1, 3, 4, 5]; null for a range too wide to be a citation.
function markerNumbers(inner) {
  const parts = inner.split(/\s*([,;\-\u2013])\s*/);
  const numbers = [Number(parts[0])];
  for (let i = 1; i + 1 < parts.length; i += 2) {
    const next = Number(parts[i + 1]);
    if (parts[i] === "," || parts[i] === ";") {
      numbers.push(next);
      continue;
    }
    const from = numbers[numbers.length - 1];
    if (next < from || next - from > MAX_RANGE) return null;
    for (let n = from + 1; n <= next; n++) numbers.push(n);
  }
  return numbers;
}

function sourceItem(source) {
  const meta = source.metadata && typeof source.metadata === "object" ? source.metadata : {};
  const docId = String(source.doc_id ?? "");
  const title = typeof meta.title === "string" && meta.title ? meta.title : String(source.source || docId);
  const facts = [];
  if (typeof source.score === "number") facts.push(`score ${source.score.toFixed(3)}`);
  if (typeof source.page === "number") facts.push(source.page_end ? `pages ${source.page}–${source.page_end}` : `page ${source.page}`);
  return el("li", { id: `source-${source.n}`, tabindex: "-1" },
    el("div", { className: "source-head" },
      el("span", { className: "source-n" }, `[${source.n}]`), " ",
      el("span", { className: "source-title" }, title)),
    el("div", { className: "source-meta" },
      // The id once: a title made from it ("notes.txt" for "notes.txt") already shows it.
      title.includes(docId) ? null : ["document ", el("code", null, docId), facts.length ? " · " : ""],
      facts.join(" · ")),
    el("blockquote", { className: "passage" }, String(source.text ?? "")));
}

async function ask() {
  const question = ui.question.value.trim();
  if (!question) {
    showAlert(ui.askAlert, "Write a question first.");
    ui.question.focus();
    return;
  }
  const db = selectedDb();
  if (!dbExists(db)) await loadCollections(db);
  if (!dbExists(db)) {
    showAlert(ui.askAlert, `Collection ${db} has no documents yet: upload some first.`);
    return;
  }
  if (state.asking) state.asking.abort();
  const controller = new AbortController();
  state.asking = controller;
  const current = () => state.asking === controller;
  clearAlert(ui.askAlert);
  ui.stop.disabled = false;
  const view = new AnswerView();
  const sentKey = storedKey();
  const headers = withKey({ "Content-Type": "application/json", Accept: "text/event-stream" });
  let outcome = "incomplete";
  try {
    const response = await fetch("/api/query", {
      method: "POST", headers, signal: controller.signal,
      body: JSON.stringify({ db, query: question, stream: true }),
    });
    if (!response.ok) {
      const err = await errorFromResponse(response);
      noteAuthFailure(err, sentKey);
      throw err;
    }
    if (!(response.headers.get("Content-Type") || "").includes("text/event-stream")) {
      view.finish(await response.json()); // a whole JSON answer (a proxy that dropped Accept)
      outcome = "done";
      return;
    }
    await readEvents(response.body, (name, data) => {
      if (!current()) return;
      let payload;
      try {
        payload = JSON.parse(data);
      } catch {
        return; // not ours to show
      }
      if (name === "sources") {
        view.setSources(payload.sources);
        if (payload.injection && payload.injection.flagged) view.flag(payload.injection.rule);
      } else if (name === "token") {
        if (typeof payload.text === "string") view.addText(payload.text);
      } else if (name === "done") {
        view.finish(payload);
        outcome = "done";
      } else if (name === "error") {
        const message = payload && payload.error && payload.error.message ? payload.error.message : "the answer failed";
        showAlert(ui.askAlert, `The answer stopped: ${message}`);
        outcome = "error";
      }
    });
    if (current() && outcome === "incomplete") showAlert(ui.askAlert, "The answer stream ended before the answer was complete.");
  } catch (err) {
    if (!current()) return; // replaced by a newer question, which owns the view now
    if (err.name === "AbortError") {
      view.badge("stopped", "Stopped");
      outcome = "stopped";
    } else {
      reportError(ui.askAlert, err);
      outcome = "error";
    }
  } finally {
    if (current()) {
      state.asking = null;
      view.end(outcome);
      if (document.activeElement === ui.stop) ui.question.focus();
      ui.stop.disabled = true;
    }
  }
}

// ---- health and backends -------------------------------------------------------------

function healthSummary(health) {
  const status = String(health.status || "unknown");
  const services = health.services || {};
  const troubles = [];
  for (const [name, svc] of Object.entries(services)) {
    if (svc && svc.healthy === false && svc.in_use !== false && name !== "generator" && name !== "embedder") {
      troubles.push(`${name}: ${svc.message || "unhealthy"}`);
    }
  }
  const generatorName = services.generator ? services.generator.name : "";
  const generator = generatorName === "extractive" ? "extractive answers (no LLM in use)"
    : generatorName ? `answers by ${generatorName}` : "";
  return [status, troubles.length ? troubles.join("; ") : generator].filter(Boolean).join(" · ");
}

function figure(term, value, stateClass) {
  return [el("dt", null, term), el("dd", stateClass ? { className: stateClass } : null, String(value))];
}

function card(title, ...rows) {
  return el("div", { className: "card" }, el("h3", null, title), el("dl", null, ...rows.flat()));
}

function breakerClass(breakerState) {
  return "state state-" + String(breakerState || "unknown").toLowerCase();
}

function renderBackends(health, pool) {
  const services = health.services || {};
  const cards = [];
  const gen = services.generator;
  const emb = services.embedder;
  if (gen || emb) {
    cards.push(card("Answers and embeddings",
      gen ? figure("generator", `${gen.name}${gen.configured && gen.configured !== gen.name ? ` (configured: ${gen.configured})` : ""}${gen.reason ? `: ${gen.reason}` : ""}`) : [],
      emb ? figure("embedder", `${emb.name}${emb.model ? ` ${emb.model}` : ""}`) : []));
  }
  for (const [name, svc] of Object.entries(services)) {
    if (!svc || !svc.circuit_breaker || name === "reranker") continue;
    const breaker = svc.circuit_breaker;
    const rows = [
      figure("role", `${svc.role || "?"}${svc.in_use === false ? " (not in use)" : ""}`),
      figure("state", svc.message || "?"),
      figure("breaker", `${breaker.state || "?"}${breaker.failure_count ? `, ${plural(breaker.failure_count, "failure", "failures")} in a row` : ""}`, breakerClass(breaker.state)),
    ];
    for (const host of Array.isArray(svc.backends) ? svc.backends : []) {
      const hostClass = host.reachability === "down" ? "state state-down" : breakerClass(host.state);
      rows.push(figure("host", `${host.url || "?"}: ${host.reachability || "?"}, breaker ${host.state || "?"}`, hostClass));
      rows.push(figure("bulkhead", `${host.in_flight ?? 0} in flight, ${host.queued ?? 0} queued`));
      if (host.error) rows.push(figure("last error", host.error));
    }
    cards.push(card(name, ...rows));
  }
  const rr = services.reranker;
  if (rr && rr.kind && rr.kind !== "off") {
    const breaker = rr.circuit_breaker || {};
    cards.push(card("reranker",
      figure("kind", `${rr.kind}${rr.url ? ` ${rr.url}` : ""}${rr.healthy === false ? " (unhealthy)" : ""}`),
      breaker.state ? figure("breaker", breaker.state, breakerClass(breaker.state)) : [],
      typeof rr.in_flight === "number" ? figure("bulkhead", `${rr.in_flight} in flight, ${rr.queued ?? 0} queued`) : []));
  }
  const store = services.store;
  const pools = (pool && typeof pool === "object" ? pool : health.pools) || {};
  const poolRows = [];
  if (store) {
    poolRows.push(figure("store", `${store.state || "?"}, ${store.message || ""}`.replace(/, $/, "")));
    poolRows.push(figure("size", `${formatBytes(store.used_bytes)}${store.quota_bytes ? ` of ${formatBytes(store.quota_bytes)}` : ""}`));
  }
  for (const [label, key] of [["workers", "workers"], ["ingest workers", "ingest_workers"]]) {
    const w = pools[key];
    if (w) poolRows.push(figure(label, `${w.busy ?? 0} of ${w.threads ?? "?"} busy, ${w.queued ?? 0} queued`));
  }
  if (pool && typeof pool.pool_size === "number") {
    poolRows.push(figure("read connections", `${pool.in_use} of ${pool.pool_size} in use, ${pool.waits} waits`));
    poolRows.push(figure("write queue", `${pool.write_queue} queued, ${pool.writes} writes in ${pool.write_groups} commits`));
  }
  if (poolRows.length) cards.push(card("Store and pools", ...poolRows));
  ui.backendsBody.replaceChildren(...cards);
  ui.backendsUpdated.textContent = `Updated ${new Date().toLocaleTimeString()}; refreshed every ${POLL_MS / 1000} s.`;
}

// Refreshes Health and Backends; one round at a time, the next POLL_MS after this one ends.
async function refreshStatus() {
  if (state.polling) return;
  state.polling = true;
  clearTimeout(state.pollTimer);
  try {
    const health = await api("GET", "/health");
    if (typeof health.default_db === "string" && health.default_db) state.defaultDb = health.default_db;
    if (health.limits && typeof health.limits.max_body_bytes === "number") state.maxBodyBytes = health.limits.max_body_bytes;
    const summary = healthSummary(health);
    if (ui.health.textContent !== summary) ui.health.textContent = summary;
    ui.health.dataset.state = String(health.status || "unknown");
    let pool = null;
    if (!state.keyNeeded) {
      try {
        pool = await api("GET", "/api/pool/stats");
      } catch {
        pool = null; // a read-only key or a 401: /health's pools are enough
      }
    }
    renderBackends(health, pool);
  } catch (err) {
    const text = `unreachable · ${err instanceof ApiError ? err.message : "the server did not answer"}`;
    if (ui.health.textContent !== text) ui.health.textContent = text;
    ui.health.dataset.state = "unreachable";
  } finally {
    state.polling = false;
    if (!document.hidden) state.pollTimer = setTimeout(refreshStatus, POLL_MS);
  }
}

// ---- wiring --------------------------------------------------------------------------

async function useKey(event) {
  event.preventDefault();
  const key = ui.keyInput.value.trim();
  if (!key) {
    showAlert(ui.keyAlert, "Enter an API key first.");
    ui.keyInput.focus();
    return;
  }
  storeKey(key);
  ui.keyInput.value = "";
  clearAlert(ui.keyAlert);
  state.keyNeeded = false;
  ui.keyPanel.hidden = true;
  await loadCollections();
  if (!state.keyNeeded) {
    ui.question.focus();
    refreshStatus();
  }
}

function forgetKey() {
  storeKey("");
  state.keyNeeded = false;
  ui.documents.replaceChildren();
  loadCollections();
}

function start() {
  storeKey(storedKey()); // shows "Forget key" when this tab has one
  ui.askForm.addEventListener("submit", (e) => {
    e.preventDefault();
    ask();
  });
  ui.question.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      ask();
    }
  });
  ui.stop.addEventListener("click", () => {
    if (state.asking) state.asking.abort();
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && state.asking) state.asking.abort(); // Stop from the keyboard
  });
  ui.dbSelect.addEventListener("change", () => {
    state.docOffset = 0;
    ui.docsStatus.textContent = "";
    loadDocuments();
  });
  ui.upload.addEventListener("change", () => uploadFiles(ui.upload.files));
  setUpDropZone();
  // A page button that turns disabled under the focus hands it to the other one.
  const turnPage = async (delta, button, other) => {
    state.docOffset = Math.max(0, state.docOffset + delta);
    await loadDocuments();
    if (button.disabled && document.activeElement !== other) other.focus();
  };
  ui.prevPage.addEventListener("click", () => turnPage(-PAGE_SIZE, ui.prevPage, ui.nextPage));
  ui.nextPage.addEventListener("click", () => turnPage(PAGE_SIZE, ui.nextPage, ui.prevPage));
  ui.createForm.addEventListener("submit", createCollection);
  ui.deleteDb.addEventListener("click", deleteCollection);
  ui.keyForm.addEventListener("submit", useKey);
  ui.forgetKey.addEventListener("click", forgetKey);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) refreshStatus();
    else clearTimeout(state.pollTimer);
  });
  refreshStatus().then(() => loadCollections());
}

start();
