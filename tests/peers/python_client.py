"""A real MCP client (the official Python SDK) talking to the gateway: list and call the demo tools."""
import asyncio
import json
import sys

from mcp import Client


async def main(url: str) -> None:
    async with Client(url) as c:
        tools = await c.list_tools()
        echo = await c.call_tool("echo", {"text": "through palisade"})
        quote = await c.call_tool("get_quote", {"symbol": "EURUSD"})
        order = await c.call_tool("place_order", {"symbol": "BTC/USD", "side": "buy", "quantity": 0.5})
        print(json.dumps({
            "protocol": c.session.protocol_version if hasattr(c.session, "protocol_version") else None,
            "tools": [t.name for t in tools.tools],
            "echo": echo.content[0].text,
            "quote": quote.structured_content,
            "order": order.structured_content,
        }))


asyncio.run(main(sys.argv[1]))
