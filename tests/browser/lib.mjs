// lib.mjs — what the browser tests share: the real ragd binary and the fake Ollama as child
// processes on loopback, headless Chromium (Debian's /usr/bin/chromium driven by
// playwright-core: nothing is ever downloaded), pages that record console errors, page
// errors and CSP violations, screenshots, and a retry helper for conditions that become true.
//
// Environment: RAGD_BIN (default <project>/build/ragd), CHROMIUM (default /usr/bin/chromium),
// RAGD_SCREENSHOTS (default <project>/build/screenshots), RAGD_BROWSER_KEEP=1 keeps each
// server's data dir and log (their paths are printed), RAGD_BROWSER_HEADED=1 shows the window,
// RAGD_BROWSER_NO_SANDBOX=1 adds --no-sandbox for a non-root user without user namespaces,
// RAGD_BROWSER_WEB_DIR=dir serves the page's three files from dir (openRagdPage).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const SHOTS_DIR = path.resolve(process.env.RAGD_SCREENSHOTS || path.join(ROOT, 'build', 'screenshots'));
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

const READY_TIMEOUT_MS = 20000;
// Every test's limit (node:test's timeout option): a hang fails the test instead of the run.
export const TEST_TIMEOUT_MS = 120000;
const STOP_TIMEOUT_MS = 20000;
const LOG_TAIL_CHARS = 6000;
// The only variables a ragd child inherits (as tests/e2e/harness.py): a developer's RAGD_*,
// OLLAMA_* or OPENAI_* settings never leak into a test.
const INHERITED_ENV = ['PATH', 'HOME', 'TMPDIR', 'LANG', 'LC_ALL', 'LC_CTYPE', 'TZ',
  'ASAN_OPTIONS', 'UBSAN_OPTIONS', 'LSAN_OPTIONS'];

const liveChildren = new Set();
process.on('exit', () => {
  for (const child of liveChildren) {
    try { child.kill('SIGKILL'); } catch { /* already gone */ }
  }
});

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function keepTemp() {
  return !['', '0', undefined].includes(process.env.RAGD_BROWSER_KEEP);
}

// A loopback TCP port that was free a moment ago.
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// Whether something accepts connections on 127.0.0.1:port (the defaults tests need 11434 free:
// a real Ollama there would be used, and the "no backend" case would not be one).
export function portListening(port) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    sock.once('connect', () => { sock.destroy(); resolve(true); });
    sock.once('error', () => resolve(false));
  });
}

// The skip reason of the tests on the true defaults, or false when they can run.
export async function defaultsSkipReason() {
  return (await portListening(11434))
    ? 'something listens on 127.0.0.1:11434: the true defaults would use it as Ollama' : false;
}

// Adds text before and after err's message, in its stack too (which is what node prints).
function annotate(err, before, after) {
  if (!(err instanceof Error)) return new Error(`${before}${String(err)}${after}`);
  const old = err.message;
  err.message = `${before}${old}${after}`;
  if (typeof err.stack === 'string') err.stack = err.stack.replace(old, err.message);
  return err;
}

// Retries fn until it returns without throwing (returns its value) or timeoutMs passes
// (throws fn's last error, its message prefixed with what). For conditions that become true;
// never a measure of speed.
export async function eventually(what, fn, timeoutMs = 20000, intervalMs = 100) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() >= deadline) throw annotate(err, `${what} (still false after ${timeoutMs / 1000} s): `, '');
    }
    await sleep(intervalMs);
  }
}

function ragdBin() {
  const bin = path.resolve(process.env.RAGD_BIN || path.join(ROOT, 'build', 'ragd'));
  try {
    fs.accessSync(bin, fs.constants.X_OK);
  } catch {
    throw new Error(`ragd binary not found or not executable: ${bin} (make, or set RAGD_BIN)`);
  }
  return bin;
}

// One ragd server: `RAGD_BIN serve` on a free loopback port, a fresh temporary data dir and
// an environment of nothing but the inherited basics, RAGD_DATA_DIR, RAGD_LISTEN and `env`
// (so {} runs it on the true defaults, as `make run` does). Call start(), then stop().
export class Ragd {
  constructor(env = {}, name = 'ragd') {
    this.bin = ragdBin();
    this.extraEnv = env;
    this.root = fs.mkdtempSync(path.join(os.tmpdir(), `ragd-browser-${name}-`));
    this.dataDir = path.join(this.root, 'data');
    fs.mkdirSync(this.dataDir);
    this.logPath = path.join(this.root, 'server.log');
    this.proc = null;
    this.port = null;
    this.exitCode = undefined;
  }

