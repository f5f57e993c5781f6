// The Chat panel: a POST answered with a stream (fetch + the page's own SSE parser), with the API token typed
// into the page as a person would; a reload mid-reply resumes it, and Stop cancels it on the server.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  connectionNotes, logEntries, recordStates, sleep, useExample, waitState, withPage,
} from './harness.mjs';

const h = useExample();
const panel = '#panel-chat';
const CONVERSATION_ID = /^[0-9a-f]{16}$/;
const MESSAGE_ID = /^[0-9a-f]{32}$/;

/** The reply the example's simulated model gives to `message`. */
const expectedReply = (message) => `You said: "${message}". This reply is streamed by Conduit one token at a time `
  + 'over Server-Sent Events. A worker thread publishes each token to a hub topic of this message\'s own, so the '
  + 'reply goes on if you reload the page or lose the connection, and picks up where you left it.';

/** The whole reply as the server keeps it, read from its start (the stream ends after its last event). */
async function serverReply(messageId) {
  const res = await fetch(`${h.server.url}api/chat/stream/${messageId}`, {
    headers: { Authorization: `Bearer ${h.token}` }, signal: AbortSignal.timeout(10_000),
  });
  assert.equal(res.status, 200);
  return (await res.text()).split('\n\n').filter((block) => block.includes('data: ')).map((block) => {
    const field = (name) => block.split('\n').find((l) => l.startsWith(`${name}: `))?.slice(name.length + 2);
    return { type: field('event') ?? 'message', id: field('id'), data: JSON.parse(field('data')) };
  });
}

const tokensOf = (events) => events.filter((e) => e.type === 'message').map((e) => e.data.token).join('');

/** Waits until the assistant's reply has at least `n` words. */
function waitWords(page, n, timeout = 5_000) {
  return page.waitForFunction(
    ([sel, n]) => (document.querySelector(sel)?.textContent.trim().split(/\s+/).length ?? 0) >= n,
    [`${panel} .bubble.assistant`, n],
    { timeout },
  );
}

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
      assert.match(await reply.getAttribute('data-message-id'), MESSAGE_ID);
      assert.equal(await reply.getAttribute('data-state'), 'complete');
      const conversation = (await page.locator(`${panel} .conversation-id`).textContent()).trim();
      assert.match(conversation, CONVERSATION_ID);

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
      assert.match(await secondReply.getAttribute('data-message-id'), MESSAGE_ID);
      assert.notEqual(await secondReply.getAttribute('data-message-id'), await reply.getAttribute('data-message-id'));
      assert.equal((await page.locator(`${panel} .conversation-id`).textContent()).trim(), conversation);
      assert.equal(await page.locator(`${panel} .bubble.error`).count(), 0);
    });
  });

test('Chat: Stop cancels the reply on the server with DELETE, and the server stops generating it',
  { timeout: 30_000 }, async () => {
    await withPage(h.browser, h.server.url, async (page) => {
      await page.fill('#token', h.token);
      // A long message makes a long reply (it quotes the message), so Stop surely comes before its end.
      const message = `Please stop me after a few words. ${'This sentence only makes the reply longer. '.repeat(8)}`.trim();
      await send(page, message);
      const reply = page.locator(`${panel} .bubble.assistant`);
      await waitWords(page, 4);
      const messageId = await reply.getAttribute('data-message-id');
      assert.match(messageId, MESSAGE_ID);
      const cancel = page.waitForRequest((r) => r.method() === 'DELETE' && r.url().endsWith(`/api/chat/stream/${messageId}`));
      await page.click(`${panel} [data-action="stop"]`);
      assert.equal((await (await cancel).response()).status(), 204);
      await waitState(page, panel, 'stopped', 5_000);
      assert.equal(await reply.getAttribute('data-state'), 'stopped');
      const stoppedAt = await reply.textContent();
      await sleep(800);                         // the reply would otherwise gain a word every 40 ms
      assert.equal(await reply.textContent(), stoppedAt, 'no more words after Stop');
      const full = expectedReply(message);
      assert.ok(stoppedAt.length < full.length && full.startsWith(stoppedAt), `stopped part-way: ${stoppedAt}`);

      // The server's side: the reply ends with stream_end "cancelled", the page shows every token it holds,
      // and nothing more is generated.
      const events = await serverReply(messageId);
      assert.deepEqual(events.at(-1), { type: 'stream_end', id: events.at(-1).id,
        data: { message_id: messageId, status: 'cancelled' } });
      assert.equal(tokensOf(events), stoppedAt);
      await sleep(500);
      assert.equal((await serverReply(messageId)).length, events.length, 'the generation ended');
      const rows = await logEntries(page, panel);
      assert.equal(rows.at(-1).type, 'stream_end');
      assert.ok(await page.locator(`${panel} [data-action="send"]`).isEnabled(), 'ready for the next message');
      assert.equal(await page.locator(`${panel} .bubble.error`).count(), 0);
    });
  });

