// Interop client: the official TypeScript MCP SDK (@modelcontextprotocol/sdk on npm)
// against an rmcp-authz server.
//
// Run by tests/tests/interop_clients.rs with Node; the test copies this file into
// target/interop/node/ (made by scripts/setup-interop.sh) so that the SDK resolves from
// the node_modules/ there. Inputs, from the environment:
//
//   INTEROP_URL    the MCP endpoint, http://127.0.0.1:PORT/mcp
//   INTEROP_TOKEN  an access token carrying the scope notes:read
//
// Prints one JSON object with what it observed on stdout (the Rust test asserts on it):
//
//   sdk, sdk_version, protocol_version   what ran and what was negotiated
//   tools                                names from the SDK's tools/list
//   allowed                              list_notes through the SDK: is_error, texts
//   forbidden                            write_note through the SDK (notes:write needed)
//   no_token                             connecting through the SDK with no token
//
// `forbidden` and `no_token` each hold `sdk_error` (what the SDK threw: type, code,
// message; null if it threw nothing) and `http` (status and WWW-Authenticate of the HTTP
// response the SDK's own transport received for that message, recorded by the `fetch`
// the transport was given, plus the challenge fields as read by the SDK's own helper
// `extractWWWAuthenticateParams`). The bearer token is sent as a plain header through
// `requestInit`; the SDK's OAuth machinery (authProvider) is not used.

import { readFile } from 'node:fs/promises';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { extractWWWAuthenticateParams } from '@modelcontextprotocol/sdk/client/auth.js';

const url = new URL(process.env.INTEROP_URL);
const token = process.env.INTEROP_TOKEN;

/** Remembers every HTTP response the SDK's transport receives (status and headers). */
class Recorder {
  constructor() {
    this.exchanges = [];
    this.fetch = async (input, init) => {
      const response = await fetch(input, init);
      let body = null;
      if (typeof init?.body === 'string') {
        try {
          body = JSON.parse(init.body);
        } catch {
          body = null;
        }
      }
      this.exchanges.push({ method: init?.method ?? 'GET', body, response });
      return response;
    };
  }

  transport(bearer) {
    const headers = bearer === null ? {} : { Authorization: `Bearer ${bearer}` };
    return new StreamableHTTPClientTransport(url, { requestInit: { headers }, fetch: this.fetch });
  }

  /** The last response to a POST of `method` (for tools/call, of tool `tool`). */
  describe(method, tool) {
    for (const { body, response } of [...this.exchanges].reverse()) {
      if (body?.method !== method) continue;
      if (tool !== undefined && body?.params?.name !== tool) continue;
      const params = extractWWWAuthenticateParams(response);
      return {
        method,
        status: response.status,
        www_authenticate: response.headers.has('www-authenticate')
          ? [response.headers.get('www-authenticate')]
          : [],
        challenge: {
          error: params.error ?? null,
          scope: params.scope ?? null,
          resource_metadata: params.resourceMetadataUrl?.href ?? null,
        },
      };
    }
    return null;
  }
}

function describeError(err) {
  return {
    type: err?.constructor?.name ?? typeof err,
    code: err?.code ?? null,
    message: String(err?.message ?? err),
    data: err?.data ?? null,
  };
}

function newClient() {
  return new Client({ name: 'rmcp-authz-interop', version: '0.0.0' });
}

async function withToken(out) {
  const recorder = new Recorder();
  const client = newClient();
  await client.connect(recorder.transport(token));
  try {
    out.protocol_version = client.transport?.protocolVersion ?? null;

    const listed = await client.listTools();
    out.tools = listed.tools.map((t) => t.name);

    const result = await client.callTool({ name: 'list_notes', arguments: {} });
    out.allowed = {
      is_error: Boolean(result.isError),
      texts: result.content.filter((c) => c.type === 'text').map((c) => c.text),
    };

    const forbidden = { sdk_error: null };
    try {
      forbidden.result = await client.callTool({
        name: 'write_note',
        arguments: { id: 'interop', text: 'from typescript' },
      });
    } catch (err) {
      forbidden.sdk_error = describeError(err);
    }
    forbidden.http = recorder.describe('tools/call', 'write_note');
    out.forbidden = forbidden;
  } finally {
    await client.close();
  }
}

async function withoutToken(out) {
  const recorder = new Recorder();
  const client = newClient();
  const noToken = { sdk_error: null };
  try {
    await client.connect(recorder.transport(null));
    noToken.connected = true;
    await client.listTools();
  } catch (err) {
    noToken.sdk_error = describeError(err);
  } finally {
    await client.close().catch(() => {});
  }
  noToken.http = recorder.describe('initialize');
  noToken.methods = recorder.exchanges.filter((e) => e.body).map((e) => e.body.method);
  out.no_token = noToken;
}

async function main() {
  const pkg = JSON.parse(
    await readFile(new URL('./node_modules/@modelcontextprotocol/sdk/package.json', import.meta.url), 'utf8'),
  );
  const out = {
    sdk: '@modelcontextprotocol/sdk (TypeScript)',
    sdk_version: pkg.version,
    node: process.versions.node,
  };
  await withToken(out);
  await withoutToken(out);
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

await main();
