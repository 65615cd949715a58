// Asking: in front of the fake Ollama the answer streams into the Answer region token by
// token, carries the fact only the chosen collection holds, lists that collection's document
// as source 1, and [1] leads to it; the same question again is visibly Cached; Stop aborts an
// answer under way (the fake sees the call cancelled). On the true defaults (no backend) the
// answer comes from the collection extractively and is not flagged; with a configured backend
// that does not answer it is visibly Degraded. The Health element follows /health throughout.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  FACTS, FakeOllama, LANTERN_QUESTION, Ragd, answerSnapshots, answerText, assertClean, controls,
  eventually, freePort, ingestFacts, launchBrowser, TEST_TIMEOUT_MS, openRagdPage, defaultsSkipReason, recordAnswer,
  screenshot, usePage,
} from './lib.mjs';

const defaultsSkip = await defaultsSkipReason();
// Per-token latency of the fake: slow enough that the page shows a partial answer between
// two tokens (not a speed assertion: nothing is timed).
const TOKEN_MS = 40;

let browser;
let fake;
let withLlm;      // ragd in front of the fake Ollama
let defaults;     // ragd on the true defaults

before(async () => {
  fake = await new FakeOllama({ token_ms: TOKEN_MS }).start();
  withLlm = await new Ragd({ OLLAMA_BASE_URL: fake.url }, 'ask-llm').start();
  await ingestFacts(withLlm);
  if (!defaultsSkip) {
    defaults = await new Ragd({}, 'ask-defaults').start();
    await ingestFacts(defaults);
  }
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await withLlm?.stop();
  await defaults?.stop();
  await fake?.stop();
});

// Opens srv's page, picks collection db and asks question; returns the controls once the
// answer holds `until` (a string) and Stop is disabled again (the answer is complete).
async function ask(page, srv, db, question, until) {
  await openRagdPage(page, srv);
  const c = controls(page);
  await eventually(`collection ${db} can be chosen`, async () => {
    await c.collection.selectOption(db, { timeout: 1000 });
  });
  await c.question.fill(question);
  await recordAnswer(page, c.ask);
  await c.ask.click();
  await eventually(`the answer holds ${JSON.stringify(until)} and is complete`, async () => {
    const text = await answerText(page);
    assert.ok(text.includes(until), `answer: ${JSON.stringify(text)}`);
    assert.equal(await c.stop.isDisabled(), true, 'Stop is still enabled');
  }, 30000);
  return c;
}

test('an answer streams in several tokens with the chosen collection\'s fact and sources; [1] leads to source 1', { timeout: TEST_TIMEOUT_MS }, async () => {
  await usePage(browser, { name: 'ask-stream', servers: [withLlm] }, async (page) => {
    const a = FACTS.alpha;
    const c = await ask(page, withLlm, a.db, LANTERN_QUESTION, a.end);
    await screenshot(page, 'ask-1-streamed');

    const text = await answerText(page);
    assert.ok(text.includes(a.code), `alpha's fact is in the answer: ${text}`);
    assert.ok(!text.includes(FACTS.beta.code), `beta's fact is not: ${text}`);
    assert.ok(!/Cached/.test(text), `a first answer is not Cached: ${text}`);
    assert.ok(!/Degraded/i.test(text), `an answer of the working LLM is not Degraded: ${text}`);

    // Streaming: a state of the region showed the answer begun but not finished, and its
    // text took at least two different non-empty lengths on the way.
    const { snapshots } = await answerSnapshots(page);
    const answering = snapshots.filter((s) => s.text.includes('alpha lighthouse'));
    const partial = answering.filter((s) => !s.text.includes(a.end));
    const lengths = new Set(answering.map((s) => s.text.length));
    assert.ok(partial.length >= 1 && lengths.size >= 2,
      `the answer did not grow token by token: ${JSON.stringify(snapshots.map((s) => s.text))}`);

    // Sources: item 1 is alpha's document, with its passage and a score; beta's is absent.
    const items = c.sources.getByRole('listitem');
    assert.ok(await items.count() >= 1, 'the Sources list has items');
    const first = c.sources.locator('#source-1');
    const firstText = await first.textContent();
    assert.ok(firstText.includes(a.id), `source 1 names alpha's document id: ${firstText}`);
    assert.ok(firstText.includes(a.code), `source 1 shows the passage: ${firstText}`);
    assert.match(firstText, /\d\.\d/, `source 1 shows a score: ${firstText}`);
    assert.ok(!(await c.sources.textContent()).includes(FACTS.beta.id), 'beta\'s document is not a source');

    // The citation [1] is a link to #source-1, and following it moves there.
    const cite = c.answer.getByRole('link', { name: '[1]', exact: true }).first();
    assert.equal(await cite.getAttribute('href'), '#source-1');
    await page.evaluate(() => window.scrollTo(0, 0));
    await cite.click();
    await eventually('following [1] moves to source 1', async () => {
      const where = await page.evaluate(() => ({
        hash: location.hash,
        focused: !!document.activeElement?.closest('#source-1'),
      }));
      assert.ok(where.hash === '#source-1' || where.focused, JSON.stringify(where));
    });
    const box = await first.boundingBox();
    const viewport = page.viewportSize();
    assert.ok(box && box.y < viewport.height && box.y + box.height > 0, `source 1 is in view: ${JSON.stringify(box)}`);
    await screenshot(page, 'ask-2-source-1');
    await assertClean(page);
  });
});

