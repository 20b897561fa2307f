"""The official Python SDK (mcp 2.3.0) against the hub (/mcp), in its default mode: it probes the
2026-07-28 era first (server/discover) and falls back to initialize. Prints one JSON object,
including the era it settled on."""
import asyncio
import json
import sys

import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


def text(result) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


asked: list[str] = []


async def sampling(context, params):
    asked.append("sampling/createMessage")
    return types.CreateMessageResult(
        role="assistant",
        content=types.TextContent(type="text", text="sampled by python"),
        model="test-model",
        stop_reason="endTurn",
    )


async def elicitation(context, params):
    asked.append("elicitation/create")
    return types.ElicitResult(action="accept", content={"name": "Bea", "check": True})


async def main(url: str, token: str) -> None:
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(
            transport, sampling_callback=sampling, elicitation_callback=elicitation
        ) as c:
            tools = await c.list_tools()
            echo = await c.call_tool("demo__echo", {"text": "python via hub"})
            now = await c.call_tool("time__get_current_time", {"timezone": "UTC"})
            everything = await c.call_tool("everything__echo", {"message": "hello"})
            resources = await c.list_resources()
            read = await c.read_resource(resources.resources[0].uri)
            prompt = await c.get_prompt("everything__args-prompt", {"city": "Oslo"})
            # server-everything (legacy) asks its client mid-call; this client speaks
            # 2026-07-28, so the hub turns each question into an input_required result and
            # the SDK retries with the answer.
            sampled = await c.call_tool(
                "everything__trigger-sampling-request", {"prompt": "hi", "maxTokens": 16}
            )
            elicited = await c.call_tool("everything__trigger-elicitation-request", {})
            print(json.dumps({
                "protocol": c.protocol_version,
                "modern": c.session.discover_result is not None,
                "tools": [t.name for t in tools.tools],
                "echo": text(echo),
                "time": json.loads(text(now))["timezone"],
                "everything": text(everything),
                "resource": str(resources.resources[0].uri),
                "resource_chars": len(getattr(read.contents[0], "text", "")),
                "prompt": prompt.messages[0].content.text,
                "sampling": text(sampled),
                "elicitation": text(elicited),
                "asked": asked,
            }))


asyncio.run(main(sys.argv[1], sys.argv[2]))
