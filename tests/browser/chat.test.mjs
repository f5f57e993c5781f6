// The Chat panel: a POST answered with a stream (fetch + the page's own SSE parser), with the API token typed
// into the page as a person would.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { logEntries, recordStates, sleep, useExample, waitState, withPage } from './harness.mjs';

const h = useExample();
const panel = '#panel-chat';
const HEX_ID = /^[0-9a-f]{16}$/;

/** Types `message` and sends it with the Send button (or Enter); resolves to the request's JSON body. */
async function send(page, message, { enter = false } = {}) {
  const request = page.waitForRequest((r) => r.url().endsWith('/api/chat/stream') && r.method() === 'POST');
  await page.fill('#chat-input', message);
  if (enter) await page.press('#chat-input', 'Enter');
  else await page.click(`${panel} [data-action="send"]`);
  return (await request).postDataJSON();
}

test('Chat: a reply streams into a bubble, and a second message continues the conversation',
  { timeout: 30_000 }, async () => {
    await withPage(h.browser, h.server.url, async (page) => {
      await page.fill('#token', h.token);
      const states = await recordStates(page, `${panel} .status`);

      const first = 'Hello from the browser test';
      assert.deepEqual(await send(page, first), { user_message: first });
      await page.locator(`${panel} .bubble.user`, { hasText: first }).waitFor();
      await waitState(page, panel, 'complete', 10_000);
      assert.deepEqual(await states(), ['idle', 'streaming', 'complete']);
      assert.equal(await page.inputValue('#chat-input'), '', 'the input is cleared once sent');

      const reply = page.locator(`${panel} .bubble.assistant`).first();
      const text = await reply.textContent();
      assert.ok(text.startsWith(`You said: "${first}".`), text);
      assert.match(await reply.getAttribute('data-message-id'), HEX_ID);
      assert.equal(await reply.getAttribute('data-state'), 'complete');
      const conversation = (await page.locator(`${panel} .conversation-id`).textContent()).trim();
      assert.match(conversation, HEX_ID);

      // The log (behind "Event log") holds the stream, and the bubble is exactly its tokens.
      const rows = await logEntries(page, panel);
      assert.deepEqual(rows.slice(0, 2).map((r) => r.type), ['stream_start', 'conversation_id']);
      assert.equal(rows.at(-1).type, 'stream_end');
      const tokens = rows.filter((r) => r.type === 'message').map((r) => JSON.parse(r.data).token);
      assert.ok(tokens.length > 5);
      assert.equal(tokens.join(''), text);

      // Enter sends too; the page sends the conversation id and the server keeps it.
      const second = 'And a second message';
      assert.deepEqual(await send(page, second, { enter: true }),
        { user_message: second, conversation_id: conversation });
      await page.locator(`${panel} .bubble.assistant`).nth(1).waitFor();
      await waitState(page, panel, 'complete', 10_000);
      assert.deepEqual(await states(), ['idle', 'streaming', 'complete', 'streaming', 'complete']);
      assert.equal(await page.locator(`${panel} .bubble.user`).count(), 2);
      assert.equal(await page.locator(`${panel} .bubble.assistant`).count(), 2);
      const secondReply = page.locator(`${panel} .bubble.assistant`).nth(1);
      assert.ok((await secondReply.textContent()).startsWith(`You said: "${second}".`));
      assert.match(await secondReply.getAttribute('data-message-id'), HEX_ID);
      assert.notEqual(await secondReply.getAttribute('data-message-id'), await reply.getAttribute('data-message-id'));
      assert.equal((await page.locator(`${panel} .conversation-id`).textContent()).trim(), conversation);
      assert.equal(await page.locator(`${panel} .bubble.error`).count(), 0);
    });
  });

test('Chat: Stop ends the reply part-way and the bubble stops growing', { timeout: 30_000 }, async () => {
  await withPage(h.browser, h.server.url, async (page) => {
    await page.fill('#token', h.token);
    // A long message makes a long reply (it quotes the message), so Stop surely comes before its end.
    const message = `Please stop me after a few words. ${'This sentence only makes the reply longer. '.repeat(8)}`.trim();
    await send(page, message);
    const reply = page.locator(`${panel} .bubble.assistant`);
    await page.waitForFunction(
      (sel) => (document.querySelector(sel)?.textContent.trim().split(/\s+/).length ?? 0) >= 4,
      `${panel} .bubble.assistant`,
      { timeout: 5_000 },
    );
    await page.click(`${panel} [data-action="stop"]`);
    await waitState(page, panel, 'stopped', 3_000);
    assert.equal(await reply.getAttribute('data-state'), 'stopped');
    const stoppedAt = await reply.textContent();
    await sleep(800);                         // the reply would otherwise gain a word every 40 ms
    assert.equal(await reply.textContent(), stoppedAt, 'no more words after Stop');
    const head = `You said: "${message}". `;
    assert.ok(stoppedAt.length < head.length && head.startsWith(stoppedAt), `stopped part-way: ${stoppedAt}`);
    assert.ok(stoppedAt.trim().split(/\s+/).length >= 4, stoppedAt);
    assert.equal(await reply.getAttribute('data-message-id'), null);
    assert.ok(await page.locator(`${panel} [data-action="send"]`).isEnabled(), 'ready for the next message');
    assert.equal(await page.locator(`${panel} .bubble.error`).count(), 0);
  });
});

test('Chat: a wrong token shows the 401 error', { timeout: 30_000 }, async () => {
  await withPage(h.browser, h.server.url, async (page) => {
    await page.fill('#token', `wrong-${h.token}`);
    await send(page, 'Will this be refused?');
    await waitState(page, panel, 'error', 5_000);
    const error = page.locator(`${panel} .bubble.error`);
    await error.waitFor();
    assert.equal(await error.getAttribute('role'), 'alert');
    const message = await error.textContent();
    assert.match(message, /401/);
    assert.match(message, /bearer/i);
    // No empty assistant bubble is left behind, and no conversation was started.
    assert.equal(await page.locator(`${panel} .bubble.assistant`).count(), 0);
    assert.equal((await page.locator(`${panel} .conversation-id`).textContent()).trim(), '');
  });
});
