// Real reverse proxies in front of the example server, for the tests of deploy/: a certificate made now by openssl,
// nginx and Caddy started on free loopback ports from the configurations committed in deploy/ (only addresses,
// ports and paths substituted), curl reading streams through them, and the checks shared by the test files.
import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import tls from 'node:tls';
import { promisify } from 'node:util';
import assert from 'node:assert/strict';
import { ROOT, withPage } from '../browser/harness.mjs';

const execFileAsync = promisify(execFile);

export const NGINX_SITE = path.join(ROOT, 'deploy/nginx/conduit.conf');
export const CADDYFILE = path.join(ROOT, 'deploy/caddy/Caddyfile');
/** Debian installs nginx in /usr/sbin, which is not on every user's PATH. */
export const NGINX = fs.existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : 'nginx';
export const CADDY = 'caddy';

/** Every event must reach its reader within this long of the publish request being sent. */
export const MAX_LATENCY_MS = 200;

// Proxies still running when this process exits (a crash, a timeout) are told to stop. SIGTERM, not SIGKILL: an
// nginx master killed outright would leave its workers behind.
const running = new Set();
process.on('exit', () => {
  for (const child of running) child.kill('SIGTERM');
});

/** A fresh directory, reachable by nginx's workers (an unprivileged user when the tests run as root). */
export function tempDir(prefix) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `conduit-${prefix}-`));
  fs.chmodSync(dir, 0o755);
  return dir;
}

/** A loopback port nothing listens on right now. */
export async function freePort() {
  const server = net.createServer();
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** The base64 SHA-256 of a certificate's public key: what Chromium's --ignore-certificate-errors-spki-list takes. */
const spkiHash = (x509) => createHash('sha256').update(x509.publicKey.export({ type: 'spki', format: 'der' })).digest('base64');

/** The Chromium flag that lets through certificates with exactly this key, and no other untrusted one. */
export const pinFlag = (spki) => `--ignore-certificate-errors-spki-list=${spki}`;

/** A self-signed certificate for 127.0.0.1 made by openssl in `dir`: { cert, key, spki }. */
export async function makeCertificate(dir) {
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  await execFileAsync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert,
  ]);
  return { cert, key, spki: spkiHash(new X509Certificate(fs.readFileSync(cert))) };
}

/**
 * The SPKI hash of the certificate served on 127.0.0.1:`port`, once a TLS handshake there succeeds (Caddy
 * listens before its certificate is issued); rejects after `timeoutMs`.
 */
export async function servedSpki(port, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await new Promise((resolve, reject) => {
        const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ALPNProtocols: ['h2'] }, () => {
          const cert = socket.getPeerX509Certificate();
          socket.destroy();
          if (cert) resolve(spkiHash(cert)); else reject(new Error('no certificate'));
        });
        socket.once('error', reject);
      });
    } catch (e) {
      if (Date.now() > deadline) throw new Error(`no TLS handshake on ${port} within ${timeoutMs} ms: ${e.message}`);
      await sleep(100);
    }
  }
}

/**
 * The committed file `file` with each `[from, to]` substituted; every `from` must occur exactly once, so a
 * changed deploy file fails here instead of silently testing something else.
 */
export function render(file, substitutions) {
  let text = fs.readFileSync(file, 'utf8');
  for (const [from, to] of substitutions) {
    assert.equal(text.split(from).length - 1, 1, `${JSON.stringify(from)} must occur once in ${file}`);
    text = text.replace(from, () => to);
  }
  return text;
}

/**
 * How `after` differs from `before`, line by line: a list of { removed: [lines], added: [lines] }, one per run of
 * changed lines (a longest-common-subsequence diff; the files are small).
 */
