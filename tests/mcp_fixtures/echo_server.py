"""A tiny MCP server (the official SDK's ``MCPServer``, FastMCP's successor) for the MCP tests.

Run ``python echo_server.py`` for stdio, or ``python echo_server.py http PORT`` for streamable
HTTP on 127.0.0.1:PORT/mcp.
"""

from __future__ import annotations

import sys

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("echo-fixture")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def shout(text: str) -> str:
    """Return the text in upper case."""
    return text.upper()


@server.tool()
def fail(reason: str) -> str:
    """Always fails with the given reason."""
    raise ToolError(reason)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]), stateless_http=False)
    else:
        server.run()
