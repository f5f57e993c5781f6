// deploy/nginx/conduit.conf in a real nginx (Debian's), with a certificate made now, in front of the example
// server: twelve EventSource streams of one origin in headless Chromium over one HTTP/2 connection, curl over
// HTTP/2 and HTTP/1.1, what reaches Conduit, and controls showing the checks fail when the configuration is wrong.
//
// Chromium trusts the test certificate through --ignore-certificate-errors-spki-list with the hash of its key:
// only that key is let through (unlike --ignore-certificate-errors), and no trust store is touched.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import { after, before, test } from 'node:test';
import { launchBrowser, newToken, sleep, startExample, stopGracefully, withPage } from '../browser/harness.mjs';
import {
  agentFor, changedLines, checkCurlThrough, checkStreamsAtOnce, checkUnbuffered, curlStream, forwardedRequests, freePort,
  makeCertificate,
  MAX_LATENCY_MS, NGINX_SITE, openCount, openStreams, pageProtocol, pinFlag, post, recordingUpstream,
  render, startNginx, tempDir,
} from './proxies.mjs';

const STREAMS = 12;
const SHIPPED = fs.readFileSync(NGINX_SITE, 'utf8');

const h = { token: newToken(), dir: null, cert: null, server: null, browser: null, agent: null, proxies: [] };
let site;

/**
 * Starts nginx with the committed site, only Conduit's address, the ports and the certificate paths substituted;
 * `mutate(site)` may then break it on purpose (the controls). Returns { nginx, origin, httpPort, substitutions }.
 */
async function startSite({ upstream = h.server.addr, mutate = (text) => text } = {}) {
  const [httpPort, httpsPort] = [await freePort(), await freePort()];
  const substitutions = [
    ['server 127.0.0.1:8000;', `server ${upstream};`],
    ['listen 80;', `listen 127.0.0.1:${httpPort};`],
    ['listen 443 ssl http2;', `listen 127.0.0.1:${httpsPort} ssl http2;`],
    ['/etc/ssl/conduit/fullchain.pem', h.cert.cert],
    ['/etc/ssl/conduit/privkey.pem', h.cert.key],
  ];
  const nginx = await startNginx({ dir: tempDir('nginx'), site: mutate(render(NGINX_SITE, substitutions)), port: httpsPort });
  h.proxies.push(nginx);
  return { nginx, origin: `https://127.0.0.1:${httpsPort}`, httpPort, substitutions };
}

before(async () => {
  h.dir = tempDir('nginx-cert');
  h.cert = await makeCertificate(h.dir);
  h.server = await startExample({ token: h.token });
  site = await startSite();
  h.browser = await launchBrowser({ args: [pinFlag(h.cert.spki)] });
  h.agent = agentFor(h.cert.cert);
});

after(async () => {
  h.agent?.destroy();
  try {
    await h.browser?.close();
    for (const nginx of h.proxies) await nginx.stop();
  } finally {
    if (h.server?.running()) await stopGracefully(h.server);
    for (const { dir } of h.proxies) fs.rmSync(dir, { recursive: true, force: true });
    if (h.dir) fs.rmSync(h.dir, { recursive: true, force: true });
  }
});

test('nginx runs the committed deploy/nginx/conduit.conf, with only addresses, ports and paths changed', async () => {
  const loaded = await site.nginx.loadedSite();
  const line = ([from, to]) => {
    const shipped = SHIPPED.split('\n').find((l) => l.includes(from));
    return { removed: [shipped], added: [shipped.replace(from, to)] };
  };
  const [upstream, plain, tls, cert, key] = site.substitutions.map(line);
  // The two certificate lines are adjacent: one run of changes.
  const certs = { removed: [...cert.removed, ...key.removed], added: [...cert.added, ...key.added] };
  assert.deepEqual(changedLines(SHIPPED, loaded), [upstream, plain, tls, certs]);
});

test(`${STREAMS} EventSource streams of one origin are open at once over one HTTP/2 connection through nginx, `
  + `and every event arrives within ${MAX_LATENCY_MS} ms`, { timeout: 45_000 }, async (t) => {
  const prefix = `h2-${randomBytes(4).toString('hex')}`;
  const topics = Array.from({ length: STREAMS }, (_, i) => `${prefix}-${i}`);
  const worst = await checkStreamsAtOnce({ browser: h.browser, origin: site.origin, token: h.token, topics });
  t.diagnostic(`slowest event: ${worst} ms after its publish request`);

  // nginx logs a request when it ends: all twelve streams were HTTP/2 requests on the page's one connection.
  let logged = [];
  for (let waited = 0; waited < 5_000 && logged.length < STREAMS; waited += 100) {
    await sleep(100);
    logged = site.nginx.accessLog().filter((r) => r.uri.startsWith(`/stream?topic=${prefix}-`));
  }
  assert.equal(logged.length, STREAMS, `access log:\n${JSON.stringify(site.nginx.accessLog(), null, 1)}`);
  assert.deepEqual(new Set(logged.map((r) => r.protocol)), new Set(['HTTP/2.0']));
  assert.equal(new Set(logged.map((r) => r.connection)).size, 1, 'one client connection for every stream');
  assert.deepEqual(new Set(logged.map((r) => r.status)), new Set([200]));
});