export function changedLines(before, after) {
  const a = before.split('\n');
  const b = after.split('\n');
  const common = Array.from({ length: a.length + 1 }, () => new Array(b.length + 1).fill(0));
  for (let i = a.length - 1; i >= 0; i--) {
    for (let j = b.length - 1; j >= 0; j--) {
      common[i][j] = a[i] === b[j] ? common[i + 1][j + 1] + 1 : Math.max(common[i + 1][j], common[i][j + 1]);
    }
  }
  const hunks = [];
  let hunk = null;
  const flush = () => { if (hunk) hunks.push(hunk); hunk = null; };
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    if (i < a.length && j < b.length && a[i] === b[j]) {
      flush();
      i++;
      j++;
    } else if (j < b.length && (i === a.length || common[i][j + 1] >= common[i + 1][j])) {
      (hunk ??= { removed: [], added: [] }).added.push(b[j++]);
    } else {
      (hunk ??= { removed: [], added: [] }).removed.push(a[i++]);
    }
  }
  flush();
  return hunks;
}

/** Resolves once `port` on 127.0.0.1 accepts a connection; rejects after `timeoutMs` or when `exited` settles. */
async function waitListening(port, exited, timeoutMs, describe) {
  const deadline = Date.now() + timeoutMs;
  let gone = false;
  exited.then(() => { gone = true; });
  while (Date.now() < deadline) {
    if (gone) throw new Error(`${describe()} exited before listening on ${port}`);
    const ok = await new Promise((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => { socket.destroy(); resolve(true); });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`${describe()} was not listening on ${port} within ${timeoutMs} ms`);
}

/** Spawns a long-running proxy, waits until `port` answers; returns { pid, output(), stop() }. */
async function startProcess(name, command, args, { port, env = process.env, startTimeoutMs = 15_000 }) {
  const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  let output = '';
  const keep = (chunk) => { output = (output + chunk).slice(-64 * 1024); };
  child.stdout.setEncoding('utf8').on('data', keep);
  child.stderr.setEncoding('utf8').on('data', keep);
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => { running.delete(child); resolve({ code, signal }); });
    child.once('error', (e) => { running.delete(child); resolve({ error: e }); });
  });
  const isRunning = () => child.exitCode === null && child.signalCode === null;
  const stop = async (timeoutMs = 10_000) => {
    if (isRunning()) child.kill('SIGTERM');
    let timer;
    const result = await Promise.race([exited, new Promise((r) => { timer = setTimeout(r, timeoutMs, null); })]);
    clearTimeout(timer);
    if (result) return result;
    child.kill('SIGKILL');
    await exited;
    throw new Error(`${name} did not exit within ${timeoutMs} ms of SIGTERM; output:\n${output}`);
  };
  try {
    await waitListening(port, exited, startTimeoutMs, () => `${name}; output:\n${output}`);
  } catch (e) {
    await stop();
    throw e;
  }
  return { pid: child.pid, output: () => output, stop };
}

/**
 * Starts nginx (master and one worker, in the foreground, stopped by the master's PID) with `site` as the only
 * site, inside a main configuration like Debian's (gzip and sendfile on), with temporary paths in `dir` and an
 * access log recording each request's protocol and client connection number. Fails if `nginx -t` refuses it.
 * Returns { dir, loadedSite(), accessLog(), output(), stop() }.
 */
export async function startNginx({ dir, site, port }) {
  const sitePath = path.join(dir, 'site.conf');
  const confPath = path.join(dir, 'nginx.conf');
  fs.writeFileSync(sitePath, site);
  fs.writeFileSync(confPath, `# The main configuration around the site under test; the site must be right whatever surrounds it.
pid ${dir}/nginx.pid;
error_log stderr notice;
worker_processes 1;
events { worker_connections 1024; }
http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    gzip on;
    log_format streams '$request_method $request_uri $server_protocol $connection $status';
    access_log ${dir}/access.log streams;
    client_body_temp_path ${dir}/body;
    proxy_temp_path ${dir}/proxy;
    fastcgi_temp_path ${dir}/fastcgi;
    uwsgi_temp_path ${dir}/uwsgi;
    scgi_temp_path ${dir}/scgi;
    include ${sitePath};
}
`);
  const base = ['-p', `${dir}/`, '-c', confPath];
  try {
    await execFileAsync(NGINX, ['-t', ...base]);
  } catch (e) {
    throw new Error(`nginx -t refused the configuration:\n${e.stderr}`);
  }
  const proc = await startProcess('nginx', NGINX, [...base, '-g', 'daemon off;'], { port });
  return {
    dir,
    output: proc.output,
    stop: proc.stop,
    /** The site file as nginx itself reports having loaded it (`nginx -T`). */
    async loadedSite() {
      const { stdout } = await execFileAsync(NGINX, ['-T', ...base], { maxBuffer: 16 * 1024 * 1024 });
      const marker = `# configuration file ${sitePath}:\n`;
      const start = stdout.indexOf(marker);
      assert.ok(start >= 0, `nginx -T does not list ${sitePath}`);
      const rest = stdout.slice(start + marker.length);
      const end = rest.indexOf('\n# configuration file ');
      // nginx -T ends each file with one newline of its own.
      return (end >= 0 ? rest.slice(0, end + 1) : rest).replace(/\n\n$/, '\n');
    },
    /** Lines of the access log: { method, uri, protocol, connection, status }. */
    accessLog() {
      const file = path.join(dir, 'access.log');
      if (!fs.existsSync(file)) return [];
      return fs.readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((line) => {
        const [method, uri, protocol, connection, status] = line.split(' ');
        return { method, uri, protocol, connection, status: Number(status) };
      });
    },
  };
}

