// The official TypeScript SDK client against the hub (/mcp): lists the merged tools, calls one tool
// of each upstream, reads a resource, gets a prompt, and answers server-everything's sampling and
// elicitation requests, which reach it through the hub. Prints one JSON object.
// usage: node hub_ts_client.mjs URL TOKEN
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ResourceListChangedNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';

const [url, token] = process.argv.slice(2);
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
const client = new Client(
  { name: 'palisade-hub-test', version: '1.0.0' },
  { capabilities: { sampling: {}, elicitation: { form: {} } } },
);
const asked = [];
client.setRequestHandler(CreateMessageRequestSchema, async (req) => {
  asked.push(req.method);
  return { role: 'assistant', content: { type: 'text', text: 'sampled by the client' }, model: 'test-model', stopReason: 'endTurn' };
});
client.setRequestHandler(ElicitRequestSchema, async (req) => {
  asked.push(req.method);
  return { action: 'accept', content: { name: 'Ann', check: true } };
});

let listChanged;
const changed = new Promise((resolve) => { listChanged = resolve; });
client.setNotificationHandler(ResourceListChangedNotificationSchema, () => listChanged(true));

await client.connect(transport);
const text = (r) => r.content.map((c) => c.text ?? '').join('');
const { tools } = await client.listTools();
const echo = await client.callTool({ name: 'demo__echo', arguments: { text: 'ts via hub' } });
const time = await client.callTool({ name: 'time__get_current_time', arguments: { timezone: 'UTC' } });
const everything = await client.callTool({ name: 'everything__echo', arguments: { message: 'hello' } });
const { resources } = await client.listResources();
const read = await client.readResource({ uri: resources[0].uri });
const prompt = await client.getPrompt({ name: 'everything__args-prompt', arguments: { city: 'Oslo' } });
const sampling = await client.callTool({ name: 'everything__trigger-sampling-request', arguments: { prompt: 'hi', maxTokens: 16 } });
const elicitation = await client.callTool({ name: 'everything__trigger-elicitation-request', arguments: {} });
// server-everything adds a resource and says so on its listen stream; the hub refreshes its
// merged view and tells this client on ours.
await client.callTool({
  name: 'everything__gzip-file-as-resource',
  arguments: { name: 'hello.txt.gz', data: 'data:text/plain;base64,aGVsbG8gZ3ppcA==' },
});
const notified = await Promise.race([changed, new Promise((r) => setTimeout(() => r(false), 10000))]);
const after = (await client.listResources()).resources;
const version = transport.protocolVersion;
await transport.terminateSession();
await client.close();
console.log(JSON.stringify({
  version,
  tools: tools.map((t) => t.name),
  echo: text(echo),
  time: JSON.parse(text(time)).timezone,
  everything: text(everything),
  resource: { uri: resources[0].uri, chars: (read.contents[0].text ?? '').length },
  prompt: prompt.messages[0].content.text,
  sampling: text(sampling),
  elicitation: text(elicitation),
  asked,
  listChanged: notified,
  resourcesBefore: resources.length,
  resourcesAfter: after.length,
}));
