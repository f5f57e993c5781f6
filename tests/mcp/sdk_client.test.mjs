// The official TypeScript SDK's client against examples/mcp_server.rs: initialize, list tools, call tools, a
// streaming call whose connection is dropped mid-call and resumed with Last-Event-ID, a hub topic, and the
// end of a session. The server's URL comes from MCP_URL (tests/mcp/run.sh starts the example).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CallToolResultSchema } from '@modelcontextprotocol/sdk/types.js';

const url = new URL(process.env.MCP_URL ?? assert.fail('MCP_URL is not set'));

async function connect(fetchFn) {
  const client = new Client({ name: 'conduit-sdk-test', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(url, fetchFn ? { fetch: fetchFn } : {});
  await client.connect(transport);
  return { client, transport };
}

function text(result) {
  assert.equal(result.content.length, 1, JSON.stringify(result));
  assert.equal(result.content[0].type, 'text');
  return result.content[0].text;
}

test('initialize and list tools', async () => {
  const { client, transport } = await connect();
  try {
    assert.match(transport.sessionId, /^[\x21-\x7e]+$/);
    assert.equal(client.getServerVersion().name, 'conduit-mcp-example');
    const { tools } = await client.listTools();
    const names = tools.map((t) => t.name);
    for (const name of ['echo', 'count', 'publish', 'read_topic']) {
      assert.ok(names.includes(name), `${name} in ${names}`);
    }
    for (const tool of tools) {
      assert.equal(tool.inputSchema.type, 'object');
      assert.equal(typeof tool.description, 'string');
    }
  } finally {
    await client.close();
  }
});

test('echo returns its message; bad arguments are a tool error', async () => {
  const { client } = await connect();
  try {
    const message = 'héllo\nwörld "quoted"';
    assert.equal(text(await client.callTool({ name: 'echo', arguments: { message } })), message);
    const bad = await client.callTool({ name: 'echo', arguments: { message: 7 } });
    assert.equal(bad.isError, true);
  } finally {
    await client.close();
  }
});

test('count streams progress before its result', async () => {
  const { client } = await connect();
  try {
    const progress = [];
    const result = await client.callTool({ name: 'count', arguments: { n: 5, interval_ms: 10 } }, CallToolResultSchema, {
      onprogress: (p) => progress.push(p.progress),
    });
    assert.equal(text(result), 'counted 5');
    assert.deepEqual(progress, [1, 2, 3, 4, 5]);
  } finally {
    await client.close();
  }
});

test('a connection dropped mid-call is resumed with Last-Event-ID, nothing lost or repeated', async () => {
  // A fetch that cuts the tools/call stream once three progress events have arrived, as a network would.
  const resumedFrom = [];
  let cut = false;
  const flakyFetch = async (input, init = {}) => {
    const response = await fetch(input, init);
    const method = init.method ?? 'GET';
    const lastEventId = new Headers(init.headers).get('last-event-id');
    if (method === 'GET' && lastEventId) {
      resumedFrom.push({ lastEventId, status: response.status });
    }
    const isCall = method === 'POST' && typeof init.body === 'string' && init.body.includes('"tools/call"');
    if (!isCall || cut || !response.body) {
      return response;
    }
    cut = true;
    const upstream = response.body.getReader();
    const decoder = new TextDecoder();
    let seen = '';
    const body = new ReadableStream({
      async pull(controller) {
        const { value, done } = await upstream.read();
        if (done) {
          controller.close();
          return;
        }
        controller.enqueue(value);
        seen += decoder.decode(value, { stream: true });
        if ((seen.match(/notifications\/progress/g) ?? []).length >= 3) {
          await upstream.cancel(); // closes the TCP connection
          controller.error(new Error('connection dropped by the test'));
        }
      },
    });
    return new Response(body, { status: response.status, headers: response.headers });
  };

  const { client } = await connect(flakyFetch);
  try {
    const n = 12;
    const progress = [];
    const errors = [];
    client.onerror = (e) => errors.push(String(e));
    const result = await client.callTool({ name: 'count', arguments: { n, interval_ms: 100 } }, CallToolResultSchema, {
      onprogress: (p) => progress.push(p.progress),
      timeout: 30000,
    });
    assert.ok(cut, 'the call stream was cut');
    assert.equal(resumedFrom.length, 1, `one resume: ${JSON.stringify(resumedFrom)}`);
    assert.equal(resumedFrom[0].status, 200);
    assert.match(resumedFrom[0].lastEventId, /^\d+-\d+$/);
    assert.equal(text(result), `counted ${n}`);
    assert.deepEqual(progress, Array.from({ length: n }, (_, i) => i + 1), 'every step once, in order');
    assert.ok(errors.some((e) => e.includes('connection dropped')), `the drop was seen: ${errors}`);
  } finally {
    await client.close();
  }
});

test('publish reaches the hub topic stream, and read_topic reads it back', async () => {
  const topic = `sdk-${process.pid}`;
  const controller = new AbortController();
  const stream = await fetch(new URL(`/stream?topic=${topic}`, url), { signal: controller.signal });
  assert.equal(stream.status, 200);
  const { client } = await connect();
  try {
    const result = await client.callTool({ name: 'publish', arguments: { topic, text: 'hello hub' } });
    const id = text(result);
    assert.deepEqual(result.structuredContent, { topic, id });
    const reader = stream.body.getReader();
    const decoder = new TextDecoder();
    let received = '';
    while (!received.includes('\n\n')) {
      const { value, done } = await reader.read();
      assert.ok(!done, 'the topic stream ended early');
      received += decoder.decode(value, { stream: true });
    }
    assert.match(received, new RegExp(`id: ${id}\ndata: hello hub\n\n`));
    const second = text(await client.callTool({ name: 'publish', arguments: { topic, text: 'second' } }));
    const all = await client.callTool({ name: 'read_topic', arguments: { topic } });
    assert.deepEqual(all.structuredContent.events.map((e) => [e.id, e.data]), [[id, 'hello hub'], [second, 'second']]);
    const after = await client.callTool({ name: 'read_topic', arguments: { topic, after: id } });
    assert.deepEqual(after.structuredContent.events.map((e) => e.data), ['second']);
    const unknown = await client.callTool({ name: 'read_topic', arguments: { topic, after: 'no-such-id' } });
    assert.equal(unknown.isError, true);
  } finally {
    controller.abort();
    await client.close();
  }
});

test('a terminated session answers 404', async () => {
  const { client, transport } = await connect();
  const sessionId = transport.sessionId;
  await transport.terminateSession();
  await client.close();
  const response = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      'mcp-session-id': sessionId,
    },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
  });
  assert.equal(response.status, 404);
});
