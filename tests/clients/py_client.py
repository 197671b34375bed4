"""Interop client: the official Python MCP SDK (`mcp` on PyPI) against an rmcp-authz server.

Run by tests/tests/interop_clients.rs with the interpreter of target/interop/venv (made by
scripts/setup-interop.sh). Inputs, from the environment:

  INTEROP_URL    the MCP endpoint, http://127.0.0.1:PORT/mcp
  INTEROP_TOKEN  an access token carrying the scope notes:read
  INTEROP_MODE   the SDK's `Client(mode=...)`: "legacy" (initialize handshake) or "auto"
                 (server/discover first, falling back to initialize)

Prints one JSON object with what it observed on stdout (the Rust test asserts on it):

  sdk, sdk_version, mode, protocol_version   what ran and what was negotiated
  tools                                      names from the SDK's tools/list
  allowed                                    list_notes through the SDK: is_error, texts
  forbidden                                  write_note through the SDK (notes:write needed)
  no_token                                   connecting through the SDK with no token

`forbidden` and `no_token` each hold `sdk_error` (the exception the SDK raised: type,
code, message; null if it raised none) and `http` (status and WWW-Authenticate of the
HTTP response the SDK's own transport received for that message, recorded by an httpx2
response hook on the client the SDK used, plus the challenge fields as read by the SDK's
own helper `mcp.client.auth.utils.extract_field_from_www_auth`). The bearer token is sent
as a plain header on the SDK's HTTP client; the SDK's OAuth machinery is not used.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import sys
from typing import Any

import httpx2
from mcp import Client, MCPError
from mcp.client.auth.utils import extract_field_from_www_auth
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


class Recorder:
    """Remembers every HTTP response the SDK's transport receives (status and headers)."""

    def __init__(self) -> None:
        self.exchanges: list[tuple[dict[str, Any] | None, httpx2.Response]] = []

    async def on_response(self, response: httpx2.Response) -> None:
        body: dict[str, Any] | None = None
        request = response.request
        if request.method == "POST":
            try:
                body = json.loads(request.content)
            except (ValueError, httpx2.RequestNotRead):
                body = None
        self.exchanges.append((body, response))

    def http_client(self, token: str | None) -> httpx2.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else None
        client = create_mcp_http_client(headers=headers)
        client.event_hooks = {"request": [], "response": [self.on_response]}
        return client

    def describe(self, method: str, tool: str | None = None) -> dict[str, Any] | None:
        """The last response to a POST of `method` (for tools/call, of tool `tool`)."""
        for body, response in reversed(self.exchanges):
            if not isinstance(body, dict) or body.get("method") != method:
                continue
            if tool is not None and (body.get("params") or {}).get("name") != tool:
                continue
            return {
                "method": method,
                "status": response.status_code,
                "www_authenticate": response.headers.get_list("www-authenticate"),
                "challenge": {
                    field: extract_field_from_www_auth(response, field)
                    for field in ("error", "scope", "resource_metadata")
                },
            }
        return None


def describe_error(err: BaseException) -> dict[str, Any]:
    out: dict[str, Any] = {"type": type(err).__name__, "message": str(err)}
    if isinstance(err, MCPError):
        out["code"] = err.code
        out["message"] = err.message
        out["data"] = err.data
    return out


def unwrap(err: BaseException) -> BaseException:
    """The single leaf of an exception group (anyio task groups wrap what they raise)."""
    while isinstance(err, BaseExceptionGroup) and len(err.exceptions) == 1:
        err = err.exceptions[0]
    return err


async def with_token(url: str, token: str, mode: str, out: dict[str, Any]) -> None:
    recorder = Recorder()
    async with recorder.http_client(token) as http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
            out["protocol_version"] = client.protocol_version

            listed = await client.list_tools()
            out["tools"] = [tool.name for tool in listed.tools]

            result = await client.call_tool("list_notes", {})
            out["allowed"] = {
                "is_error": bool(result.is_error),
                "texts": [c.text for c in result.content if getattr(c, "type", None) == "text"],
            }

            forbidden: dict[str, Any] = {"sdk_error": None}
            try:
                result = await client.call_tool("write_note", {"id": "interop", "text": "from python"})
                forbidden["result"] = result.model_dump(mode="json", by_alias=True)
            except Exception as err:  # noqa: BLE001 - whatever the SDK raises is the observation
                forbidden["sdk_error"] = describe_error(unwrap(err))
            forbidden["http"] = recorder.describe("tools/call", "write_note")
            out["forbidden"] = forbidden


async def without_token(url: str, mode: str, out: dict[str, Any]) -> None:
    recorder = Recorder()
    no_token: dict[str, Any] = {"sdk_error": None}
    try:
        async with recorder.http_client(None) as http:
            async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
                no_token["connected"] = True
                await client.list_tools()
    except Exception as err:  # noqa: BLE001 - whatever the SDK raises is the observation
        no_token["sdk_error"] = describe_error(unwrap(err))
    # "auto" probes server/discover and then falls back to initialize: report the last one.
    no_token["http"] = recorder.describe("initialize") or recorder.describe("server/discover")
    no_token["methods"] = [body.get("method") for body, _ in recorder.exchanges if isinstance(body, dict)]
    out["no_token"] = no_token


async def main() -> None:
    url = os.environ["INTEROP_URL"]
    token = os.environ["INTEROP_TOKEN"]
    mode = os.environ.get("INTEROP_MODE", "legacy")
    out: dict[str, Any] = {
        "sdk": "mcp (Python)",
        "sdk_version": importlib.metadata.version("mcp"),
        "python": sys.version.split()[0],
        "mode": mode,
    }
    await with_token(url, token, mode, out)
    await without_token(url, mode, out)
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