test('Chat: reloading the page mid-reply, the reply carries on with every token exactly once',
  { timeout: 60_000 }, async () => {
    await withPage(h.browser, h.server.url, async (page) => {
      await page.fill('#token', h.token);
      const message = `Keep answering while I reload. ${'This sentence only makes the reply longer. '.repeat(6)}`.trim();
      await send(page, message);
      const reply = page.locator(`${panel} .bubble.assistant`);
      await waitWords(page, 6);
      const messageId = await reply.getAttribute('data-message-id');
      const conversation = (await page.locator(`${panel} .conversation-id`).textContent()).trim();
      assert.match(messageId, MESSAGE_ID);
      assert.equal(await page.locator(`${panel} .status`).getAttribute('data-state'), 'streaming', 'mid-reply');

      const resume = page.waitForRequest((r) => r.method() === 'GET' && r.url().endsWith(`/api/chat/stream/${messageId}`));
      await page.reload();
      const lastEventId = (await (await resume).allHeaders())['last-event-id'];
      assert.match(lastEventId ?? '', /^\d+$/, 'the resume names the last event the page had');
      await waitState(page, panel, 'complete', 20_000);

      // The page shows the conversation it had, and the whole reply, each token once.
      assert.equal(await page.locator(`${panel} .bubble.user`).textContent(), message);
      assert.equal(await reply.count(), 1);
      const text = await reply.textContent();
      assert.equal(text, expectedReply(message));
      assert.equal(await reply.getAttribute('data-message-id'), messageId);
      assert.equal((await page.locator(`${panel} .conversation-id`).textContent()).trim(), conversation);

      // Resumed, not restarted: after the reload the page received exactly the events after the last one it
      // had, and the text it kept plus theirs is all the server generated.
      const server = await serverReply(messageId);
      assert.equal(tokensOf(server), text);
      const at = server.findIndex((e) => e.id === lastEventId);
      assert.ok(at > 0, `the server holds event ${lastEventId}`);
      const rows = await logEntries(page, panel);
      assert.deepEqual(rows.map((r) => r.id), server.slice(at + 1).map((e) => e.id));
      assert.equal(rows.at(-1).type, 'stream_end');
      const kept = tokensOf(server.slice(0, at + 1));
      assert.equal(kept + tokensOf(rows.map((r) => ({ type: r.type, data: JSON.parse(r.data) }))), text);
      const notes = (await connectionNotes(page, panel)).map((n) => n.what);
      assert.deepEqual(notes, ['page reloaded', 'resumed']);

      // A second reload finds nothing to resume: the conversation is shown as it ended.
      await page.reload();
      await page.locator(`${panel} .bubble.assistant[data-state="complete"]`).waitFor();
      assert.equal(await page.locator(`${panel} .bubble.assistant`).textContent(), text);
      assert.equal(await page.locator(`${panel} .status`).getAttribute('data-state'), 'idle');
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
