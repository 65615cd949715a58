// The page on ragd's true defaults (no variable but the data dir and the listen address,
// nothing on 11434): it loads cleanly, every control of the shared contract is there under
// its accessible name, the Health element says what /health says and is refreshed, a phone
// screen has no horizontal scroll, and the keyboard alone can ask.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  FACTS, LANTERN_QUESTION, Ragd, answerText, assertClean, controls, eventually, ingestFacts,
  launchBrowser, TEST_TIMEOUT_MS, openRagdPage, defaultsSkipReason, screenshot, usePage,
} from './lib.mjs';

const skip = await defaultsSkipReason();

// A passage and an id without a single space: what a careless layout lets overflow.
const WIDE = {
  db: 'wide',
  id: 'a-very-long-document-identifier-without-any-space-0123456789abcdef0123456789abcdef.txt',
  text: 'The widest harbour crane lifts containers named ' +
    'CONTAINER-0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789 ' +
    'onto the night ferry every Tuesday.',
};

let browser;
let srv;

before(async () => {
  if (skip) return;
  srv = await new Ragd({}, 'load').start();
  await ingestFacts(srv);
  await srv.ingest(WIDE.db, [{ id: WIDE.id, text: WIDE.text }]);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await srv?.stop();
});

test('the page loads with every control, no console error, page error or CSP violation', { skip, timeout: TEST_TIMEOUT_MS }, async () => {
  await usePage(browser, { name: 'load', servers: [srv] }, async (page) => {
    const outside = [];
    page.on('request', (req) => {
      const url = req.url();
      if (!url.startsWith(`${srv.url}/`) && !url.startsWith('data:')) outside.push(url);
    });
    const response = await openRagdPage(page, srv);
    assert.equal(response.status(), 200);
    assert.match(response.headers()['content-type'] ?? '', /^text\/html/);
    assert.ok(response.headers()['content-security-policy'], 'the page comes with a Content-Security-Policy');

    const c = controls(page);
    // The collections come from GET /api/dbs: the select is filled once the script ran.
    await eventually('the Collection select lists alpha and beta', async () => {
      const names = await c.collection.evaluate((el) => [...el.options].map((o) => o.value || o.textContent));
      assert.ok(names.includes('alpha') && names.includes('beta'), JSON.stringify(names));
    });
    assert.equal(await c.collection.evaluate((el) => el.tagName), 'SELECT');
    assert.equal(await c.question.evaluate((el) => el.tagName), 'TEXTAREA');
    await c.ask.waitFor();
    assert.equal(await c.stop.isDisabled(), true, 'Stop is disabled while nothing is being answered');
    await c.answer.waitFor({ state: 'attached' });
    assert.deepEqual(await c.upload.evaluate((el) => [el.tagName, el.type, el.multiple]), ['INPUT', 'file', true]);
    assert.equal(await c.uploadProgress.evaluate((el) => el.tagName), 'PROGRESS');
    await c.uploadStatus.waitFor({ state: 'attached' });
    await c.documents.waitFor({ state: 'attached' });
    await c.newCollection.waitFor();
    await c.createCollection.waitFor();
    await c.deleteCollection.waitFor();
    await c.health.waitFor();
    await c.backends.waitFor();
    assert.equal(await c.apiKey.isVisible(), false, 'no API key is asked for when keys are off');
    await screenshot(page, 'load-1-page');

    assert.deepEqual(outside, [], 'the page fetches nothing from outside the server');
    await assertClean(page);

    // The policy is in force, not only sent: an inline script added now is blocked.
    const inline = await page.evaluate(() => new Promise((resolve) => {
      document.addEventListener('securitypolicyviolation', (e) => resolve(e.effectiveDirective), { once: true });
      const script = document.createElement('script');
      script.textContent = 'window.__inlineScriptRan = true;';
      document.body.append(script);
      setTimeout(() => resolve(window.__inlineScriptRan ? 'the inline script ran' : 'no violation reported'), 5000);
    }));
    assert.match(inline, /^script-src/, 'an inline script is refused by the page\'s CSP');
  });
});

