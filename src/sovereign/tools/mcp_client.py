"""Mount the tools of MCP servers (stdio or streamable HTTP) named in the config as our ``Tool``s.

Config (in ``$SOVEREIGN_HOME/config.toml``)::

    [[mcp_servers]]
    name = "files"
    command = "npx"
    args = ["-y", "@modelcontextprotocol/server-filesystem", "/data"]

    [[mcp_servers]]
    name = "search"
    url = "http://127.0.0.1:9000/mcp"
    trusted = true                                  # its tools skip approval
    effects = { leaves_machine = false }            # every tool of this server
    tools.lookup = { acts_on_world = false }        # one tool (by the server's own name)

A mounted tool is named ``<server>__<tool>``. Its effects start conservative — reads untrusted
content, acts on the world, leaves the machine, needs approval (no approval for a ``trusted``
server) — then the server's ``effects`` and the tool's entry under ``tools`` override field by
field. HTTP connections pass the egress gate (loopback is always allowed).
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import sys
import tomllib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jsonschema
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sovereign.config import resolve_home
from sovereign.errors import ConfigError, EgressDeniedError
from sovereign.governance.egress import EgressGate
from sovereign.tools.base import Effects, Tool, ToolArgumentError, ToolError

__all__ = ["EffectsConfig", "MCPServerConfig", "MCPTool", "MCPMount", "load_mcp_servers", "mount_configured",
           "parse_mcp_servers"]

log = logging.getLogger(__name__)
_NAME = r"^[A-Za-z0-9_-]{1,32}$"


class EffectsConfig(BaseModel):
    """Effects overrides for MCP tools; a field left out keeps the value beneath it."""

    model_config = ConfigDict(extra="forbid")

    reads_untrusted: bool | None = None
    acts_on_world: bool | None = None
    leaves_machine: bool | None = None
    needs_approval: bool | None = None

    def apply(self, effects: Effects) -> Effects:
        return replace(effects, **self.model_dump(exclude_none=True))


class MCPServerConfig(BaseModel):
    """One ``[[mcp_servers]]`` entry: a command to spawn (stdio) or a URL (streamable HTTP)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_NAME, description="prefix of the mounted tool names")
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: Path | None = None
    url: str | None = None
    trusted: bool = Field(default=False, description="trusted servers' tools skip approval")
    timeout: float = Field(default=60.0, gt=0, description="seconds to wait for each reply")
    effects: EffectsConfig = Field(default_factory=EffectsConfig, description="overrides for all its tools")
    tools: dict[str, EffectsConfig] = Field(default_factory=dict, description="overrides per tool (server's name)")

    def effects_for(self, remote_name: str) -> Effects:
        """Conservative by default, then the server's overrides, then the tool's."""
        base = Effects(reads_untrusted=True, source="mcp", acts_on_world=True, leaves_machine=True,
                       needs_approval=not self.trusted)
        effects = self.effects.apply(base)
        override = self.tools.get(remote_name)
        return override.apply(effects) if override is not None else effects

    @model_validator(mode="after")
    def _one_transport(self) -> MCPServerConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("set exactly one of 'command' (stdio) or 'url' (streamable HTTP)")
        if self.url is not None and not re.match(r"^https?://", self.url):
            raise ValueError("'url' must start with http:// or https://")
        return self


def parse_mcp_servers(data: dict[str, Any], source: str = "config") -> list[MCPServerConfig]:
    """The ``mcp_servers`` entries of a parsed config; raises ``ConfigError`` naming bad fields."""
    entries = data.get("mcp_servers", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{source}: 'mcp_servers' must be an array of tables ([[mcp_servers]])")
    servers: list[MCPServerConfig] = []
    for index, entry in enumerate(entries):
        try:
            servers.append(MCPServerConfig.model_validate(entry))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(entry)'}: {e['msg']}" for e in exc.errors()
            )
            raise ConfigError(f"{source}: mcp_servers[{index}]: {problems}") from exc
    names = [s.name for s in servers]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{source}: mcp_servers names must be unique; repeated: {', '.join(duplicates)}")
    return servers


def load_mcp_servers(home: Path | str | None = None) -> list[MCPServerConfig]:
    """The MCP servers named in ``$SOVEREIGN_HOME/config.toml`` (none if the file is absent)."""
    path = resolve_home(home) / "config.toml"
    if not path.exists():
        return []
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    return parse_mcp_servers(data, str(path))


@dataclass
class MCPTool(Tool):
    """A tool served by an MCP server; arguments are checked against its JSON schema."""

    server: str = ""
    remote_name: str = ""

    def validate(self, arguments: str | dict[str, Any]) -> dict[str, Any]:
        values = super().validate(arguments)
        try:
            jsonschema.validate(values, self.parameters)
        except jsonschema.ValidationError as exc:
            where = ".".join(str(p) for p in exc.absolute_path) or "(arguments)"
            raise ToolArgumentError(f"invalid arguments for '{self.name}': {where}: {exc.message}") from exc
        except jsonschema.SchemaError:
            pass  # the server's schema is broken; let the server judge the arguments
        return values


def _sole(group: BaseExceptionGroup) -> BaseException | None:
    """The one exception inside (nested) groups, or None when there are several."""
    leaves = list(group.exceptions)
    while len(leaves) == 1 and isinstance(leaves[0], BaseExceptionGroup):
        leaves = list(leaves[0].exceptions)
    return leaves[0] if len(leaves) == 1 else None


