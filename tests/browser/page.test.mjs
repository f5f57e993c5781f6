// The demo page's EventSource panels, as a person uses them: Time, Counter (with reconnection) and AI tokens,
// then a screenshot of the page mid-stream and a graceful shutdown with a stream open.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import {
  ARTIFACTS, connectionNotes, logEntries, recordStates, sleep, stopGracefully, useExample, VIEWPORT,
  waitLogRows, waitState, withPage,
} from './harness.mjs';

const h = useExample();
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const PANELS = ['time', 'count', 'ai', 'updates', 'chat', 'topic'];

test('the page loads with its header and every panel idle', { timeout: 30_000 }, async () => {
  await withPage(h.browser, h.server.url, async (page) => {
    assert.equal(await page.title(), 'Conduit · Server-Sent Events demo');
    const heading = page.locator('header.site h1');
    await heading.waitFor({ state: 'visible' });
    assert.equal(await heading.textContent(), 'Conduit');
    assert.ok(await page.locator('header.site p', { hasText: 'Server-Sent Events demo' }).isVisible());
    for (const key of PANELS) {
      const panel = page.locator(`section#panel-${key}`);
      assert.ok(await panel.isVisible(), `panel ${key} is visible`);
      assert.ok(await panel.locator('.panel-title').isVisible(), `panel ${key} has a visible title`);
      const status = panel.locator('.status');
      assert.equal(await status.getAttribute('data-state'), 'idle', `panel ${key} is idle`);
      assert.equal((await status.textContent()).trim(), 'idle');
    }
    for (const key of PANELS.filter((k) => k !== 'chat')) {
      assert.ok(await page.locator(`#panel-${key} [data-action="start"]`).isEnabled(), `${key}: Start enabled`);
      assert.ok(await page.locator(`#panel-${key} [data-action="stop"]`).isDisabled(), `${key}: Stop disabled`);
      assert.equal(await page.locator(`#panel-${key} ol.log > li`).count(), 0, `${key}: empty log`);
    }
  });
});

test('the first screen says what SSE is and shows the demos, not an empty chat box', { timeout: 30_000 }, async () => {
  await withPage(h.browser, h.server.url, async (page) => {
    const intro = (await page.locator('.intro').textContent()).replace(/\s+/g, ' ');
    assert.match(intro, /Server-Sent Events \(SSE\)/);
    assert.match(intro, /Start/);
    assert.match(intro, /reload the page mid-reply/);
    const conversation = await page.locator('#panel-chat .conversation').boundingBox();
    assert.ok(conversation.height <= 120, `the empty conversation is ${conversation.height}px high`);
    // The first demo panels start within the first screen.
    for (const key of ['time', 'count']) {
      const box = await page.locator(`#panel-${key}`).boundingBox();
      assert.ok(box.y + 120 < VIEWPORT.height, `${key} starts at ${box.y}px of ${VIEWPORT.height}`);
    }
  });
});

test('a stream stuck behind the browser\'s six connections per origin says why, and connects once one is free',
  { timeout: 30_000 }, async () => {
    await withPage(h.browser, h.server.url, async (page) => {
      // Six open streams to the same origin use up what HTTP/1.1 allows.
      await page.evaluate(() => {
        window.__held = Array.from({ length: 6 }, () => new EventSource('/time'));
      });
      await page.waitForFunction(() => window.__held.every((es) => es.readyState === EventSource.OPEN));
      const panel = '#panel-time';
      const hint = page.locator(`${panel} .hint`);
      await page.click(`${panel} [data-action="start"]`);
      await waitState(page, panel, 'connecting');
      assert.ok(await hint.isHidden(), 'no explanation at once');
      await hint.waitFor({ state: 'visible', timeout: 8_000 });
      assert.match(await hint.textContent(), /six HTTP\/1\.1 connections/);
      assert.equal(await page.locator(`${panel} .status`).getAttribute('data-state'), 'connecting');
      // One freed connection is enough.
      await page.evaluate(() => window.__held.pop().close());
      await waitState(page, panel, 'open', 5_000);
      assert.ok(await hint.isHidden(), 'the explanation goes once connected');
      await page.evaluate(() => window.__held.forEach((es) => es.close()));
    });
  });

