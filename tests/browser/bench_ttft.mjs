// bench_ttft.mjs — the web page's size and the time to the first answer token in the
// browser (BENCHMARKS.md "Web page"). Not a test: it asserts nothing about speed.
//
//   make browser-bench                       (= node tests/browser/bench_ttft.mjs)
//   node tests/browser/bench_ttft.mjs --asks 20 --token-ms 0,20
//
// For each --token-ms value (the fake Ollama's per-token latency): the fake Ollama, ragd in
// front of it (OLLAMA_BASE_URL, and RAGD_CACHE=off so that no answer comes from the cache),
// one collection holding one document, and the page in headless Chromium. Each of --asks
// questions (two more first, not counted) is typed into the page and Ask is clicked; the
// fake answers each with a text of its own ("Reply N starts here." and the document's
// sentence, ~230 bytes). Measured in the page: the time from the click event to the first DOM
// change that put the answer's first words into the Answer region ("first token"), and to
// the change that completed it ("whole answer"). For reference, the same question straight to POST /api/query (stream)
// from node: time to the first `event: token`. Medians, 90th percentiles, min and max in ms.
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import {
  FACTS, FakeOllama, ROOT, Ragd, answerSnapshots, askAndWait, controls, eventually, launchBrowser,
  newPage, openRagdPage, recordAnswer,
} from './lib.mjs';

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : fallback;
}
const ASKS = Number(option('asks', '20'));
const TOKEN_MS = option('token-ms', '0,20').split(',').map(Number);
const WARMUP = 2;

function stats(values) {
  const v = [...values].sort((a, b) => a - b);
  const at = (q) => v[Math.min(v.length - 1, Math.ceil(q * v.length) - 1)];
  const med = v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
  return { median: med, p90: at(0.9), min: v[0], max: v[v.length - 1] };
}
const ms = (x) => x.toFixed(1);

function pageSize() {
  const rows = [];
  let raw = 0;
  let gz = 0;
  for (const name of ['index.html', 'app.css', 'app.js']) {
    const bytes = fs.readFileSync(path.join(ROOT, 'web', name));
    const packed = zlib.gzipSync(bytes, { level: 9 }).length;
    rows.push(`| web/${name} | ${bytes.length} | ${packed} |`);
    raw += bytes.length;
    gz += packed;
  }
  rows.push(`| all three | ${raw} | ${gz} |`);
  return ['| file | bytes | gzip -9 bytes |', '|---|---:|---:|', ...rows].join('\n');
}

// Time from sending a streamed query to the first `event: token`, from node.
async function directTtft(srv, question) {
  const started = performance.now();
  const res = await fetch(`${srv.url}/api/query`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ query: question, db: FACTS.alpha.db, stream: true }),
  });
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let text = '';
  let first = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    text += decoder.decode(value, { stream: true });
    if (first === null && text.includes('event: token')) first = performance.now() - started;
  }
  return first;
}

async function measure(browser, tokenMs) {
  const fake = await new FakeOllama({ token_ms: tokenMs }).start();
  const srv = await new Ragd({ OLLAMA_BASE_URL: fake.url, RAGD_CACHE: 'off' }, 'bench').start();
  try {
    const a = FACTS.alpha;
    await srv.ingest(a.db, [{ id: a.id, text: a.text }]);
    const page = await newPage(browser);
    await openRagdPage(page, srv);
    const c = controls(page);
    await eventually('alpha can be chosen', () => c.collection.selectOption(a.db, { timeout: 1000 }));
    const first = [];
    const whole = [];
    const direct = [];
    for (let i = 0; i < WARMUP + ASKS; i++) {
      const question = `Where does the lighthouse keeper keep the spare lantern key? (question ${i})`;
      // Each answer starts with its own words, so that no state of an earlier one counts.
      const marker = `Reply ${i} starts here.`;
      await fake.configure({ answer: `${marker} ${a.text}` });
      await c.question.fill(question);
      await recordAnswer(page, c.ask);
      await askAndWait(page, c);
      const { clickedAt, snapshots } = await answerSnapshots(page);
      const later = snapshots.filter((s) => clickedAt !== null && s.t >= clickedAt);
      const begun = later.find((s) => s.text.includes(marker));
      const done = later.find((s) => s.text.includes(marker) && s.text.includes(a.end));
      if (!begun || !done) {
        throw new Error(`ask ${i}: no answer seen (click at ${clickedAt}): ${JSON.stringify(snapshots)}`);
      }
      const d = await directTtft(srv, `${question} (direct)`);
      if (i < WARMUP) continue;
      first.push(begun.t - clickedAt);
      whole.push(done.t - clickedAt);
      direct.push(d);
    }
    await page.context().close();
    return { first: stats(first), whole: stats(whole), direct: stats(direct) };
  } finally {
    await srv.stop();
    await fake.stop();
  }
}

const browser = await launchBrowser();
const lines = [];
try {
  lines.push(`Chromium ${browser.version()}, node ${process.versions.node}, ${ASKS} asks each (after ${WARMUP} not counted), ms:`);
  lines.push('');
  lines.push('| fake token_ms | page: first token median | p90 | min | max | page: whole answer median | direct /api/query: first token median |');
  lines.push('|---:|---:|---:|---:|---:|---:|---:|');
  for (const tokenMs of TOKEN_MS) {
    const r = await measure(browser, tokenMs);
    lines.push(`| ${tokenMs} | ${ms(r.first.median)} | ${ms(r.first.p90)} | ${ms(r.first.min)} | ${ms(r.first.max)} | ` +
      `${ms(r.whole.median)} | ${ms(r.direct.median)} |`);
  }
} finally {
  await browser.close();
}
process.stdout.write(`${pageSize()}\n\n${lines.join('\n')}\n`);