test('the same question again is answered from the cache and says Cached', { timeout: TEST_TIMEOUT_MS }, async () => {
  await usePage(browser, { name: 'ask-cached', servers: [withLlm] }, async (page) => {
    const b = FACTS.beta;
    await ask(page, withLlm, b.db, LANTERN_QUESTION, b.end);
    assert.ok(!/Cached/.test(await answerText(page)), 'the first answer is not Cached');
    await controls(page).ask.click();
    await eventually('the second answer says Cached', async () => {
      const text = await answerText(page);
      assert.match(text, /Cached/);
      assert.ok(text.includes(b.code), text);
    });
    await screenshot(page, 'ask-3-cached');
    await assertClean(page);
  });
});

test('Stop aborts an answer under way', { timeout: TEST_TIMEOUT_MS }, async () => {
  await fake.configure({ token_ms: 400 });
  try {
    await usePage(browser, { name: 'ask-stop', servers: [withLlm] }, async (page) => {
      await openRagdPage(page, withLlm);
      const c = controls(page);
      await eventually('alpha can be chosen', async () => {
        await c.collection.selectOption(FACTS.alpha.db, { timeout: 1000 });
      });
      // Another wording than the other tests so that the cache does not answer at once.
      await c.question.fill('Tell me where the spare lantern key of the lighthouse is kept, please.');
      const before = (await fake.stats()).cancelled;
      await c.ask.click();
      await eventually('Stop is enabled while the answer is under way', async () => {
        assert.equal(await c.stop.isEnabled(), true);
      });
      await screenshot(page, 'ask-4-answering');
      await c.stop.click();
      await eventually('after Stop, Stop is disabled and Ask enabled', async () => {
        assert.equal(await c.stop.isDisabled(), true);
        assert.equal(await c.ask.isEnabled(), true);
      });
      await eventually('the fake Ollama saw its call cancelled', async () => {
        assert.ok((await fake.stats()).cancelled > before, 'no cancelled call');
      }, 30000, 200);
      assert.ok(!(await answerText(page)).includes(FACTS.alpha.end), 'the answer did not complete');
      await screenshot(page, 'ask-5-stopped');
      // An aborted fetch is the page's own doing: no uncaught error, no CSP violation.
      await assertClean(page, /abort/i);
    });
  } finally {
    await fake.configure({ token_ms: TOKEN_MS });
  }
});

