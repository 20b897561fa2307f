"""A 2026-07-28-only MCP server for the hub's tests, written from the specification with the
standard library only (no SDK: the SDKs serve both eras, and this one must refuse the legacy one).

    modern_fixture.py --http     serves Streamable HTTP on 127.0.0.1 (prints `listening on http://ADDR`)
    modern_fixture.py --stdio    serves stdio

What it enforces, as a strict modern server would: no `initialize` (400, -32022), the protocol
version in every request's `_meta` (and, over HTTP, the same in `MCP-Protocol-Version`), the
mirrored `Mcp-Method`, `Mcp-Name` and `Mcp-Param-*` headers equal to the body (400, -32020), and
no `Mcp-Session-Id`. Its tools let a test observe what reached it:
- `echo` returns its text; `whoami` returns the `_meta` client info and capabilities it got;
- `order` returns the mirrored headers it got (`symbol` is annotated `x-mcp-header: Symbol`);
- `ask` needs input: it answers `input_required` (an elicitation, and a `requestState` it checks
  on the retry, single use) and greets the name it is given.
"""
import base64
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = "2026-07-28"
META = "io.modelcontextprotocol/"
STATES = set()
LOCK = threading.Lock()
COUNTER = [0]

TOOLS = [
    {"name": "echo", "description": "Echoes text.",
     "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}},
    {"name": "whoami", "description": "The client info and capabilities the request carried.",
     "inputSchema": {"type": "object", "properties": {}}},
    {"name": "order", "description": "Returns the mirrored headers it received.",
     "inputSchema": {"type": "object", "properties": {
         "symbol": {"type": "string", "x-mcp-header": "Symbol"},
         "qty": {"type": "integer"}}, "required": ["symbol"]}},
    {"name": "ask", "description": "Asks the client for a name, then greets it.",
     "inputSchema": {"type": "object", "properties": {"question": {"type": "string"}}}},
]


class Refusal(Exception):
    def __init__(self, status, code, message, data=None):
        super().__init__(message)
        self.status, self.code, self.message, self.data = status, code, message, data


def text(t):
    return {"resultType": "complete", "content": [{"type": "text", "text": t}]}


def call_tool(params, headers):
    name, args = params.get("name"), params.get("arguments") or {}
    meta = params.get("_meta") or {}
    if name == "echo":
        return text(args.get("text", ""))
    if name == "whoami":
        return text(json.dumps({"clientInfo": meta.get(META + "clientInfo"),
                                "clientCapabilities": meta.get(META + "clientCapabilities")}, sort_keys=True))
    if name == "order":
        seen = {k: headers.get(k) for k in ("Mcp-Method", "Mcp-Name", "Mcp-Param-Symbol", "MCP-Protocol-Version")}
        return text(json.dumps(seen, sort_keys=True))
    if name == "ask":
        answers = params.get("inputResponses")
        state = params.get("requestState")
        if answers is None:
            with LOCK:
                COUNTER[0] += 1
                state = f"st-{COUNTER[0]}"
                STATES.add(state)
            return {"resultType": "input_required", "requestState": state, "inputRequests": {
                "name": {"method": "elicitation/create", "params": {
                    "mode": "form", "message": args.get("question", "Your name?"),
                    "requestedSchema": {"type": "object", "properties": {"name": {"type": "string"}},
                                        "required": ["name"]}}}}}
        with LOCK:
            known = state in STATES
            STATES.discard(state)
        if not known:
            raise Refusal(400, -32602, "Invalid or expired requestState")
        reply = answers.get("name") or {}
        if reply.get("action") != "accept":
            return text(f"no name: {reply.get('action')}")
        return text(f"hello {reply['content']['name']}")
    raise Refusal(200, -32602, f"Unknown tool: {name}")


def handle(msg, headers):
    """One JSON-RPC message; returns (status, body or None)."""
    method, params = msg.get("method"), msg.get("params") or {}
    if "id" not in msg:
        return 202, None  # notifications are accepted and ignored
    if method == "initialize":
        raise Refusal(400, -32022, "Unsupported protocol version",
                      {"supported": [VERSION], "requested": params.get("protocolVersion")})
    version = (params.get("_meta") or {}).get(META + "protocolVersion")
    if version != VERSION:
        raise Refusal(400, -32022, "Unsupported protocol version", {"supported": [VERSION], "requested": version})
    if headers is not None:
        check_headers(msg, headers, version)
    if method == "server/discover":
        result = {"resultType": "complete", "supportedVersions": [VERSION], "ttlMs": 60000, "cacheScope": "public",
                  "capabilities": {"tools": {}, "prompts": {}, "resources": {}},
                  "_meta": {META + "serverInfo": {"name": "modern-fixture", "version": "1"}}}
    elif method == "tools/list":
        result = {"resultType": "complete", "tools": TOOLS, "ttlMs": 60000, "cacheScope": "public"}
    elif method == "tools/call":
        result = call_tool(params, headers or {})
    elif method == "prompts/list":
        result = {"resultType": "complete", "ttlMs": 60000, "cacheScope": "public",
                  "prompts": [{"name": "hello", "arguments": [{"name": "who", "required": True}]}]}
    elif method == "prompts/get":
        who = (params.get("arguments") or {}).get("who", "")
        result = {"resultType": "complete",
                  "messages": [{"role": "user", "content": {"type": "text", "text": f"Say hello to {who}"}}]}
    elif method == "resources/list":
        result = {"resultType": "complete", "ttlMs": 60000, "cacheScope": "public",
                  "resources": [{"uri": "modern://greeting", "name": "greeting"}]}
    elif method == "resources/templates/list":
        result = {"resultType": "complete", "ttlMs": 60000, "cacheScope": "public", "resourceTemplates": []}
    elif method == "resources/read":
        if params.get("uri") != "modern://greeting":
            raise Refusal(200, -32602, "Unknown resource")
        result = {"resultType": "complete", "ttlMs": 0, "cacheScope": "private",
                  "contents": [{"uri": "modern://greeting", "text": "hello from 2026"}]}
    else:
        raise Refusal(404, -32601, "Method not found")
    return 200, {"jsonrpc": "2.0", "id": msg["id"], "result": result}


def decoded(value):
    """A header value as the body would say it (`=?base64?...?=` decoded)."""
    if value and value.startswith("=?base64?") and value.endswith("?="):
        return base64.b64decode(value[9:-2], validate=True).decode("utf-8")
    return value


def check_headers(msg, headers, version):
    def mismatch(what):
        raise Refusal(400, -32020, f"Header mismatch: {what}")
    if headers.get("Mcp-Session-Id") is not None:
        mismatch("a stateless server has no session")
    if headers.get("MCP-Protocol-Version") != version:
        mismatch("MCP-Protocol-Version")
    method, params = msg.get("method"), msg.get("params") or {}
    if headers.get("Mcp-Method") != method:
        mismatch("Mcp-Method")
    key = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}.get(method)
    if key and decoded(headers.get("Mcp-Name")) != params.get(key):
        mismatch("Mcp-Name")
    if method == "tools/call" and params.get("name") == "order":
        if decoded(headers.get("Mcp-Param-Symbol")) != (params.get("arguments") or {}).get("symbol"):
            mismatch("Mcp-Param-Symbol")


def error(msg_id, e):
    err = {"code": e.code, "message": e.message}
    if e.data is not None:
        err["data"] = e.data
    return {"jsonrpc": "2.0", "id": msg_id, "error": err}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        msg = {}
        try:
            msg = json.loads(body)
            status, out = handle(msg, self.headers)
        except Refusal as e:
            status, out = e.status, error(msg.get("id"), e)
        self.send_response(status)
        data = json.dumps(out).encode() if out is not None else b""
        if out is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.send_response(405)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_DELETE = do_GET

    def log_message(self, *args):
        pass


def main():
    if "--http" in sys.argv:
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
        server.serve_forever()
    else:
        for line in sys.stdin:
            if not line.strip():
                continue
            msg = {}
            try:
                msg = json.loads(line)
                _, out = handle(msg, None)
            except Refusal as e:
                out = error(msg.get("id"), e)
            if out is not None:
                sys.stdout.write(json.dumps(out) + "\n")
                sys.stdout.flush()


if __name__ == "__main__":
    main()
