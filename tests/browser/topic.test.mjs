// The Topic panel: subscribe to a hub topic with EventSource, publish through the page's form, see it arrive.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { logEntries, useExample, waitState, withPage } from './harness.mjs';

const h = useExample();
const panel = '#panel-topic';

/** Publishes `data` (with an optional event name) through the form; returns the id the page reports. */
async function publish(page, topic, data, event = '') {
  await page.fill('#publish-data', data);
  await page.fill('#publish-event', event);
  await page.click(`${panel} [data-action="publish"]`);
  const result = page.locator(`${panel} .publish-result[data-state="ok"]`);
  await result.waitFor({ timeout: 5_000 });
  const m = /^Published to "(.+)" with id (\d+)$/.exec(await result.textContent());
  assert.ok(m, `publish result: ${await result.textContent()}`);
  assert.equal(m[1], topic);
  assert.equal(await page.inputValue('#publish-data'), '', 'the data field is cleared once published');
  return m[2];
}

test('Topic: events published through the form arrive in the log with their ids and names',
  { timeout: 30_000 }, async () => {
    await withPage(h.browser, h.server.url, async (page) => {
      const topic = `browser-${randomBytes(6).toString('hex')}`;
      await page.fill('#token', h.token);
      await page.fill('#topic-name', topic);
      await page.fill('#topic-events', 'message, greeting');
      assert.equal(await page.locator(`${panel} .endpoint`).textContent(), `/stream?topic=${topic}`);
      assert.match(await page.locator(`${panel} .curl`).textContent(), new RegExp(`/publish\\?topic=${topic}'$`));
      await page.click(`${panel} [data-action="start"]`);
      await waitState(page, panel, 'open', 3_000);

      const first = 'hello from the publish form';
      const id1 = await publish(page, topic, first);
      const row1 = page.locator(`${panel} ol.log > li[data-type="message"][data-id="${id1}"]`);
      await row1.waitFor({ timeout: 5_000 });
      assert.equal(await row1.getAttribute('data-data'), first);
      assert.equal((await page.locator(`${panel} .value`).textContent()), first);
      assert.match(await page.locator(`${panel} .caption`).textContent(), new RegExp(`^message · id ${id1} · `));

      const second = 'a named event';
      const id2 = await publish(page, topic, second, 'greeting');
      assert.ok(Number(id2) > Number(id1), `ids increase: ${id1} then ${id2}`);
      const row2 = page.locator(`${panel} ol.log > li[data-type="greeting"][data-id="${id2}"]`);
      await row2.waitFor({ timeout: 5_000 });
      assert.equal(await row2.getAttribute('data-data'), second);

      // Each event exactly once, nothing else; the stream stays open for more.
      assert.deepEqual(await logEntries(page, panel), [
        { type: 'message', id: id1, data: first },
        { type: 'greeting', id: id2, data: second },
      ]);
      assert.equal(await page.locator(`${panel} .status`).getAttribute('data-state'), 'open');
      await page.click(`${panel} [data-action="stop"]`);
      await waitState(page, panel, 'closed', 2_000);
    });
  });

test('Topic: long JSON in the log wraps between its fields, never inside one', { timeout: 30_000 }, async () => {
  await withPage(h.browser, h.server.url, async (page) => {
    const topic = `wrap-${randomBytes(6).toString('hex')}`;
    await page.fill('#token', h.token);
    await page.fill('#topic-name', topic);
    await page.click(`${panel} [data-action="start"]`);
    await waitState(page, panel, 'open', 3_000);
    const json = JSON.stringify({ items: Array.from({ length: 24 }, (_, i) => ({ name: `item-${i}`, value: i * 1000 })) });
    const id = await publish(page, topic, json);
    const data = page.locator(`${panel} ol.log > li[data-id="${id}"] .log-data`);
    await data.waitFor({ timeout: 5_000 });
    assert.equal(await data.textContent(), json, 'the text is the data, unchanged');
    // Each piece between commas is on one line, and the whole takes several.
    const layout = await data.evaluate((el) => {
      const lines = (node) => {
        const range = document.createRange();
        range.selectNodeContents(node);
        return new Set([...range.getClientRects()].filter((r) => r.width > 0).map((r) => Math.round(r.top))).size;
      };
      const pieces = [...el.childNodes].filter((n) => n.nodeType === Node.TEXT_NODE);
      return { pieces: pieces.length, split: pieces.filter((n) => lines(n) > 1).length, lines: lines(el) };
    });
    assert.ok(layout.pieces > 40, `${layout.pieces} pieces`);
    assert.ok(layout.lines > 2, `${layout.lines} lines`);
    assert.equal(layout.split, 0, 'no piece is broken across lines');
  });
});