test('an error answer shows in an alert with the server\'s message', { timeout: TEST_TIMEOUT_MS }, async () => {
  await withLlm.ingest('ephemeral', [{ id: 'e1', text: 'A short-lived note about the lantern.' }]);
  await usePage(browser, { name: 'ask-error', servers: [withLlm] }, async (page) => {
    await openRagdPage(page, withLlm);
    const c = controls(page);
    await eventually('ephemeral can be chosen', async () => {
      await c.collection.selectOption('ephemeral', { timeout: 1000 });
    });
    // Gone between the page's listing and the question: the query is a 404 envelope.
    await withLlm.call('DELETE', '/api/dbs/ephemeral');
    await c.question.fill('What does the short-lived note say about the lantern?');
    await c.ask.click();
    await eventually('the alert carries the server\'s message', async () => {
      const alerts = (await c.alert.allTextContents()).join(' ');
      assert.ok(alerts.includes('ephemeral') && /not exist|not found/i.test(alerts), JSON.stringify(alerts));
    });
    await eventually('Ask is usable again', async () => assert.equal(await c.ask.isEnabled(), true));
    await screenshot(page, 'ask-8-error');
    // The browser logs the 404 as a failed resource load: the page's own errors must be none.
    await assertClean(page, /status of 404/);
  });
});

test('Health shows the state /health gives with the fake Ollama up', { timeout: TEST_TIMEOUT_MS }, async () => {
  await usePage(browser, { name: 'health-llm', servers: [withLlm] }, async (page) => {
    await openRagdPage(page, withLlm);
    const { status } = await withLlm.call('GET', '/health');
    assert.equal(status, 'healthy', 'ragd in front of a working fake Ollama is healthy');
    await eventually('the Health element starts with healthy', async () => {
      const text = (await controls(page).health.textContent()).trim();
      assert.ok(text.toLowerCase().startsWith('healthy'), JSON.stringify(text));
    });
    await eventually('the Backends panel names the fake Ollama\'s address', async () => {
      const text = await controls(page).backends.textContent();
      assert.ok(text.includes(new URL(fake.url).host), JSON.stringify(text));
    });
    await screenshot(page, 'health-2-llm');
    await assertClean(page);
  });
});

test('with no backend (true defaults) the answer comes from the chosen collection, not flagged', { skip: defaultsSkip, timeout: TEST_TIMEOUT_MS }, async () => {
  await usePage(browser, { name: 'ask-defaults', servers: [defaults] }, async (page) => {
    const a = FACTS.alpha;
    const c = await ask(page, defaults, a.db, LANTERN_QUESTION, a.code);
    const text = await answerText(page);
    assert.ok(!text.includes(FACTS.beta.code), text);
    // docs/api.md "Honest defaults": no LLM configured is not a failure (degraded: false).
    assert.ok(!/Degraded/i.test(text), `an extractive answer on the defaults is not degraded: ${text}`);
    assert.ok((await c.sources.locator('#source-1').textContent()).includes(a.id));
    await eventually('the Health element starts with /health\'s status', async () => {
      const { status } = await defaults.call('GET', '/health');
      const health = (await c.health.textContent()).trim();
      assert.ok(health.toLowerCase().startsWith(status.toLowerCase()), `${health} / ${status}`);
    });
    await screenshot(page, 'ask-6-defaults');
    await assertClean(page);
  });
});

test('a configured backend that does not answer gives a visibly Degraded answer', { timeout: TEST_TIMEOUT_MS }, async () => {
  const deadPort = await freePort();  // nothing listens there
  const srv = await new Ragd({ OLLAMA_BASE_URL: `http://127.0.0.1:${deadPort}` }, 'ask-degraded').start();
  try {
    await ingestFacts(srv);
    await usePage(browser, { name: 'ask-degraded', servers: [srv] }, async (page) => {
      const a = FACTS.alpha;
      await ask(page, srv, a.db, LANTERN_QUESTION, a.code);
      // With the reason: docs/api.md's degraded_reason starts "generator ollama unavailable".
      await eventually('the answer says Degraded, and why', async () => {
        assert.match(await answerText(page), /Degraded\b.*generator ollama unavailable/);
      });
      await eventually('the Health element says degraded, as /health does', async () => {
        const { status } = await srv.call('GET', '/health');
        assert.equal(status, 'degraded');
        assert.match((await controls(page).health.textContent()).trim(), /^degraded/i);
      });
      await screenshot(page, 'ask-7-degraded');
      await assertClean(page);
    });
  } finally {
    await srv.stop();
  }
});