test('Health shows /health\'s status; Backends is filled and both are refreshed', { skip, timeout: TEST_TIMEOUT_MS }, async () => {
  await usePage(browser, { name: 'health-defaults', servers: [srv] }, async (page) => {
    const polled = { health: 0, pool: 0 };
    page.on('request', (req) => {
      const { pathname } = new URL(req.url());
      if (pathname === '/health') polled.health++;
      if (pathname === '/api/pool/stats') polled.pool++;
    });
    await openRagdPage(page, srv);
    const c = controls(page);
    await eventually('the Health element starts with /health\'s status', async () => {
      const { status } = await srv.call('GET', '/health');
      const text = (await c.health.textContent()).trim();
      assert.ok(text.toLowerCase().startsWith(status.toLowerCase()),
        `Health says ${JSON.stringify(text)}, /health says ${JSON.stringify(status)}`);
    });
    const pool = await srv.call('GET', '/api/pool/stats');
    await eventually('the Backends panel shows figures', async () => {
      const text = await c.backends.textContent();
      assert.match(text, /\d/, `Backends: ${JSON.stringify(text)}`);
      assert.ok(text.includes(String(pool.pool_size)), `Backends shows no pool size: ${JSON.stringify(text)}`);
    });
    // "Refreshed every few seconds": a second round of both requests comes by itself.
    await eventually('/health and /api/pool/stats are fetched again', () => {
      assert.ok(polled.health >= 2 && polled.pool >= 2, JSON.stringify(polled));
    }, 30000, 250);
    await screenshot(page, 'health-1-defaults');
    await assertClean(page);
  });
});

test('on a 375×740 screen nothing scrolls sideways, answer, sources and documents included', { skip, timeout: TEST_TIMEOUT_MS }, async () => {
  await usePage(browser, { name: 'mobile', servers: [srv], viewport: { width: 375, height: 740 } }, async (page) => {
    await openRagdPage(page, srv);
    const c = controls(page);
    await eventually('the wide collection is listed', async () => {
      await c.collection.selectOption(WIDE.db, { timeout: 1000 });
    });
    await c.documents.getByText(WIDE.id).waitFor();
    await c.question.fill('Which containers does the widest harbour crane lift onto the night ferry?');
    await c.ask.click();
    await eventually('the answer and its sources are shown', async () => {
      assert.match(await answerText(page), /CONTAINER-0123456789ABCDEF/);
      assert.ok(await c.sources.getByRole('listitem').count() >= 1);
    });
    await c.sources.getByRole('listitem').first().getByText(WIDE.id, { exact: false }).waitFor();
    const widths = await page.evaluate(() => ({
      scroll: document.scrollingElement.scrollWidth, client: document.scrollingElement.clientWidth,
    }));
    await screenshot(page, 'mobile-1-answer');
    assert.ok(widths.scroll <= 375, `the page is ${widths.scroll} px wide on a 375 px screen`);
    await assertClean(page);
  });
});

test('the keyboard alone reaches Question and Ask; Enter in the Question asks', { skip, timeout: TEST_TIMEOUT_MS }, async () => {
  await usePage(browser, { name: 'keyboard', servers: [srv] }, async (page) => {
    await openRagdPage(page, srv);
    const c = controls(page);
    await eventually('alpha is listed', async () => {
      await c.collection.selectOption(FACTS.alpha.db, { timeout: 1000 });
    });
    await page.evaluate(() => { document.activeElement?.blur(); window.scrollTo(0, 0); });
    // Tab from the top of the page; note each stop's accessible identity.
    const stops = [];
    for (let i = 0; i < 60; i++) {
      await page.keyboard.press('Tab');
      const onQuestion = await c.question.evaluate((el) => el === document.activeElement);
      const onAsk = await c.ask.evaluate((el) => el === document.activeElement);
      stops.push(onQuestion ? 'Question' : onAsk ? 'Ask' : '-');
      if (stops.includes('Question') && onAsk) break;
    }
    const q = stops.indexOf('Question');
    assert.ok(q >= 0, `Tab never reached the Question box (${stops.length} presses)`);
    assert.ok(stops.indexOf('Ask', q) > q, 'Tab did not reach Ask after the Question box');

    await c.question.focus();
    await page.keyboard.type(LANTERN_QUESTION);
    await page.keyboard.press('Enter');
    await eventually('the answer to the question asked with Enter is shown', async () => {
      assert.ok((await answerText(page)).includes(FACTS.alpha.code), await answerText(page));
    });
    await screenshot(page, 'keyboard-1-enter-asked');
    await assertClean(page);
  });
});
