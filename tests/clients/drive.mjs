// drive.mjs — one call made with a real client library (npm `ollama` or `openai`), and what
// the library gave back, printed as one JSON line. tests/e2e/test_clients.py runs it against
// ragd; it asserts nothing itself.
//
// usage: node drive.mjs '<spec>'   (or the spec on standard input when no argument is given)
// spec:  {"client": "ollama" | "openai", "url": "http://127.0.0.1:PORT", "op": OP,
//         "args": {...the library call's argument...}, "api_key": "...", "headers": {...},
//         "max_retries": N (openai; the library's default 2 when absent)}
// ops:   ollama: list, ps, version, show, chat, generate, embed, embeddings
//        openai: models, model (models.retrieve(args.model)), chat, embeddings
// stdout, on success: {"ok": true, "result": <the value returned>, "chunks": [<each streamed
//         part>] (a streamed call: result is then null)}
//         on a library error: {"ok": false, "error": {"class", "status", "message", "body",
//         "api_error"}}: class is the error's constructor name (ResponseError, NotFoundError,
//         AuthenticationError, ...), status its HTTP status (ollama: status_code), body the
//         parsed error body (openai: err.error), api_error whether it is openai's APIError.
// Exit status: 0 when a line was printed (success or a library error), 2 on a bad spec.
import { Ollama } from 'ollama';
import OpenAI from 'openai';

function fail(message) {
  process.stderr.write(`drive.mjs: ${message}\n`);
  process.exit(2);
}

async function readSpec() {
  let text = process.argv[2];
  if (text === undefined) {
    const parts = [];
    for await (const part of process.stdin) parts.push(part);
    text = Buffer.concat(parts).toString('utf8');
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    fail(`the spec is not JSON: ${e.message}`);
  }
}

// Collects a streamed answer: every part the library yielded, in order.
async function collect(iterable) {
  const chunks = [];
  for await (const part of iterable) chunks.push(part);
  return chunks;
}

async function runOllama(spec) {
  const client = new Ollama({ host: spec.url, headers: spec.headers });
  const args = spec.args ?? {};
  switch (spec.op) {
    case 'list': return { result: await client.list() };
    case 'ps': return { result: await client.ps() };
    case 'version': return { result: await client.version() };
    case 'show': return { result: await client.show(args) };
    case 'embed': return { result: await client.embed(args) };
    case 'embeddings': return { result: await client.embeddings(args) };
    case 'chat':
    case 'generate': {
      const out = await client[spec.op](args);
      if (args.stream) return { result: null, chunks: await collect(out) };
      return { result: out };
    }
    default: fail(`unknown ollama op ${spec.op}`);
  }
}

async function runOpenAI(spec) {
  const options = { baseURL: `${spec.url}/v1`, apiKey: spec.api_key ?? 'no-key' };
  if (spec.headers) options.defaultHeaders = spec.headers;
  if (spec.max_retries !== undefined) options.maxRetries = spec.max_retries;
  const client = new OpenAI(options);
  const args = spec.args ?? {};
  switch (spec.op) {
    case 'models': {
      const ids = [];
      const models = [];
      for await (const m of client.models.list()) {
        ids.push(m.id);
        models.push(m);
      }
      return { result: { ids, models } };
    }
    case 'model': return { result: await client.models.retrieve(args.model) };
    case 'embeddings': return { result: await client.embeddings.create(args) };
    case 'chat': {
      const out = await client.chat.completions.create(args);
      if (args.stream) return { result: null, chunks: await collect(out) };
      return { result: out };
    }
    default: fail(`unknown openai op ${spec.op}`);
  }
}

function describe(err) {
  return {
    class: err?.constructor?.name ?? typeof err,
    status: err?.status ?? err?.status_code ?? null,
    message: String(err?.message ?? err),
    body: err?.error ?? null,
    api_error: err instanceof OpenAI.APIError,
  };
}

const spec = await readSpec();
if (!spec || typeof spec.url !== 'string') fail('the spec needs "url"');
let line;
try {
  let out;
  if (spec.client === 'ollama') out = await runOllama(spec);
  else if (spec.client === 'openai') out = await runOpenAI(spec);
  else fail(`unknown client ${spec.client}`);
  line = { ok: true, result: out.result, ...(out.chunks ? { chunks: out.chunks } : {}) };
} catch (err) {
  line = { ok: false, error: describe(err) };
}
process.stdout.write(JSON.stringify(line) + '\n');
