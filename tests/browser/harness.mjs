// Shared pieces of the browser tests: the example server (started on a free loopback port, stopped with SIGTERM),
// headless Chromium, small static servers for other origins, and helpers that read the page the way a person
// would (status badges, log rows, bubbles).
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

export { sleep };

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, '../..');
export const ARTIFACTS = path.join(HERE, 'artifacts');
export const CHROMIUM = '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
export const VIEWPORT = { width: 1280, height: 900 };

/** A fresh random token per run, so nothing can pass by accident with a well-known one. */
export const newToken = () => `test-${randomBytes(12).toString('hex')}`;

/** The example binary: `CONDUIT_EXAMPLE_BIN` (run.sh sets it), else where `cargo build --example` puts it. */
export function exampleBinary() {
  const bin = process.env.CONDUIT_EXAMPLE_BIN
    || path.resolve(ROOT, process.env.CARGO_TARGET_DIR || 'target', 'debug/examples/sse_simple_server');
  if (!fs.existsSync(bin)) {
    throw new Error(`example binary not found at ${bin}; run \`bash tests/browser/run.sh\`, which builds it`);
  }
  return bin;
}

// Children still running when this process exits (a crash, a timeout) are killed, so none outlives the tests.
const running = new Set();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/**
 * Starts the example server on 127.0.0.1 with a free port, the given token and CORS origins, and waits for its
 * "Conduit demo on http://ADDR/" line on stderr. Returns { addr, url, token, stderr(), running(), stop() }.
 */
export async function startExample({ token, corsOrigins = [], startTimeoutMs = 15_000 }) {
  const args = ['--addr', '127.0.0.1:0', '--token', token];
  for (const origin of corsOrigins) args.push('--cors-origin', origin);
  // The log line we wait for is at info level; settings from the environment must not change the server.
  const env = { ...process.env, RUST_LOG: 'info' };
  for (const name of ['CONDUIT_ADDR', 'CONDUIT_TOKEN', 'CONDUIT_CORS_ORIGINS']) delete env[name];
  const child = spawn(exampleBinary(), args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  let stderr = '';
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      running.delete(child);
      resolve({ code, signal });
    });
  });
  child.stdout.resume();                       // nothing expected there (the token is ours), but never block it
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => { stderr = (stderr + chunk).slice(-64 * 1024); });

  let addr;
  try {
    addr = await new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no "Conduit demo on" line within ${startTimeoutMs} ms; stderr:\n${stderr}`)),
        startTimeoutMs,
      );
      const look = () => {
        const m = /Conduit demo on http:\/\/(127\.0\.0\.1:\d+)\//.exec(stderr);
        if (m) { clearTimeout(timer); resolve(m[1]); }
      };
      child.stderr.on('data', look);
      child.once('error', (e) => { clearTimeout(timer); reject(e); });
      exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`the example exited (${code ?? signal}) before listening; stderr:\n${stderr}`));
      });
    });
  } catch (e) {
    child.kill('SIGKILL');
    await exited;
    throw e;
  }

  const isRunning = () => child.exitCode === null && child.signalCode === null;
  return {
    addr,
    url: `http://${addr}/`,
    token,
    stderr: () => stderr,
    running: isRunning,
    /** SIGTERM, then waits (bounded) for the exit; SIGKILL and an error if it does not come. */
    async stop(timeoutMs = 10_000) {
      if (isRunning()) child.kill('SIGTERM');
      let timer;
      const result = await Promise.race([exited, new Promise((resolve) => { timer = setTimeout(resolve, timeoutMs, null); })]);
      clearTimeout(timer);                     // a pending timer would keep this process alive
      if (result) return result;
      child.kill('SIGKILL');
      await exited;
      throw new Error(`the example did not exit within ${timeoutMs} ms of SIGTERM; stderr:\n${stderr}`);
    },
  };
}

/** Asserts a graceful shutdown: SIGTERM → exit code 0, with the server's own "shutting down" log line. */
export async function stopGracefully(server) {
  const { code, signal } = await server.stop();
  assert.equal(signal, null, `the example was killed by ${signal}; stderr:\n${server.stderr()}`);
  assert.equal(code, 0, `the example exited with ${code}; stderr:\n${server.stderr()}`);
  assert.match(server.stderr(), /shutting down/);
}

