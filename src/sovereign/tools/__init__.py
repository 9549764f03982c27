"""Tools: typed Python functions the agent may call, built-ins, and MCP-mounted tools."""

from sovereign.tools.base import Tool, ToolArgumentError, ToolContext, tool

__all__ = ["Tool", "ToolArgumentError", "ToolContext", "tool"]