/**
 * Starts Caddy with `site` (the committed Caddyfile, rendered) as its whole configuration, its data (the local CA
 * that signs the certificate for 127.0.0.1) kept in `dir`. Returns { dir, config, ca, output(), stop() }, `config`
 * being the file Caddy runs and `ca` the root certificate clients must trust.
 */
export async function startCaddy({ dir, site, port }) {
  const configPath = path.join(dir, 'Caddyfile');
  fs.writeFileSync(configPath, site);
  const env = {
    ...process.env,
    HOME: dir,
    XDG_DATA_HOME: path.join(dir, 'data'),
    XDG_CONFIG_HOME: path.join(dir, 'config'),
  };
  try {
    await execFileAsync(CADDY, ['validate', '--config', configPath, '--adapter', 'caddyfile'], { env });
  } catch (e) {
    throw new Error(`caddy validate refused the configuration:\n${e.stderr}`);
  }
  const proc = await startProcess('caddy', CADDY, ['run', '--config', configPath, '--adapter', 'caddyfile'],
    { port, env });
  return {
    dir,
    config: configPath,
    ca: path.join(dir, 'data/caddy/pki/authorities/local/root.crt'),
    output: proc.output,
    stop: proc.stop,
  };
}

/**
 * Runs `curl -N` (`version`: --http2 or --http1.1) on an event stream and parses what arrives:
 * { events, stderr(), protocol(), waitOpen(), waitEvents(n), stop() }.
 * `events` fills with { id, event, data, at } (`at` from performance.now() when the bytes arrived).
 */