  get url() { return `http://127.0.0.1:${this.port}`; }

  env() {
    const env = {};
    for (const k of INHERITED_ENV) if (process.env[k] !== undefined) env[k] = process.env[k];
    env.PATH ??= '/usr/local/bin:/usr/bin:/bin';
    env.LANG ??= 'C.UTF-8';
    Object.assign(env, this.extraEnv);
    env.RAGD_DATA_DIR = this.dataDir;
    env.RAGD_LISTEN = `127.0.0.1:${this.port}`;
    return env;
  }

  // Starts the server and waits for /health/ready 200; a port taken in the meantime is
  // retried on another. Returns this.
  async start() {
    for (let attempt = 0; attempt < 3; attempt++) {
      this.port = await freePort();
      const log = fs.openSync(this.logPath, 'a');
      this.exitCode = undefined;
      this.proc = spawn(this.bin, ['serve'], {
        env: this.env(), cwd: this.root, stdio: ['ignore', log, log],
      });
      fs.closeSync(log);
      liveChildren.add(this.proc);
      this.proc.on('exit', (code, signal) => {
        this.exitCode = code ?? signal;
        liveChildren.delete(this.proc);
      });
      try {
        await this.waitReady();
        return this;
      } catch (err) {
        if (this.exitCode !== undefined && /in use/i.test(this.logText())) continue;
        throw err;
      }
    }
    throw new Error(`ragd could not bind a free port three times\n${this.logTail()}`);
  }

  async waitReady() {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    let last = null;
    while (Date.now() < deadline) {
      if (this.exitCode !== undefined) {
        throw new Error(`ragd exited (${this.exitCode}) before it was ready\n${this.logTail()}`);
      }
      try {
        const res = await fetch(`${this.url}/health/ready`);
        last = res.status;
        if (res.status === 200) return;
      } catch (err) {
        last = err.message;
      }
      await sleep(50);
    }
    this.kill();
    throw new Error(`ragd was not ready within ${READY_TIMEOUT_MS / 1000} s (last: ${last})\n${this.logTail()}`);
  }

  // SIGTERM and wait; a status other than 0 (a crash during the test included) throws.
  async stop() {
    if (!this.proc) return;
    if (this.exitCode === undefined) {
      const exited = new Promise((resolve) => this.proc.once('exit', resolve));
      this.proc.kill('SIGTERM');
      let timer;
      const timeout = new Promise((resolve) => { timer = setTimeout(resolve, STOP_TIMEOUT_MS, 'timeout'); });
      const outcome = await Promise.race([exited, timeout]);
      clearTimeout(timer);
      if (outcome === 'timeout') {
        this.kill();
        throw new Error(`ragd did not exit within ${STOP_TIMEOUT_MS / 1000} s of SIGTERM\n${this.logTail()}`);
      }
    }
    const code = this.exitCode;
    this.cleanup();
    if (code !== 0) throw new Error(`ragd exited with ${code}, expected 0\n${this.logTail()}`);
  }

  kill() {
    if (this.proc && this.exitCode === undefined) this.proc.kill('SIGKILL');
  }

  cleanup() {
    this.kill();
    if (keepTemp()) {
      process.stderr.write(`[browser] kept ${this.root} (log: ${this.logPath})\n`);
    } else if (!this.removed) {
      this.logCopy = this.logText();
      fs.rmSync(this.root, { recursive: true, force: true });
      this.removed = true;
    }
  }

  logText() {
    if (this.removed) return this.logCopy;
    try { return fs.readFileSync(this.logPath, 'utf8'); } catch { return ''; }
  }

  logTail(limit = LOG_TAIL_CHARS) {
    const text = this.logText();
    return `--- ragd log (${this.logPath}) ---\n${text.length > limit ? '…' + text.slice(-limit) : text}--- end of log ---`;
  }

