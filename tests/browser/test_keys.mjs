// API keys on (RAGD_API_KEYS): the page itself needs none, asks for a key when the API
// answers 401, says so clearly when a key is refused, works with the right one (sent as
// Authorization: Bearer, kept in sessionStorage only: not in localStorage, not in a cookie,
// gone in a new session), and tells a read-only key's user that it may only read.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  FACTS, LANTERN_QUESTION, Ragd, answerText, askAndWait, assertClean, controls, eventually,
  ingestFacts, launchBrowser, TEST_TIMEOUT_MS, openRagdPage, screenshot, usePage,
} from './lib.mjs';

const WRITE_KEY = 'browser-write-key-0123456789';
const READ_KEY = 'browser-read-key-0123456789';
const WRONG_KEY = 'browser-wrong-key-0123456789';
// The browser logs every 401/403 answer as a failed resource load: expected here.
const REFUSALS = /status of 40[13]/;

let browser;
let srv;

before(async () => {
  srv = await new Ragd({ RAGD_API_KEYS: `${WRITE_KEY},${READ_KEY}:read` }, 'keys').start();
  await ingestFacts(srv, { key: WRITE_KEY });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await srv?.stop();
});

// Enters key in the API key form (which must be shown).
async function useKey(c, key) {
  await c.apiKey.waitFor();
  assert.equal(await c.apiKey.getAttribute('type'), 'password');
  await c.apiKey.fill(key);
  await c.useKey.click();
}

test('the page asks for a key, refuses a wrong one clearly and works with the right one, kept for the session only', { timeout: TEST_TIMEOUT_MS }, async () => {
  await usePage(browser, { name: 'keys', servers: [srv] }, async (page) => {
    const sent = [];
    page.on('request', (req) => {
      if (new URL(req.url()).pathname.startsWith('/api/')) sent.push(req.headers().authorization ?? null);
    });
    const response = await openRagdPage(page, srv);
    assert.equal(response.status(), 200, 'the page itself needs no key');
    const c = controls(page);
    await c.apiKey.waitFor();
    await screenshot(page, 'keys-1-asked');

    await useKey(c, WRONG_KEY);
    await eventually('a refused key is said to be refused', async () => {
      const alerts = (await c.alert.allTextContents()).join(' ');
      assert.ok(/API key/i.test(alerts) && /refused/i.test(alerts), JSON.stringify(alerts));
    });
    await screenshot(page, 'keys-2-refused');

    await useKey(c, WRITE_KEY);
    await eventually('alpha can be chosen once the key is accepted', async () => {
      await c.collection.selectOption(FACTS.alpha.db, { timeout: 1000 });
    });
    assert.ok(!/refused/i.test((await c.alert.allTextContents()).join(' ')), 'the refusal is gone');
    await c.question.fill(LANTERN_QUESTION);
    await askAndWait(page, c);
    assert.ok((await answerText(page)).includes(FACTS.alpha.code), await answerText(page));
    await screenshot(page, 'keys-3-answered');
    assert.ok(sent.includes(`Bearer ${WRITE_KEY}`), `the key went out as a Bearer token: ${JSON.stringify(sent)}`);

    const storage = await page.evaluate(() => ({
      session: Object.keys(sessionStorage).map((k) => sessionStorage.getItem(k)),
      local: Object.keys(localStorage).map((k) => localStorage.getItem(k)),
      cookie: document.cookie,
    }));
    assert.ok(storage.session.some((v) => v.includes(WRITE_KEY)), 'the key is in sessionStorage');
    assert.ok(!storage.local.some((v) => v.includes(WRITE_KEY)), 'the key is not in localStorage');
    assert.equal(storage.cookie, '', 'no cookie');
    assert.deepEqual(await page.context().cookies(), [], 'no cookie');
    assert.ok(!page.url().includes(WRITE_KEY), 'the key is not in the URL');

    // The same tab keeps it across a reload: no form, answers work.
    await page.reload();
    await eventually('after a reload alpha can be chosen without a key form', async () => {
      await c.collection.selectOption(FACTS.alpha.db, { timeout: 1000 });
    });
    assert.equal(await c.apiKey.isVisible(), false, 'no key is asked for again in the same session');
    await assertClean(page, REFUSALS);
  });
  // A new session (another context) starts without it.
  await usePage(browser, { name: 'keys-new-session', servers: [srv] }, async (page) => {
    await openRagdPage(page, srv);
    await controls(page).apiKey.waitFor();
  });
});

test('a read-only key may ask, and an upload with it says the key may only read', { timeout: TEST_TIMEOUT_MS }, async () => {
  await usePage(browser, { name: 'keys-read', servers: [srv] }, async (page) => {
    await openRagdPage(page, srv);
    const c = controls(page);
    await useKey(c, READ_KEY);
    await eventually('alpha can be chosen with the read-only key', async () => {
      await c.collection.selectOption(FACTS.alpha.db, { timeout: 1000 });
    });
    await c.question.fill(LANTERN_QUESTION);
    await askAndWait(page, c);
    assert.ok((await answerText(page)).includes(FACTS.alpha.code), await answerText(page));

    await c.upload.setInputFiles({ name: 'readonly.txt', mimeType: 'text/plain',
      buffer: Buffer.from('A read-only key cannot store this sentence.\n') });
    await eventually('the page says the key may only read', async () => {
      const alerts = (await c.alert.allTextContents()).join(' ');
      assert.match(alerts, /read[- ]only|only read/i);
    });
    await screenshot(page, 'keys-4-read-only');
    const docs = await srv.call('GET', `/api/dbs/${FACTS.alpha.db}/documents`, undefined, { key: WRITE_KEY });
    assert.ok(!docs.documents.some((d) => d.id === 'readonly.txt'), 'nothing was stored');
    await assertClean(page, REFUSALS);
  });
});