export function curlStream(url, { ca, version = '--http2', headers = {} }) {
  const args = ['-sS', '-N', '-v', version, '--cacert', ca, '--max-time', '60'];
  for (const [name, value] of Object.entries(headers)) args.push('-H', `${name}: ${value}`);
  args.push(url);
  const child = spawn('curl', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  const exited = new Promise((resolve) => child.once('exit', () => { running.delete(child); resolve(); }));
  const events = [];
  let pending = '';
  let stderr = '';
  const waiters = new Set();
  child.stdout.setEncoding('utf8').on('data', (chunk) => {
    const at = performance.now();
    pending += chunk;
    let end;
    while ((end = pending.indexOf('\n\n')) >= 0) {
      const block = pending.slice(0, end);
      pending = pending.slice(end + 2);
      const event = { id: null, event: 'message', data: null, at };
      for (const line of block.split('\n')) {
        const m = /^(id|event|data): ?(.*)$/.exec(line);
        if (m) event[m[1]] = m[2];
      }
      if (event.data !== null) events.push(event);   // comments and bare id blocks dispatch nothing
    }
    for (const wake of waiters) wake();
  });
  child.stderr.setEncoding('utf8').on('data', (chunk) => { stderr += chunk; for (const wake of waiters) wake(); });
  return {
    events,
    stderr: () => stderr,
    /** The response's protocol from curl's -v output, e.g. "HTTP/2" or "HTTP/1.1". */
    protocol: () => /^< (HTTP\/[\d.]+) /m.exec(stderr)?.[1] ?? null,
    /** Resolves with the status once the whole response head has arrived (curl -v ends it with a bare "<"). */
    async waitOpen(timeoutMs = 5_000) {
      const head = /^< HTTP\/[\d.]+ (\d+)[^]*?^< \r?\n/m;   // \n, not $: a chunk may end mid-line
      await waitFor(() => head.test(stderr), timeoutMs, () => `no response head from ${url}:\n${stderr}`);
      return Number(head.exec(stderr)[1]);
    },
    waitEvents(n, timeoutMs = 5_000) {
      return waitFor(() => events.length >= n, timeoutMs,
        () => `${events.length} of ${n} events from ${url} within ${timeoutMs} ms:\n${stderr}`);
    },
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };

  function waitFor(done, timeoutMs, describe) {
    return new Promise((resolve, reject) => {
      const check = () => {
        const value = done();
        if (value) { cleanup(); resolve(value); }
      };
      const timer = setTimeout(() => { cleanup(); reject(new Error(describe())); }, timeoutMs);
      const cleanup = () => { clearTimeout(timer); waiters.delete(check); };
      waiters.add(check);
      check();
    });
  }
}

/**
 * POSTs to `url` over HTTPS trusting `ca`, on a keep-alive agent (so timed requests do not include a handshake).
 * Resolves to { status, body, sentAt } (`sentAt` from performance.now() just before the request was written).
 */
export function post(agent, url, { body = '', headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    const sentAt = performance.now();
    const req = https.request(url, { method: 'POST', agent, headers: { 'Content-Length': Buffer.byteLength(body), ...headers } },
      (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (chunk) => { text += chunk; }).on('end', () => {
          resolve({ status: res.statusCode, body: text, sentAt });
        });
      });
    req.once('error', reject);
    req.end(body);
  });
}

/** A keep-alive HTTPS agent trusting only `ca`. */
export const agentFor = (ca) => new https.Agent({ keepAlive: true, maxSockets: 4, ca: fs.readFileSync(ca) });

/**
 * Publishes `count` events to `topic` through `origin` (POST /publish with the bearer token), one every `gapMs`,
 * and checks that `stream` (a curlStream on that topic) receives each, with the id the publish returned, within
 * MAX_LATENCY_MS of its request being sent. Returns the largest latency (ms).
 */
export async function checkUnbuffered({ agent, origin, token, topic, stream, count = 5, gapMs = 100 }) {
  const before = stream.events.length;
  const sent = [];
  for (let i = 0; i < count; i++) {
    const data = `event ${i} on ${topic}`;
    const res = await post(agent, `${origin}/publish?topic=${topic}`, { body: data, headers: { Authorization: `Bearer ${token}` } });
    assert.equal(res.status, 202, `publish: ${res.status} ${res.body}`);
    sent.push({ id: JSON.parse(res.body).id, data, sentAt: res.sentAt });
    await stream.waitEvents(before + i + 1, MAX_LATENCY_MS * 5);
    await sleep(gapMs);
  }
  const received = stream.events.slice(before);
  assert.deepEqual(received.map(({ id, data }) => ({ id, data })), sent.map(({ id, data }) => ({ id, data })));
  const latencies = sent.map(({ sentAt }, i) => Math.round(received[i].at - sentAt));
  assert.ok(latencies.every((ms) => ms < MAX_LATENCY_MS), `latencies on ${topic} (limit ${MAX_LATENCY_MS} ms): ${latencies}`);
  return Math.max(...latencies);
}

/** The protocol of the page's own load, e.g. "h2" or "http/1.1". */
export const pageProtocol = (page) => page.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol);

/** Opens one EventSource per topic in the page; each records its events with performance.now() on arrival. */
export function openStreams(page, topics) {
  return page.evaluate((topics) => {
    window.streams = topics.map((topic) => {
      const s = { topic, events: [], source: new EventSource(`/stream?topic=${encodeURIComponent(topic)}`) };
      s.source.onmessage = (e) => s.events.push({ id: e.lastEventId, data: e.data, at: performance.now() });
      return s;
    });
  }, topics);
}