  // One request to the API: returns {status, body} (body parsed as JSON when it is).
  async api(method, route, body, { key } = {}) {
    const headers = {};
    if (key) headers.Authorization = `Bearer ${key}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const res = await fetch(this.url + route, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let parsed = text;
    try { parsed = JSON.parse(text); } catch { /* not JSON */ }
    return { status: res.status, body: parsed };
  }

  // The same, but anything but 200/201 throws with the server's answer.
  async call(method, route, body, opts) {
    const res = await this.api(method, route, body, opts);
    if (res.status !== 200 && res.status !== 201) {
      throw new Error(`${method} ${route}: ${res.status} ${JSON.stringify(res.body)}`);
    }
    return res.body;
  }

  // Adds documents [{id, text, source?}] to collection db through POST /api/ingest.
  ingest(db, documents, opts) {
    return this.call('POST', '/api/ingest', { db, documents }, opts);
  }
}

// The fault-injecting fake Ollama (tools/fake_ollama) on free loopback ports; knobs as its
// command-line options ({token_ms: 40} → --token-ms 40). Call start(), then stop().
export class FakeOllama {
  constructor(knobs = {}) {
    this.knobs = knobs;
    this.output = '';
  }

  async start() {
    const args = [path.join(ROOT, 'tools', 'fake_ollama', 'fake_ollama.py'), '--port', '0', '--admin-port', '0'];
    for (const [k, v] of Object.entries(this.knobs)) args.push(`--${k.replaceAll('_', '-')}`, String(v));
    this.proc = spawn('python3', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    liveChildren.add(this.proc);
    this.proc.on('exit', () => liveChildren.delete(this.proc));
    const line = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`fake Ollama did not start:\n${this.output}`)), READY_TIMEOUT_MS);
      const onData = (chunk) => {
        this.output += chunk;
        const m = /fake_ollama listening on (\S+) admin (\S+)/.exec(this.output);
        if (m) { clearTimeout(timer); resolve(m); }
      };
      this.proc.stdout.setEncoding('utf8').on('data', onData);
      this.proc.stderr.setEncoding('utf8').on('data', (c) => { this.output += c; });
      this.proc.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`fake Ollama exited (${code}):\n${this.output}`));
      });
    });
    this.url = line[1];
    this.adminUrl = line[2];
    return this;
  }

  // Changes knobs at run time (POST /__admin/config).
  async configure(knobs) {
    const res = await fetch(`${this.adminUrl}/__admin/config`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(knobs),
    });
    if (res.status !== 200) throw new Error(`fake config: ${res.status} ${await res.text()}`);
  }

  async stats() {
    return (await fetch(`${this.adminUrl}/__admin/stats`)).json();
  }

  async stop() {
    if (!this.proc || this.proc.exitCode !== null) return;
    const exited = new Promise((resolve) => this.proc.once('exit', resolve));
    this.proc.kill('SIGTERM');
    await exited;
  }
}

// Headless Chromium from Debian's package; --no-sandbox only as root (Chromium refuses to
// run its sandbox there) or when RAGD_BROWSER_NO_SANDBOX=1.
export async function launchBrowser() {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} not found: install Debian's chromium (scripts/deps.sh browser) or set CHROMIUM`);
  }
  const args = [];
  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  if (root || process.env.RAGD_BROWSER_NO_SANDBOX === '1') args.push('--no-sandbox');
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: !process.env.RAGD_BROWSER_HEADED,
    args,
  });
}

