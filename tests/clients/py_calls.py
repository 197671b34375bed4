"""Interop client: the official Python MCP SDK (`mcp` on PyPI) making the tool calls it is
given, against an rmcp-authz server (tests/tests/cedar_e2e.rs runs it).

Run with the interpreter of target/interop/venv (made by scripts/setup-interop.sh); it
reuses py_client.py's HTTP response recorder. Inputs, from the environment:

  INTEROP_URL    the MCP endpoint, http://127.0.0.1:PORT/mcp
  INTEROP_TOKEN  the access token, sent as a plain `Authorization: Bearer` header
  INTEROP_CALLS  a JSON array of [tool, arguments] pairs, called in order
  INTEROP_MODE   the SDK's `Client(mode=...)` (default "legacy")

Prints one JSON object on stdout: `tools` (the names from tools/list) and `calls`, one
entry per call with `result` (the CallToolResult as JSON, null if the SDK raised),
`sdk_error` (what the SDK raised, null if nothing) and `http` (the status,
WWW-Authenticate and challenge fields of the HTTP response the SDK's transport received
for that call).
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from py_client import Recorder, describe_error, unwrap


async def main() -> None:
    url = os.environ["INTEROP_URL"]
    token = os.environ["INTEROP_TOKEN"]
    calls = json.loads(os.environ["INTEROP_CALLS"])
    mode = os.environ.get("INTEROP_MODE", "legacy")
    out: dict[str, Any] = {"calls": []}
    recorder = Recorder()
    async with recorder.http_client(token) as http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
            listed = await client.list_tools()
            out["tools"] = [tool.name for tool in listed.tools]
            for tool, arguments in calls:
                seen = len(recorder.exchanges)
                entry: dict[str, Any] = {"tool": tool, "result": None, "sdk_error": None}
                try:
                    result = await client.call_tool(tool, arguments)
                    entry["result"] = result.model_dump(mode="json", by_alias=True)
                except Exception as err:  # noqa: BLE001 - whatever the SDK raises is the observation
                    entry["sdk_error"] = describe_error(unwrap(err))
                # Only this call's exchanges: an earlier call of the same tool is not it.
                own = Recorder()
                own.exchanges = recorder.exchanges[seen:]
                entry["http"] = own.describe("tools/call", tool)
                out["calls"].append(entry)
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