test('curl through nginx: events unbuffered over HTTP/2 and HTTP/1.1, and a resume with Last-Event-ID',
  { timeout: 30_000 }, async (t) => {
    await checkCurlThrough(t, { agent: h.agent, origin: site.origin, token: h.token, ca: h.cert.cert });
  });

test('nginx redirects plain HTTP to HTTPS and refuses bodies over Conduit\'s 1 MiB before forwarding them',
  { timeout: 20_000 }, async () => {
    const redirect = await new Promise((resolve, reject) => {
      http.get(`http://127.0.0.1:${site.httpPort}/stream?topic=x`, (res) => { res.resume(); resolve(res); })
        .once('error', reject);
    });
    assert.equal(redirect.statusCode, 301);
    assert.equal(redirect.headers.location, 'https://127.0.0.1/stream?topic=x');

    const auth = { Authorization: `Bearer ${h.token}` };
    const over = await post(h.agent, `${site.origin}/publish?topic=big`, { body: 'x'.repeat(1024 * 1024 + 1), headers: auth });
    assert.equal(over.status, 413);
    assert.match(over.body, /<center>nginx/, 'refused by nginx itself');
    // Exactly 1 MiB is forwarded: the route's own, smaller, body limit answers from the head.
    const limit = await post(h.agent, `${site.origin}/publish?topic=big`, { body: 'x'.repeat(1024 * 1024), headers: auth });
    assert.equal(limit.status, 413);
    assert.match(limit.body, /takes a body of at most 65536 bytes/);
  });

test('what reaches Conduit: HTTP/1.1 on pooled keep-alive connections, X-Forwarded-For/-Proto, Last-Event-ID',
  { timeout: 20_000 }, async () => {
    const upstream = await recordingUpstream();
    try {
      const { origin } = await startSite({ upstream: upstream.addr });
      for (const headers of await forwardedRequests({ origin, ca: h.cert.cert, upstream })) {
        // What the client claimed, then the peer nginx saw.
        assert.equal(headers['x-forwarded-for'], '203.0.113.9, 127.0.0.1');
        assert.equal(headers.host, '127.0.0.1');
      }
    } finally {
      await upstream.close();
    }
  });

test('nginx holds an HTTP/2 response head until body bytes follow: why Conduit streams should open with retry:',
  { timeout: 20_000 }, async () => {
    const upstream = await recordingUpstream();
    try {
      const { origin } = await startSite({ upstream: upstream.addr });
      const silent = curlStream(`${origin}/silent`, { ca: h.cert.cert });
      const opening = curlStream(`${origin}/retry`, { ca: h.cert.cert });
      try {
        assert.equal(await opening.waitOpen(), 200);
        await sleep(1_000);
        assert.equal(silent.protocol(), null, 'no head yet for the stream without a first byte');
        assert.deepEqual(upstream.seen.map((r) => r.url).sort(), ['/retry', '/silent'], 'both reached the upstream');
      } finally {
        await Promise.all([silent.stop(), opening.stop()]);
      }
    } finally {
      await upstream.close();
    }
  });

test('control: served over HTTP/1.1, the browser holds only six of the twelve streams', { timeout: 30_000 }, async () => {
  const { origin } = await startSite({ mutate: (text) => text.replace(/ ssl http2;/, ' ssl;') });
  await withPage(h.browser, `${origin}/`, async (page) => {
    assert.equal(await pageProtocol(page), 'http/1.1');
    await openStreams(page, Array.from({ length: STREAMS }, (_, i) => `h1-${randomBytes(4).toString('hex')}-${i}`));
    await page.waitForFunction(() => window.streams.filter((s) => s.source.readyState === EventSource.OPEN).length >= 6);
    await sleep(1_500);
    assert.equal(await openCount(page), 6, 'the seventh stream waits for a free connection');
    await page.evaluate(() => { for (const s of window.streams) s.source.close(); });
  });
});

test('control: with buffering on (and X-Accel-Buffering ignored) the latency check fails', { timeout: 30_000 }, async () => {
  const { origin } = await startSite({
    mutate: (text) => text.replace('proxy_buffering off;', 'proxy_buffering on; proxy_ignore_headers X-Accel-Buffering;'),
  });
  const topic = `buffered-${randomBytes(4).toString('hex')}`;
  const stream = curlStream(`${origin}/stream?topic=${topic}`, { ca: h.cert.cert, version: '--http1.1' });
  try {
    await sleep(500);   // long enough for the stream to be subscribed; its head may be held with its events
    await assert.rejects(
      checkUnbuffered({ agent: h.agent, origin: site.origin, token: h.token, topic, stream, count: 1 }),
      /0 of 1 events/,
    );
  } finally {
    await stream.stop();
  }
});
