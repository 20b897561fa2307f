"""The official Python SDK calling the gateway with a credential.

usage: python_auth_client.py URL bearer TOKEN
       python_auth_client.py URL hmac KEY_ID SECRET v1|v2

With `hmac`, an httpx auth hook signs every request the SDK sends (POST, GET, DELETE) the way
seed 001's client snippet does (v1) or with Palisade's recommended form (v2), adding a fresh
nonce and idempotency key each time. Prints the tool names and the echo result as JSON.
"""
import asyncio
import hashlib
import hmac
import json
import sys
import time
import uuid

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


class HmacAuth(httpx2.Auth):
    requires_request_body = True

    def __init__(self, key_id: str, secret: str, form: str) -> None:
        self.key_id, self.secret, self.form = key_id, secret.encode(), form

    def auth_flow(self, request):
        ts = str(int(time.time()))
        nonce, idem = uuid.uuid4().hex, uuid.uuid4().hex
        body = request.content or b""
        method, path, query = request.method, request.url.path, request.url.query.decode()
        if self.form == "v1":
            # Seed 001's snippet, unchanged: f"{method}|{path}|{timestamp}|{body}".
            message = f"{method}|{path}|{ts}|{body.decode()}".encode()
        else:
            message = "\n".join([
                "PALISADE-HMAC-SHA256", "v2", method, path, query, ts, nonce, idem, "1.0.0",
                self.key_id, hashlib.sha256(body).hexdigest(),
            ]).encode()
        request.headers["X-Signature"] = hmac.new(self.secret, message, hashlib.sha256).hexdigest()
        request.headers["X-Timestamp"] = ts
        request.headers["X-Nonce"] = nonce
        request.headers["Idempotency-Key"] = idem
        request.headers["X-API-Version"] = "1.0.0"
        request.headers["X-Key-Id"] = self.key_id
        yield request


async def main(url: str, mode: str, args: list[str]) -> None:
    if mode == "bearer":
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {args[0]}"})
    else:
        http = httpx2.AsyncClient(auth=HmacAuth(args[0], args[1], args[2]))
    async with http, Client(streamable_http_client(url, http_client=http)) as c:
        tools = await c.list_tools()
        echo = await c.call_tool("echo", {"text": f"signed by {mode}"})
        print(json.dumps({"tools": [t.name for t in tools.tools], "echo": echo.content[0].text}))


asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
