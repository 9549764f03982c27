"""Tools: typed Python functions the agent may call, built-ins, and MCP-mounted tools."""

from sovereign.tools.base import PURE, Effects, Tool, ToolArgumentError, ToolContext, ToolError, tool
from sovereign.tools.builtins import builtin_tools

__all__ = ["PURE", "Effects", "Tool", "ToolArgumentError", "ToolContext", "ToolError", "builtin_tools", "tool"]