// A new context and page (viewport defaults to 1280×900) whose console errors, uncaught page
// errors and Content-Security-Policy violations are recorded from before the first script
// runs: page.problems = {console: [texts], page: [errors]}; the violations, kept in the page,
// are read with cspViolations(page). assertClean() checks all three.
export async function newPage(browser, { viewport = { width: 1280, height: 900 }, ...options } = {}) {
  const context = await browser.newContext({ viewport, ...options });
  context.setDefaultTimeout(20000);
  await context.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI || '(inline)'}`);
    });
  });
  const page = await context.newPage();
  page.problems = { console: [], page: [] };
  page.on('console', (msg) => {
    if (msg.type() === 'error') page.problems.console.push(msg.text());
  });
  page.on('pageerror', (err) => page.problems.page.push(String(err)));
  return page;
}

export async function cspViolations(page) {
  return page.evaluate(() => window.__cspViolations || []);
}

// A full-page screenshot in SHOTS_DIR as <name>.png; returns its path.
export async function screenshot(page, name) {
  fs.mkdirSync(SHOTS_DIR, { recursive: true });
  const file = path.join(SHOTS_DIR, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

// The page's controls, found as assistive technology finds them (the shared contract's
// names): one place to read what the tests rely on.
export function controls(page) {
  const answer = page.getByRole('region', { name: 'Answer', exact: true });
  return {
    collection: page.getByLabel('Collection', { exact: true }),
    question: page.getByRole('textbox', { name: 'Question', exact: true }),
    ask: page.getByRole('button', { name: 'Ask', exact: true }),
    stop: page.getByRole('button', { name: 'Stop', exact: true }),
    answer,
    sources: answer.getByRole('list', { name: 'Sources', exact: true }),
    upload: page.getByLabel('Upload', { exact: true }),
    uploadProgress: page.getByRole('progressbar', { name: 'Upload progress', exact: true }),
    uploadStatus: page.getByRole('status', { name: 'Upload status', exact: true }),
    documents: page.getByRole('list', { name: 'Documents', exact: true }),
    newCollection: page.getByRole('textbox', { name: 'New collection', exact: true }),
    createCollection: page.getByRole('button', { name: 'Create collection', exact: true }),
    deleteCollection: page.getByRole('button', { name: 'Delete collection', exact: true }),
    health: page.getByRole('status', { name: 'Health', exact: true }),
    backends: page.getByRole('region', { name: 'Backends', exact: true }),
    apiKey: page.getByLabel('API key', { exact: true }),
    useKey: page.getByRole('button', { name: 'Use key', exact: true }),
    alert: page.getByRole('alert'),
  };
}

// The Answer region's text without its Sources list (what the LLM wrote, plus whatever
// notes the page shows next to it), read in the page.
export function answerText(page) {
  return page.evaluate(() => {
    const region = document.querySelector('[role="region"][aria-label="Answer"], section[aria-label="Answer"]');
    if (!region) return '';
    const copy = region.cloneNode(true);
    copy.querySelectorAll('ol[aria-label="Sources"], [aria-label="Sources"]').forEach((n) => n.remove());
    return copy.textContent.replace(/\s+/g, ' ').trim();
  });
}

// Starts recording, in the page, every state of the Answer text (as answerText) that a DOM
// change produced, with performance.now() stamps, and the time of the next click on the
// button `ask` (a locator). Read them with answerSnapshots(page).
export async function recordAnswer(page, ask) {
  await page.evaluate(() => {
    const read = () => {
      const region = document.querySelector('[role="region"][aria-label="Answer"], section[aria-label="Answer"]');
      if (!region) return '';
      const copy = region.cloneNode(true);
      copy.querySelectorAll('ol[aria-label="Sources"], [aria-label="Sources"]').forEach((n) => n.remove());
      return copy.textContent.replace(/\s+/g, ' ').trim();
    };
    if (window.__answerObserver) window.__answerObserver.disconnect();
    window.__answerSnapshots = [{ t: performance.now(), text: read() }];
    window.__askClickedAt = null;
    const observer = new MutationObserver(() => {
      const text = read();
      const snaps = window.__answerSnapshots;
      if (snaps[snaps.length - 1].text !== text) snaps.push({ t: performance.now(), text });
    });
    observer.observe(document.body, { subtree: true, childList: true, characterData: true });
    window.__answerObserver = observer;
  });
  await ask.evaluate((button) => {
    button.addEventListener('click', () => {
      if (window.__askClickedAt === null) window.__askClickedAt = performance.now();
    }, { capture: true, once: true });
  });
}

export function answerSnapshots(page) {
  return page.evaluate(() => ({ clickedAt: window.__askClickedAt, snapshots: window.__answerSnapshots || [] }));
}

// The Content-Security-Policy of the shared contract (the page's own header).
export const PAGE_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
  "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

// Opens srv's `/` as a browser asks for it (Accept: text/html, ...) and returns the
// navigation's response. With RAGD_BROWSER_WEB_DIR=dir the page and its two assets come from
// dir's index.html, app.css and app.js instead (with the contract's headers), so that the
// page can be worked on without rebuilding the binary; everything else still goes to ragd.
export async function openRagdPage(page, srv) {
  const webDir = process.env.RAGD_BROWSER_WEB_DIR;
  if (webDir) {
    const files = { '/': ['index.html', 'text/html'], '/assets/app.css': ['app.css', 'text/css'],
      '/assets/app.js': ['app.js', 'text/javascript'] };
    await page.route((url) => url.origin === srv.url && url.pathname in files, (route) => {
      const [name, type] = files[new URL(route.request().url()).pathname];
      route.fulfill({
        status: 200, body: fs.readFileSync(path.join(webDir, name)),
        headers: { 'Content-Type': `${type}; charset=utf-8`, 'Content-Security-Policy': PAGE_CSP,
          'X-Content-Type-Options': 'nosniff', 'Cache-Control': 'no-cache' },
      });
    });
  }
  return page.goto(`${srv.url}/`, { waitUntil: 'load' });
}

// Two collections, each holding a fact only it has (the sentences are long enough that an
// LLM answer quoting one passes the output guard's 96-byte hold-back in several tokens).
export const FACTS = {
  alpha: {
    db: 'alpha',
    id: 'alpha-keeper-notes',
    code: 'PERIWINKLE-7731',
    text: 'The alpha lighthouse keeper keeps the spare lantern key in the tin box marked ' +
      'PERIWINKLE-7731, under the third step of the spiral staircase beside the northern harbour wall. ' +
      'Nobody else in the village knows about the tin box.',
    end: 'northern harbour wall',
  },
  beta: {
    db: 'beta',
    id: 'beta-keeper-notes',
    code: 'MARIGOLD-4402',
    text: 'The beta lighthouse keeper keeps the spare lantern key in the tin box marked ' +
      'MARIGOLD-4402, behind the loose brick of the boathouse chimney on the southern pier. ' +
      'The fishermen never look there.',
    end: 'southern pier',
  },
};
export const LANTERN_QUESTION = 'Where does the lighthouse keeper keep the spare lantern key?';

export async function ingestFacts(srv, opts) {
  for (const f of Object.values(FACTS)) {
    await srv.ingest(f.db, [{ id: f.id, text: f.text, source: `${f.id}.txt` }], opts);
  }
}

// Runs fn(page) on a new page (newPage's options plus name, for the screenshot of a failure,
// and servers, whose log tails a failure's message gets), then closes its context.
export async function usePage(browser, { name, servers = [], ...pageOptions }, fn) {
  const page = await newPage(browser, pageOptions);
  try {
    await fn(page);
  } catch (err) {
    let where = '';
    try { where = `\nscreenshot: ${await screenshot(page, `FAILED-${name}`)}`; } catch { /* page gone */ }
    throw annotate(err, '', `${where}\nconsole errors: ${JSON.stringify(page.problems.console)}` +
      `\npage errors: ${JSON.stringify(page.problems.page)}` +
      servers.map((s) => `\n${s.logTail(3000)}`).join(''));
  } finally {
    await page.context().close();
  }
}

// Throws when the page logged a console error (other than those matching `allowed`, a
// RegExp), threw an uncaught error or had a CSP violation.
export async function assertClean(page, allowed = null) {
  const consoleErrors = page.problems.console.filter((text) => !(allowed && allowed.test(text)));
  const csp = await cspViolations(page);
  const problems = [];
  if (consoleErrors.length) problems.push(`console errors: ${JSON.stringify(consoleErrors)}`);
  if (page.problems.page.length) problems.push(`page errors: ${JSON.stringify(page.problems.page)}`);
  if (csp.length) problems.push(`CSP violations: ${JSON.stringify(csp)}`);
  if (problems.length) throw new Error(problems.join('\n'));
}

// Clicks Ask (c: controls(page)) and waits until the answer is complete: Stop, watched in
// the page from before the click, was enabled and is disabled again (the contract: enabled
// only while a question is being answered). Playwright's response.finished() is not used: it
// misses the end of about one streamed /api/query response in eight (Chromium 156).
export async function askAndWait(page, c) {
  await c.stop.evaluate((stop) => {
    const enabled = () => !stop.disabled && stop.getAttribute('aria-disabled') !== 'true';
    window.__stopWasEnabled = false;
    window.__stopObserver?.disconnect();
    window.__stopObserver = new MutationObserver((records) => {
      const lifted = records.some((r) => r.attributeName === 'disabled' && r.oldValue !== null && !stop.disabled);
      if (lifted || enabled()) window.__stopWasEnabled = true;
    });
    window.__stopObserver.observe(stop, { attributes: true, attributeOldValue: true });
  });
  await c.ask.click();
  await eventually('the answer is complete: Stop was enabled, and is disabled again', async () => {
    const state = await c.stop.evaluate((stop) => ({
      wasEnabled: window.__stopWasEnabled,
      enabledNow: !stop.disabled && stop.getAttribute('aria-disabled') !== 'true',
    }));
    assert.ok(state.wasEnabled && !state.enabledNow, JSON.stringify(state));
  }, 30000);
}
