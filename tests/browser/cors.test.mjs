// Cross-origin EventSource: a page on origin A (listed with --cors-origin) may read the example's streams; the
// same page on origin B may not, and the server refuses it with 403 before any stream starts.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, test } from 'node:test';
import { serveStatic, useExample, withPage } from './harness.mjs';

// Both origins serve the same tiny page; it learns the stream's URL from its own query string.
const PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cross-origin EventSource</title></head>
<body><p>cross-origin EventSource</p>
<script>
  window.received = []; window.errors = []; window.done = false;
  const es = new EventSource(new URLSearchParams(location.search).get("src"));
  window.es = es;
  es.addEventListener("counter", (e) => received.push({ type: e.type, id: e.lastEventId, data: e.data }));
  es.addEventListener("done", (e) => { received.push({ type: e.type, data: e.data }); es.close(); window.done = true; });
  es.onerror = () => errors.push(es.readyState);
</script></body></html>`;

const origins = {};
const h = useExample({
  async corsOrigins() {
    const handler = (req, res) => {
      if (new URL(req.url, 'http://x').pathname !== '/') { res.writeHead(404).end(); return; }
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(PAGE);
    };
    origins.a = await serveStatic(handler);
    origins.b = await serveStatic(handler);
    return [origins.a.origin];                // only A is allowed
  },
});
after(async () => {
  await origins.a?.close();
  await origins.b?.close();
});

const streamUrl = () => `http://${h.server.addr}/count?n=3&interval_ms=20`;
const pageUrl = (origin) => `${origin.origin}/?src=${encodeURIComponent(streamUrl())}`;

/** The example's answer to a GET of the stream sent with `Origin: origin` (status and CORS header). */
function getWithOrigin(origin) {
  return new Promise((resolve, reject) => {
    const req = http.get(streamUrl(), { headers: { Origin: origin }, timeout: 5_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode, allow: res.headers['access-control-allow-origin'], body }));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
  });
}

test('an allowed origin (A) receives the counts 1..3 and done', { timeout: 30_000 }, async () => {
  await withPage(h.browser, pageUrl(origins.a), async (page) => {
    assert.notEqual(await page.evaluate(() => location.origin), `http://${h.server.addr}`);
    await page.waitForFunction(() => window.done, null, { timeout: 5_000 });
    assert.deepEqual(await page.evaluate(() => window.received), [
      { type: 'counter', id: '1', data: '{"count":1}' },
      { type: 'counter', id: '2', data: '{"count":2}' },
      { type: 'counter', id: '3', data: '{"count":3}' },
      { type: 'done', data: '{"status":"complete"}' },
    ]);
    assert.deepEqual(await page.evaluate(() => window.errors), []);
  });
});

test('another origin (B) gets no events: the server says 403 and the EventSource closes', { timeout: 30_000 },
  async () => {
    // What the browser's network layer saw (as DevTools shows it): the status of the refused response.
    const urls = new Map(), seen = [];
    const watch = async (page) => {
      const cdp = await page.context().newCDPSession(page);
      cdp.on('Network.requestWillBeSent', (e) => urls.set(e.requestId, e.request.url));
      cdp.on('Network.responseReceivedExtraInfo', (e) => seen.push({ requestId: e.requestId, status: e.statusCode }));
      await cdp.send('Network.enable');
    };
    await withPage(h.browser, pageUrl(origins.b), async (page) => {
      await page.waitForFunction(() => window.errors.length > 0 && window.es.readyState === EventSource.CLOSED, null,
        { timeout: 5_000 });
      assert.deepEqual(await page.evaluate(() => window.received), []);
      assert.deepEqual(await page.evaluate(() => window.errors), [2], 'one error, then CLOSED: no retry');
      const stream = seen.filter((r) => urls.get(r.requestId) === streamUrl()).map((r) => r.status);
      assert.deepEqual(stream, [403], 'one request for the stream, answered 403');
    }, { beforeGoto: watch });
  });

test('the server answers B with 403 before any stream, and A with the stream and its CORS header',
  { timeout: 30_000 }, async () => {
    const refused = await getWithOrigin(origins.b.origin);
    assert.equal(refused.status, 403);
    assert.equal(refused.allow, undefined);
    assert.doesNotMatch(refused.body, /event:/);
    const allowed = await getWithOrigin(origins.a.origin);
    assert.equal(allowed.status, 200);
    assert.equal(allowed.allow, origins.a.origin);
    assert.match(allowed.body, /event: done/);
  });