test('Time: Start shows the server clock every second; Stop ends it', { timeout: 30_000 }, async () => {
  await withPage(h.browser, h.server.url, async (page) => {
    const panel = '#panel-time';
    await page.click(`${panel} [data-action="start"]`);
    await waitState(page, panel, 'open', 3_000);
    await waitLogRows(page, panel, '[data-type="time"]', 2, 3_500);

    const value = (await page.locator(`${panel} .value`).textContent()).trim();
    assert.match(value, ISO_TIME);
    assert.ok(Math.abs(Date.parse(value) - Date.now()) < 30_000, `${value} is about now`);
    for (const row of await logEntries(page, panel)) {
      assert.equal(row.type, 'time');
      assert.match(JSON.parse(row.data).iso, ISO_TIME);
    }

    await page.click(`${panel} [data-action="stop"]`);
    await waitState(page, panel, 'closed', 2_000);
    const before = (await logEntries(page, panel)).length;
    await sleep(1_500);                       // nothing more may arrive once stopped
    assert.equal((await logEntries(page, panel)).length, before, 'no events after Stop');
    assert.equal(await page.locator(`${panel} .status`).getAttribute('data-state'), 'closed');
    assert.ok(await page.locator(`${panel} [data-action="start"]`).isEnabled());
  });
});

test('Counter: n=5 every 50 ms gives counts 1..5 in order, then done', { timeout: 30_000 }, async () => {
  await withPage(h.browser, h.server.url, async (page) => {
    const panel = '#panel-count';
    await page.fill('#count-n', '5');
    await page.fill('#count-interval', '50');
    assert.equal(await page.locator(`${panel} .endpoint`).textContent(), '/count?n=5&interval_ms=50');
    await page.click(`${panel} [data-action="start"]`);
    await waitState(page, panel, 'complete', 5_000);

    const rows = await logEntries(page, panel);
    assert.deepEqual(rows, [
      ...[1, 2, 3, 4, 5].map((i) => ({ type: 'counter', id: String(i), data: JSON.stringify({ count: i }) })),
      { type: 'done', id: '5', data: '{"status":"complete"}' },  // EventSource keeps the last id for `done`
    ]);
    assert.equal((await page.locator(`${panel} .value`).textContent()).trim(), '5');
    assert.equal(await page.locator(`${panel} .caption`).textContent(), 'of 5 · finished');
    assert.equal(await page.locator(`${panel} .last-id`).textContent(), '5');
  });
});

test('AI tokens: the reply grows token by token, then completes', { timeout: 30_000 }, async () => {
  await withPage(h.browser, h.server.url, async (page) => {
    const panel = '#panel-ai';
    // Every text the bubble shows, in order.
    await page.evaluate((sel) => {
      const value = document.querySelector(`${sel} .value`);
      window.__aiTexts = [];
      new MutationObserver(() => window.__aiTexts.push(value.textContent))
        .observe(value, { childList: true, characterData: true, subtree: true });
    }, panel);
    await page.click(`${panel} [data-action="start"]`);
    await waitState(page, panel, 'open', 3_000);
    await waitState(page, panel, 'complete', 15_000);

    const rows = await logEntries(page, panel);
    assert.equal(rows.at(-1).type, 'done');
    assert.deepEqual(JSON.parse(rows.at(-1).data), { status: 'complete' });
    const tokens = rows.slice(0, -1).map((row) => {
      assert.equal(row.type, 'token');
      return JSON.parse(row.data);
    });
    assert.ok(tokens.length >= 10, `${tokens.length} tokens`);
    assert.deepEqual(tokens.map((t) => t.index), tokens.map((_, i) => i), 'consecutive indexes from 0');

    const bubble = (await page.locator(`${panel} .value.bubble`).textContent());
    assert.equal(bubble, tokens.map((t) => t.token).join(' '));
    assert.match(bubble, /^Hello! /);
    const texts = (await page.evaluate(() => window.__aiTexts)).filter(Boolean);
    assert.ok(texts.length >= tokens.length, 'the bubble changed once per token');
    for (let i = 1; i < texts.length; i += 1) {
      assert.ok(texts[i].length > texts[i - 1].length && texts[i].startsWith(texts[i - 1]), 'the text only grows');
    }
  });
});

