// Documents and collections through the page, on the true defaults: a text file given to
// the Upload input is stored (with progress and a status naming it), listed under Documents
// and findable by the next question; its Delete button asks first, and once confirmed the
// document is gone and no longer findable. A file dropped on the drop zone is stored too.
// Collections are created and deleted (after a confirm) from the page.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  FACTS, Ragd, answerText, askAndWait, assertClean, controls, eventually, ingestFacts,
  launchBrowser, TEST_TIMEOUT_MS, openRagdPage, defaultsSkipReason, screenshot, usePage,
} from './lib.mjs';

const skip = await defaultsSkipReason();

const NOTES = {
  name: 'notes.txt',
  code: 'TANGERINE-5150',
  text: 'The gamma tide table for the harbour is filed under the code TANGERINE-5150 and pinned ' +
    'inside the ferry office window, next to the timetable of the morning boats.\n',
  question: 'Under which code is the gamma tide table for the harbour filed?',
};

let browser;
let srv;

before(async () => {
  if (skip) return;
  srv = await new Ragd({}, 'upload').start();
  await ingestFacts(srv);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await srv?.stop();
});

async function openOn(page, db) {
  await openRagdPage(page, srv);
  const c = controls(page);
  await eventually(`collection ${db} can be chosen`, async () => {
    await c.collection.selectOption(db, { timeout: 1000 });
  });
  return c;
}

async function askFor(page, c, question) {
  await c.question.fill(question);
  await askAndWait(page, c);
  return answerText(page);
}

const documentIds = async (db) =>
  (await srv.call('GET', `/api/dbs/${db}/documents`)).documents.map((d) => d.id);

test('an uploaded file becomes findable; deleting it (after a confirm) makes it unfindable', { skip, timeout: TEST_TIMEOUT_MS }, async () => {
  await usePage(browser, { name: 'upload', servers: [srv] }, async (page) => {
    const db = FACTS.alpha.db;
    const c = await openOn(page, db);
    await c.documents.getByText(FACTS.alpha.id).waitFor();
    assert.ok(!(await askFor(page, c, NOTES.question)).includes(NOTES.code), 'the fact is not there before the upload');

    // Every value the progress bar takes, recorded in the page.
    await c.uploadProgress.evaluate((bar) => {
      window.__progressValues = [];
      new MutationObserver(() => window.__progressValues.push(bar.value))
        .observe(bar, { attributes: true, attributeFilter: ['value', 'max'] });
    });
    await c.upload.setInputFiles({ name: NOTES.name, mimeType: 'text/plain', buffer: Buffer.from(NOTES.text) });
    await eventually('the Upload status names the file', async () => {
      assert.ok((await c.uploadStatus.textContent()).includes(NOTES.name), await c.uploadStatus.textContent());
    });
    await c.documents.getByText(NOTES.name).waitFor();
    await screenshot(page, 'upload-1-added');
    assert.ok((await documentIds(db)).includes(NOTES.name), 'the server stored it in the chosen collection');
    const progress = await page.evaluate(() => window.__progressValues);
    assert.ok(progress.some((v) => v > 0), `the progress bar moved: ${JSON.stringify(progress)}`);

    const found = await askFor(page, c, NOTES.question);
    assert.ok(found.includes(NOTES.code), `the uploaded fact is found: ${found}`);
    await screenshot(page, 'upload-2-found');

    // Delete asks first: dismissed, nothing is deleted.
    const deleteButton = c.documents.getByRole('button', { name: `Delete ${NOTES.name}`, exact: true });
    const dialogs = [];
    page.once('dialog', (d) => { dialogs.push(d.type()); d.dismiss(); });
    await deleteButton.click();
    await eventually('a confirm was shown', () => assert.deepEqual(dialogs, ['confirm']));
    assert.ok((await documentIds(db)).includes(NOTES.name), 'a dismissed confirm deletes nothing');

    page.once('dialog', (d) => { dialogs.push(d.type()); d.accept(); });
    await deleteButton.click();
    await eventually('the document is gone from the list', async () => {
      assert.equal(await c.documents.getByText(NOTES.name).count(), 0);
    });
    assert.deepEqual(dialogs, ['confirm', 'confirm']);
    assert.ok(!(await documentIds(db)).includes(NOTES.name), 'the server deleted it');
    assert.ok((await documentIds(db)).includes(FACTS.alpha.id), 'and only it');
    const after = await askFor(page, c, NOTES.question);
    assert.ok(!after.includes(NOTES.code), `the deleted fact is no longer found: ${after}`);
    await screenshot(page, 'upload-3-deleted');
    await assertClean(page);
  });
});