/** Waits until all `n` of the page's EventSources are open; on a timeout, says which state each one is in. */
export async function waitAllOpen(page, n, timeout = 10_000) {
  try {
    await page.waitForFunction((n) => window.streams.filter((s) => s.source.readyState === EventSource.OPEN).length === n,
      n, { timeout });
  } catch (e) {
    const states = await page.evaluate(() => window.streams.map((s) => ['connecting', 'open', 'closed'][s.source.readyState]));
    throw new Error(`not all ${n} streams open within ${timeout} ms: ${states.join(', ')}`, { cause: e });
  }
}

/** How many of the page's EventSources are open right now. */
export const openCount = (page) =>
  page.evaluate(() => window.streams.filter((s) => s.source.readyState === EventSource.OPEN).length);

/**
 * In a page on `origin`: checks the page came over HTTP/2, opens one EventSource per topic and waits until all
 * are open at once, then publishes `rounds` rounds of one event per topic from the page (POST /publish, same
 * clock as the arrivals; one request at a time, so each event is timed from its own request rather than from
 * behind eleven others), and checks every stream gets exactly its events, in order, each within MAX_LATENCY_MS
 * of its publish request being sent, with every stream still open at the end. Returns the largest latency (ms).
 */
export async function checkStreamsAtOnce({ browser, origin, token, topics, rounds = 3 }) {
  let worst;
  await withPage(browser, `${origin}/`, async (page) => {
    assert.equal(await pageProtocol(page), 'h2');
    await openStreams(page, topics);
    await waitAllOpen(page, topics.length);

    // sent[round][stream] = { id, sentAt, ackedIn }
    const sent = await page.evaluate(async ({ topics, token, rounds }) => {
      // One untimed publish first: the page's first request pays for one-off set-up (and the proxy's first
      // connection to Conduit for requests), which says nothing about buffering.
      const warmUp = await fetch('/publish?topic=warm-up', { method: 'POST', headers: { Authorization: `Bearer ${token}` }, body: 'warm-up' });
      if (warmUp.status !== 202) throw new Error(`warm-up publish: ${warmUp.status} ${await warmUp.text()}`);
      const sent = [];
      for (let round = 0; round < rounds; round++) {
        const acks = [];
        for (const topic of topics) {
          const sentAt = performance.now();
          const res = await fetch(`/publish?topic=${encodeURIComponent(topic)}`, {
            method: 'POST', headers: { Authorization: `Bearer ${token}` }, body: `round ${round} on ${topic}`,
          });
          if (res.status !== 202) throw new Error(`publish to ${topic}: ${res.status} ${await res.text()}`);
          const { id } = await res.json();
          acks.push({ id, sentAt, ackedIn: Math.round(performance.now() - sentAt) });
        }
        sent.push(acks);
      }
      return sent;
    }, { topics, token, rounds });

    await page.waitForFunction((n) => window.streams.every((s) => s.events.length >= n), rounds, { timeout: 5_000 });
    assert.equal(await openCount(page), topics.length, 'every stream still open');
    const streams = await page.evaluate(() => window.streams.map(({ topic, events }) => ({ topic, events })));
    for (const [i, { topic, events }] of streams.entries()) {
      assert.deepEqual(events.map(({ id, data }) => ({ id, data })),
        sent.map((acks, round) => ({ id: acks[i].id, data: `round ${round} on ${topic}` })), `events of ${topic}`);
    }
    // Every latency, and when each publish was answered, so that a failure shows where the time went.
    const latencies = sent.map((acks, round) => streams.map(({ events }, i) => Math.round(events[round].at - acks[i].sentAt)));
    assert.ok(latencies.flat().every((ms) => ms < MAX_LATENCY_MS),
      `latencies in ms, one row per round, one column per stream (limit ${MAX_LATENCY_MS}):\n${latencies.join('\n')}\n`
      + `publish requests answered after (ms):\n${sent.map((acks) => acks.map((a) => a.ackedIn)).join('\n')}`);
    await page.evaluate(() => { for (const s of window.streams) s.source.close(); });
    worst = Math.max(...latencies.flat());
  });
  return worst;
}