test('Counter with "drop after": the browser reconnects with Last-Event-ID and shows every count once',
  { timeout: 30_000 }, async () => {
    await withPage(h.browser, h.server.url, async (page) => {
      const panel = '#panel-count';
      const endpoint = page.locator(`${panel} .endpoint`);
      await page.fill('#count-n', '12');
      await page.fill('#count-interval', '30');
      assert.equal(await endpoint.textContent(), '/count?n=12&interval_ms=30', 'empty "drop after": never');
      await page.fill('#count-drop', '4');
      assert.equal(await endpoint.textContent(), '/count?n=12&interval_ms=30&drop_after=4');

      const states = await recordStates(page, `${panel} .status`);
      const requests = [];
      page.on('request', (req) => {
        // allHeaders(): the headers as sent, including the Last-Event-ID that the browser adds itself.
        if (req.url().includes('/count?')) requests.push(req.allHeaders().then((hs) => hs['last-event-id'] ?? null));
      });
      await page.click(`${panel} [data-action="start"]`);
      assert.ok(await page.locator('#count-drop').isDisabled(), 'inputs are locked while streaming');
      await waitState(page, panel, 'complete', 10_000);

      const rows = await logEntries(page, panel);
      const counters = rows.filter((r) => r.type === 'counter');
      assert.equal(rows.length, 13, 'exactly 12 counter rows and done');
      assert.deepEqual(counters.map((r) => r.id), Array.from({ length: 12 }, (_, i) => String(i + 1)));
      assert.deepEqual(counters.map((r) => JSON.parse(r.data).count), Array.from({ length: 12 }, (_, i) => i + 1));
      assert.equal(rows.at(-1).type, 'done');
      assert.equal((await page.locator(`${panel} .value`).textContent()).trim(), '12');
      assert.equal(await page.locator(`${panel} .event-count`).textContent(), '13');

      const history = await states();
      const reconnects = history.filter((s) => s === 'reconnecting').length;
      assert.ok(reconnects >= 2, `two drops seen as "reconnecting": ${history.join(' → ')}`);
      assert.equal(history.at(-1), 'complete');
      // The browser's own reconnections, each resuming after the last count it saw, and the log says so.
      assert.deepEqual(await Promise.all(requests), [null, '4', '8']);
      const notes = await connectionNotes(page, panel);
      assert.deepEqual(notes.map((n) => n.what), ['connection lost', 'reconnected', 'connection lost', 'reconnected']);
      assert.match(notes[0].text, /Last-Event-ID: 4$/);
      assert.match(notes[3].text, /after event 8$/);
    });
  });

test('screenshot of the page mid-stream (Time, AI tokens and Chat running)', { timeout: 30_000 }, async () => {
  await withPage(h.browser, h.server.url, async (page) => {
    await page.fill('#token', h.token);
    await page.click('#panel-time [data-action="start"]');
    await waitLogRows(page, '#panel-time', '[data-type="time"]', 1, 3_000);
    await page.click('#panel-ai [data-action="start"]');
    // A longer message makes a longer reply, so the chat is still streaming when the picture is taken.
    await page.fill('#chat-input', 'Could you show me how a streamed reply looks while it is still arriving, '
      + 'word after word, in this chat panel of the Conduit demo page?');
    await page.click('#panel-chat [data-action="send"]');
    await page.waitForFunction(() => {
      const words = (sel) => document.querySelector(sel)?.textContent.trim().split(/\s+/).length ?? 0;
      return words('#panel-ai .value') >= 4 && words('#panel-chat .bubble.assistant') >= 6;
    }, null, { timeout: 5_000 });
    for (const [panel, state] of [['time', 'open'], ['ai', 'open'], ['chat', 'streaming']]) {
      assert.equal(await page.locator(`#panel-${panel} .status`).getAttribute('data-state'), state);
    }
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    const file = path.join(ARTIFACTS, 'page.png');
    await page.screenshot({ path: file, fullPage: true });
    console.log(`screenshot: ${file}`);
    assert.ok(fs.statSync(file).size > 10_000);
    // The page fits the viewport's width: nothing pokes out sideways.
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= VIEWPORT.width, `page width ${width}`);
  });
});

test('SIGTERM with a stream open: the server exits 0 and the page starts reconnecting', { timeout: 30_000 },
  async () => {
    await withPage(h.browser, h.server.url, async (page) => {
      await page.click('#panel-time [data-action="start"]');
      await waitState(page, '#panel-time', 'open', 3_000);
      await stopGracefully(h.server);
      await waitState(page, '#panel-time', 'reconnecting', 5_000);
    });
  });