test('several files chosen at once are all uploaded; a file dropped on the drop zone too', { skip, timeout: TEST_TIMEOUT_MS }, async () => {
  await usePage(browser, { name: 'upload-drop', servers: [srv] }, async (page) => {
    const db = FACTS.beta.db;
    const c = await openOn(page, db);
    await c.documents.getByText(FACTS.beta.id).waitFor();
    await c.upload.setInputFiles([
      { name: 'first.txt', mimeType: 'text/plain', buffer: Buffer.from('The first boathouse log lists the oars.\n') },
      { name: 'second.txt', mimeType: 'text/plain', buffer: Buffer.from('The second boathouse log lists the sails.\n') },
    ]);
    await eventually('both files are listed and stored', async () => {
      assert.ok(await c.documents.getByText('first.txt').count() >= 1, 'first.txt is listed');
      assert.ok(await c.documents.getByText('second.txt').count() >= 1, 'second.txt is listed');
      const ids = await documentIds(db);
      assert.ok(ids.includes('first.txt') && ids.includes('second.txt'), JSON.stringify(ids));
    });
    await screenshot(page, 'upload-4-two-files');

    // The drop zone is around the Upload input: a drop on the input's parent bubbles to it.
    await c.upload.evaluate((input) => {
      const transfer = new DataTransfer();
      transfer.items.add(new File(['# Dropped\n\nThe dropped ledger of the beta boathouse is bound in green leather.\n'],
        'dropped.md', { type: 'text/markdown' }));
      const zone = input.parentElement;
      for (const type of ['dragenter', 'dragover', 'drop']) {
        zone.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: transfer }));
      }
    });
    await eventually('the Upload status names the dropped file', async () => {
      assert.ok((await c.uploadStatus.textContent()).includes('dropped.md'), await c.uploadStatus.textContent());
    });
    await c.documents.getByText('dropped.md').waitFor();
    assert.ok((await documentIds(db)).includes('dropped.md'));
    await screenshot(page, 'upload-5-dropped');
    await assertClean(page);
  });
});

test('collections are created and deleted (after a confirm) from the page', { skip, timeout: TEST_TIMEOUT_MS }, async () => {
  await usePage(browser, { name: 'collections', servers: [srv] }, async (page) => {
    const c = await openOn(page, FACTS.alpha.db);
    const names = async () => (await srv.call('GET', '/api/dbs')).dbs.map((d) => d.name);
    const options = () => c.collection.evaluate((el) => [...el.options].map((o) => o.value));

    await c.newCollection.fill('gamma');
    await c.createCollection.click();
    await eventually('gamma is created and offered', async () => {
      assert.ok((await names()).includes('gamma'), 'the server has gamma');
      assert.ok((await options()).includes('gamma'), JSON.stringify(await options()));
    });
    await c.collection.selectOption('gamma');
    await screenshot(page, 'collections-1-created');

    const dialogs = [];
    page.once('dialog', (d) => { dialogs.push(d.type()); d.dismiss(); });
    await c.deleteCollection.click();
    await eventually('a confirm was shown', () => assert.deepEqual(dialogs, ['confirm']));
    assert.ok((await names()).includes('gamma'), 'a dismissed confirm deletes nothing');

    page.once('dialog', (d) => { dialogs.push(d.type()); d.accept(); });
    await c.deleteCollection.click();
    await eventually('gamma is deleted and no longer offered', async () => {
      assert.ok(!(await names()).includes('gamma'), 'the server still has gamma');
      assert.ok(!(await options()).includes('gamma'), JSON.stringify(await options()));
    });
    assert.ok((await names()).includes(FACTS.alpha.db), 'the other collections stay');
    await screenshot(page, 'collections-2-deleted');
    await assertClean(page);
  });
});