def _result_text(result: Any) -> str:
    parts: list[str] = []
    for block in result.content:
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(block.text)
        elif kind == "resource" and hasattr(block.resource, "text"):
            parts.append(block.resource.text)
        else:
            parts.append(f"[{kind} content]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content))
    return "\n".join(parts)


def _http_client(egress: EgressGate, purpose: str) -> Any:
    """An httpx2 client (what the MCP SDK speaks) whose every request passes the egress gate."""
    import httpx2

    async def gate(request: httpx2.Request) -> None:
        egress.check(str(request.url), purpose=purpose)

    return httpx2.AsyncClient(
        timeout=httpx2.Timeout(30.0, read=300.0), event_hooks={"request": [gate]}, trust_env=False
    )


@dataclass
class MCPMount:
    """Connects to MCP servers and exposes their tools; use as ``async with``.

    A server that cannot be reached is left out, and why is kept in ``errors``.
    """

    servers: list[MCPServerConfig]
    egress: EgressGate = field(default_factory=EgressGate)
    tools: list[Tool] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    _stack: AsyncExitStack | None = None

    async def __aenter__(self) -> MCPMount:
        self._stack = AsyncExitStack()
        await self._stack.__aenter__()
        for server in self.servers:
            try:
                self.tools += await self._mount(server)
            except EgressDeniedError as exc:
                self.errors[server.name] = exc.message
            except Exception as exc:  # a broken server must not take the others down
                self.errors[server.name] = f"{type(exc).__name__}: {exc}"
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._stack is None:
            return
        stack, self._stack = self._stack, None
        try:
            await stack.__aexit__(*exc_info)
        except BaseExceptionGroup as group:
            # The SDK's task groups wrap an error raised inside ``async with``: give the caller theirs.
            leaf = _sole(group)
            if leaf is None:
                raise
            raise leaf from None

    async def _connect(self, server: MCPServerConfig) -> Any:
        from mcp import Client, StdioServerParameters
        from mcp.client.stdio import stdio_client
        from mcp.client.streamable_http import streamable_http_client

        assert self._stack is not None
        if server.url is not None:
            purpose = f"mcp:{server.name}"
            self.egress.check(server.url, purpose=purpose)
            http = await self._stack.enter_async_context(_http_client(self.egress, purpose))
            target: Any = streamable_http_client(server.url, http_client=http)
        else:
            params = StdioServerParameters(
                command=server.command or "", args=server.args, env=server.env or None,
                cwd=str(server.cwd) if server.cwd else None,
            )
            target = stdio_client(params, errlog=self._errlog())
        # Entered one at a time: a failure leaves no half-open connection behind.
        inner = AsyncExitStack()
        await inner.__aenter__()
        try:
            client = await inner.enter_async_context(Client(target, read_timeout_seconds=server.timeout))
        except BaseException:
            await inner.aclose()
            raise
        self._stack.push_async_exit(inner)
        return client

    def _errlog(self) -> Any:
        """Where a stdio server's stderr goes: ours when it is a real file, else nowhere (an
        embedding application, or a test runner, may have replaced ``sys.stderr``)."""
        try:
            sys.stderr.fileno()
            return sys.stderr
        except (AttributeError, OSError, io.UnsupportedOperation):
            assert self._stack is not None
            return self._stack.enter_context(open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115

    async def _mount(self, server: MCPServerConfig) -> list[Tool]:
        client = await self._connect(server)
        listed, cursor = [], None
        while True:
            page = await client.list_tools(cursor=cursor)
            listed += page.tools
            cursor = page.next_cursor
            if not cursor:
                break
        unknown = sorted(set(server.tools) - {remote.name for remote in listed})
        if unknown:
            log.warning("mcp_servers '%s': effects given for tools the server does not list: %s",
                        server.name, ", ".join(unknown))
        return [self._wrap(client, server, remote) for remote in listed]

    @staticmethod
    def _wrap(client: Any, server: MCPServerConfig, remote: Any) -> MCPTool:
        remote_name = remote.name

        async def call(**arguments: Any) -> str:
            result = await client.call_tool(remote_name, arguments)
            text = _result_text(result)
            if result.is_error:
                raise ToolError(f"MCP tool '{server.name}/{remote_name}' failed: {text}")
            return text

        schema = dict(remote.input_schema or {})
        schema.setdefault("type", "object")
        schema.setdefault("properties", {})
        name = re.sub(r"[^A-Za-z0-9_-]", "_", f"{server.name}__{remote_name}")[:64]
        return MCPTool(
            name=name,
            description=remote.description or f"{remote_name} (from MCP server '{server.name}')",
            parameters=schema,
            function=call,
            effects=server.effects_for(remote_name),
            timeout=server.timeout,
            server=server.name,
            remote_name=remote_name,
        )


@asynccontextmanager
async def mount_configured(services: Any) -> AsyncIterator[MCPMount]:
    """Mount the ``[[mcp_servers]]`` of ``services.settings`` for the duration (an interface's
    lifetime); their tools are ``services.mounted_tools``, which the tool resolver offers by name.

    A bad entry raises ``ConfigError`` naming the field; a server that cannot be reached is
    logged and left out."""
    settings = services.settings
    servers = parse_mcp_servers({"mcp_servers": settings.mcp_servers}, str(settings.config_path))
    if not servers:
        yield MCPMount([], services.egress)
        return
    async with MCPMount(servers, services.egress) as mount:
        for name, why in mount.errors.items():
            log.warning("MCP server '%s' not mounted: %s", name, why)
        services.mounted_tools = list(mount.tools)
        try:
            yield mount
        finally:
            services.mounted_tools = []