/**
 * A plain HTTP server on 127.0.0.1 standing in for Conduit, recording what the proxy sends it: `seen` lists
 * { url, version, headers, port } (`port` being the proxy's side of the connection). `/silent` answers with an
 * event stream head and no body; `/retry` with the head and a `retry:` field; both stay open. Anything else: 200.
 */
export async function recordingUpstream() {
  const seen = [];
  const server = http.createServer((req, res) => {
    seen.push({ url: req.url, version: req.httpVersion, headers: req.headers, port: req.socket.remotePort });
    if (req.url === '/silent' || req.url === '/retry') {
      res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
      if (req.url === '/retry') res.write('retry: 3000\n\n'); else res.flushHeaders();
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/plain' }).end('ok');
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    seen,
    addr: `127.0.0.1:${server.address().port}`,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

/**
 * Two streams opened through the proxy at `origin` by curl (trusting `ca`), with `Last-Event-ID` 41 then 42 and
 * a client-claimed `X-Forwarded-For`, as `upstream` (a `recordingUpstream`) received them: each over HTTP/1.1
 * without `Connection: close`, with its Last-Event-ID and `X-Forwarded-Proto: https`, the second on the first
 * one's connection. Returns each request's headers, for what differs between proxies.
 */
export async function forwardedRequests({ origin, ca, upstream }) {
  for (const lastEventId of ['41', '42']) {
    const stream = curlStream(`${origin}/stream?topic=echo`, {
      ca, headers: { 'Last-Event-ID': lastEventId, 'X-Forwarded-For': '203.0.113.9' },
    });
    try {
      assert.equal(await stream.waitOpen(), 200);
    } finally {
      await stream.stop();
    }
  }
  assert.equal(upstream.seen.length, 2);
  for (const [i, { version, headers }] of upstream.seen.entries()) {
    assert.equal(version, '1.1');
    assert.equal(headers.connection, undefined, 'no Connection: close, so the connection can be reused');
    assert.equal(headers['last-event-id'], ['41', '42'][i]);
    assert.equal(headers['x-forwarded-proto'], 'https');
  }
  assert.equal(upstream.seen[1].port, upstream.seen[0].port, 'the second request reused the first one\'s connection');
  return upstream.seen.map(({ headers }) => headers);
}

/**
 * Through the proxy at `origin`, curl (trusting `ca`) reads a stream over HTTP/2 and over HTTP/1.1: it opens
 * with 200 and the event-stream type, its events arrive unbuffered (see `checkUnbuffered`), and a reader that
 * saw the second event resumes after it with the rest, each once, from the backlog.
 */
export async function checkCurlThrough(t, { agent, origin, token, ca }) {
  // The agent's connection is made before anything is timed.
  const warmUp = await post(agent, `${origin}/publish?topic=warm-up`,
    { body: 'warm-up', headers: { Authorization: `Bearer ${token}` } });
  assert.equal(warmUp.status, 202);
  for (const [version, protocol] of [['--http2', 'HTTP/2'], ['--http1.1', 'HTTP/1.1']]) {
    const topic = `curl-${randomBytes(4).toString('hex')}`;
    const stream = curlStream(`${origin}/stream?topic=${topic}`, { ca, version });
    try {
      assert.equal(await stream.waitOpen(), 200);
      assert.equal(stream.protocol(), protocol);
      assert.match(stream.stderr(), /^< content-type: text\/event-stream/im);
      const worst = await checkUnbuffered({ agent, origin, token, topic, stream });
      t.diagnostic(`curl ${version}: slowest event ${worst} ms after its publish request`);
    } finally {
      await stream.stop();
    }
    const seen = stream.events;
    const resumed = curlStream(`${origin}/stream?topic=${topic}`, { ca, version, headers: { 'Last-Event-ID': seen[1].id } });
    try {
      await resumed.waitEvents(seen.length - 2);
      await sleep(200);
      assert.deepEqual(resumed.events.map((e) => e.id), seen.slice(2).map((e) => e.id));
    } finally {
      await resumed.stop();
    }
  }
}
