// The official TypeScript SDK as an MCP client of the gateway, with a bearer credential.
//
// usage: node ts_client.mjs URL TOKEN [TEXT]
//
// Connects over Streamable HTTP sending `Authorization: Bearer TOKEN` on every request the
// transport makes (POST, GET and DELETE alike, through requestInit), lists the tools, calls
// `echo` with TEXT (default "through palisade"), closes the session and prints
// {"tools": [names], "echo": text} as one JSON line.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const [url, token, text = 'through palisade'] = process.argv.slice(2);
if (!url || !token) {
  console.error('usage: node ts_client.mjs URL TOKEN [TEXT]');
  process.exit(2);
}

const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
const client = new Client({ name: 'palisade-ts-client', version: '0.0.0' });
await client.connect(transport);
const { tools } = await client.listTools();
const echo = await client.callTool({ name: 'echo', arguments: { text } });
await transport.terminateSession();
await client.close();
console.log(
  JSON.stringify({
    tools: tools.map((t) => t.name),
    echo: echo.content?.[0]?.text ?? null,
  }),
);
