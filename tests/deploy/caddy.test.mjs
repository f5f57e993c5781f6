// deploy/caddy/Caddyfile in a real Caddy (Debian's) in front of the example server: curl over HTTP/2 and
// HTTP/1.1, twelve EventSource streams in headless Chromium, what reaches Conduit, and the body limit.
//
// Caddy signs a certificate for 127.0.0.1 with a local CA it makes in the test's directory; curl and Node trust
// that CA's root, Chromium the served key (--ignore-certificate-errors-spki-list). The test adds a few global
// options that keep Caddy inside the sandbox (listed in the first test); the site block is the committed one.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import { after, before, test } from 'node:test';
import { launchBrowser, newToken, startExample, stopGracefully } from '../browser/harness.mjs';
import {
  agentFor, CADDY, CADDYFILE, changedLines, checkCurlThrough, checkStreamsAtOnce, forwardedRequests, freePort,
  MAX_LATENCY_MS, pinFlag, post, recordingUpstream, render, servedSpki, startCaddy, tempDir,
} from './proxies.mjs';

const SHIPPED = fs.readFileSync(CADDYFILE, 'utf8');

const h = { token: newToken(), server: null, browser: null, agent: null, proxies: [] };
let site;

/**
 * Starts Caddy with the committed Caddyfile, the site address and Conduit's address substituted, and global
 * options added that keep it in the sandbox: no admin endpoint, no change to the system's trust store, plain
 * HTTP on a free port, listeners on loopback only. Returns { caddy, origin, substitutions, sandbox }.
 */
async function startSite({ upstream = h.server.addr } = {}) {
  const [httpPort, httpsPort] = [await freePort(), await freePort()];
  const sandbox = ['admin off', 'skip_install_trust', `http_port ${httpPort}`, 'default_bind 127.0.0.1'].map((o) => `\t${o}`);
  const substitutions = [
    ['\tgrace_period 10s\n', `\tgrace_period 10s\n${sandbox.join('\n')}\n`],
    ['conduit.example.com {', `127.0.0.1:${httpsPort} {`],
    ['reverse_proxy 127.0.0.1:8000 {', `reverse_proxy ${upstream} {`],
  ];
  const caddy = await startCaddy({ dir: tempDir('caddy'), site: render(CADDYFILE, substitutions), port: httpsPort });
  h.proxies.push(caddy);
  const spki = await servedSpki(httpsPort);   // the certificate is issued after Caddy starts listening
  return { caddy, origin: `https://127.0.0.1:${httpsPort}`, substitutions, sandbox, spki };
}

before(async () => {
  h.server = await startExample({ token: h.token });
  site = await startSite();
  h.agent = agentFor(site.caddy.ca);
});

after(async () => {
  h.agent?.destroy();
  try {
    await h.browser?.close();
    // Conduit first: Caddy 2.6 notices an HTTP/1.1 client gone from a quiet stream only when it next writes to
    // it, and would wait for such streams (up to grace_period) when stopped before them.
    if (h.server?.running()) await stopGracefully(h.server);
  } finally {
    for (const caddy of h.proxies) await caddy.stop();
    for (const { dir } of h.proxies) fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('Caddy runs the committed deploy/caddy/Caddyfile: site block unchanged but for addresses', async () => {
  const running = fs.readFileSync(site.caddy.config, 'utf8');
  const line = (from, to) => {
    const shipped = SHIPPED.split('\n').find((l) => l.includes(from));
    return { removed: [shipped], added: [shipped.replace(from, to)] };
  };
  const [, address, proxy] = site.substitutions;
  assert.deepEqual(changedLines(SHIPPED, running), [
    { removed: [], added: site.sandbox },
    line(...address),
    line(...proxy),
  ]);
  // And it is in Caddy's own format, so `caddy fmt` leaves it as it is.
  assert.equal(execFileSync(CADDY, ['fmt', CADDYFILE], { encoding: 'utf8' }), SHIPPED);
});

test('curl through Caddy: events unbuffered over HTTP/2 and HTTP/1.1, and a resume with Last-Event-ID',
  { timeout: 30_000 }, async (t) => {
    await checkCurlThrough(t, { agent: h.agent, origin: site.origin, token: h.token, ca: site.caddy.ca });
  });

test(`12 EventSource streams of one origin are open at once over HTTP/2 through Caddy, each event within ${MAX_LATENCY_MS} ms`,
  { timeout: 45_000 }, async (t) => {
    h.browser = await launchBrowser({ args: [pinFlag(site.spki)] });
    const prefix = `caddy-${randomBytes(4).toString('hex')}`;
    const topics = Array.from({ length: 12 }, (_, i) => `${prefix}-${i}`);
    const worst = await checkStreamsAtOnce({ browser: h.browser, origin: site.origin, token: h.token, topics });
  t.diagnostic(`slowest event: ${worst} ms after its publish request`);
  });

test('through Caddy, Conduit\'s own body limits answer: 413 from the head, every time', { timeout: 20_000 }, async () => {
  const auth = { Authorization: `Bearer ${h.token}` };
  for (let i = 0; i < 3; i++) {
    // Past the server's 1 MiB: refused by the parser from the head.
    const over = await post(h.agent, `${site.origin}/publish?topic=big`, { body: 'x'.repeat(1024 * 1024 + 1), headers: auth });
    assert.deepEqual([over.status, over.body.trim()], [413, 'request body too large'], 'Conduit\'s server-wide limit');
    // Exactly 1 MiB, past the route's own 64 KiB: refused from the head by the route's limit.
    const limit = await post(h.agent, `${site.origin}/publish?topic=big`, { body: 'x'.repeat(1024 * 1024), headers: auth });
    assert.deepEqual([limit.status, limit.body.trim()], [413, 'POST /publish takes a body of at most 65536 bytes']);
  }
});

test('what reaches Conduit through Caddy: HTTP/1.1 on a reused connection, X-Forwarded-For/-Proto, Last-Event-ID',
  { timeout: 20_000 }, async () => {
    const upstream = await recordingUpstream();
    try {
      const { origin, caddy } = await startSite({ upstream: upstream.addr });
      for (const headers of await forwardedRequests({ origin, ca: caddy.ca, upstream })) {
        // Caddy trusts no proxy by default: what the client claimed is replaced by the peer Caddy saw.
        assert.equal(headers['x-forwarded-for'], '127.0.0.1');
      }
    } finally {
      await upstream.close();
    }
  });