/**
 * Headless Chromium from Debian, with a fresh temporary profile (deleted when it closes). `args` are added to
 * CHROMIUM_ARGS (tests/deploy pins its test certificate this way).
 */
export function launchBrowser({ args = [] } = {}) {
  return chromium.launch({ executablePath: CHROMIUM, args: [...CHROMIUM_ARGS, ...args], timeout: 30_000 });
}

/**
 * The usual set-up of a test file: one example server and one browser for all its tests, stopped afterwards
 * (the browser first, then the server, which must exit 0). `options.corsOrigins` may be a function, called in
 * `before`, for origins only known once their servers listen.
 */
export function useExample(options = {}) {
  const h = { token: newToken(), server: null, browser: null };
  before(async () => {
    const corsOrigins = typeof options.corsOrigins === 'function' ? await options.corsOrigins() : options.corsOrigins;
    h.server = await startExample({ token: h.token, corsOrigins });
    h.browser = await launchBrowser();
  });
  after(async () => {
    try {
      await h.browser?.close();
    } finally {
      if (h.server?.running()) await stopGracefully(h.server);
    }
  });
  return h;
}

/**
 * Runs `fn(page)` in a fresh browser context (own storage) on `url`, then closes it. Fails unless the page
 * loads with 200, and on any uncaught exception in the page. `beforeGoto(page)` may set up listeners before the
 * page loads.
 */
export async function withPage(browser, url, fn, { beforeGoto } = {}) {
  const context = await browser.newContext({ viewport: VIEWPORT });
  try {
    const page = await context.newPage();
    page.setDefaultTimeout(10_000);
    const errors = [];
    page.on('pageerror', (e) => errors.push(e));
    await beforeGoto?.(page);
    const response = await page.goto(url);
    assert.equal(response.status(), 200, `loading ${url}`);
    await fn(page);
    assert.deepEqual(errors.map(String), [], 'uncaught errors in the page');
  } finally {
    await context.close();
  }
}

/** Waits until the status badge of `panel` (a selector) shows `state`. */
export async function waitState(page, panel, state, timeout = 10_000) {
  await page.locator(`${panel} .status[data-state="${state}"]`).waitFor({ timeout });
  assert.equal((await page.locator(`${panel} .status`).textContent()).trim(), state);
}

/**
 * Records every value the `data-state` attribute of `selector` takes from now on (no change is missed, even
 * several in one task). Returns an async function giving the list, starting with the current value.
 */
export async function recordStates(page, selector) {
  await page.evaluate((sel) => {
    const el = document.querySelector(sel);
    const list = [el.dataset.state];
    (window.__states ??= {})[sel] = list;
    new MutationObserver((records) => {
      // Each record holds the value before its change; the value after the last change is the current one.
      const values = records.slice(1).map((r) => r.oldValue).concat(el.dataset.state);
      for (const v of values) if (list.at(-1) !== v) list.push(v);
    }).observe(el, { attributes: true, attributeFilter: ['data-state'], attributeOldValue: true });
  }, selector);
  return () => page.evaluate((sel) => window.__states[sel], selector);
}

/** The event rows of a panel's log: [{ type, id, data }] (id null when the event had none). */
export function logEntries(page, panel) {
  return page.$$eval(`${panel} ol.log > li:not(.connection)`, (lis) =>
    lis.map((li) => ({ type: li.dataset.type, id: li.dataset.id ?? null, data: li.dataset.data })));
}

/** The log's rows about the connection itself (lost, reconnected, resumed...): [{ what, text }]. */
export function connectionNotes(page, panel) {
  return page.$$eval(`${panel} ol.log > li.connection`, (lis) =>
    lis.map((li) => ({ what: li.dataset.connection, text: li.querySelector('.log-data').textContent })));
}

/** Waits until the log of `panel` has at least `n` rows matching `rowSelector` (e.g. `[data-type="time"]`). */
export function waitLogRows(page, panel, rowSelector, n, timeout = 10_000) {
  return page.waitForFunction(
    ([sel, n]) => document.querySelectorAll(sel).length >= n,
    [`${panel} ol.log > li${rowSelector}`, n],
    { timeout },
  );
}

/** A static server on 127.0.0.1 (its own origin): `handler(req, res)` answers. */
export async function serveStatic(handler) {
  const server = http.createServer(handler);
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  return {
    port,
    origin: `http://127.0.0.1:${port}`,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}
