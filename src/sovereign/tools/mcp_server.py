"""``sovereign mcp serve``: the OS as an MCP server (stdio, or streamable HTTP on loopback).

Tools offered, each only when the layer behind it is importable:

- ``chat`` — one completion from a model in the registry (always);
- ``list_models`` — the models the OS knows (always);
- ``run_agent`` — run a configured agent on a task (``sovereign.agent``); risky tool calls
  inside the run wait in the approvals queue (``sovereign approvals``);
- ``search_memory`` — hybrid search over an owner's memory (``sovereign.memory``).

Run ``python -m sovereign.tools.mcp_server [--http PORT]``.
"""

from __future__ import annotations

import argparse
import importlib
import json
from collections.abc import Callable
from typing import Any

from mcp.server.mcpserver import MCPServer

from sovereign.governance.keys import Principal
from sovereign.kernel.messages import ChatRequest, Message
from sovereign.services import Services
from sovereign.tools.approvals import ApprovalQueue

__all__ = ["build_server", "available_tools", "main"]


def _optional(module: str, *names: str) -> tuple[Any, ...] | None:
    """The named attributes of ``module``, or None if it (or any of them) is missing."""
    try:
        loaded = importlib.import_module(module)
    except ImportError:
        return None
    found = tuple(getattr(loaded, name, None) for name in names)
    return None if any(item is None for item in found) else found


def _chat_tools(services: Services, principal: Principal) -> list[Callable[..., Any]]:
    async def chat(prompt: str, model: str | None = None, system: str | None = None,
                   max_tokens: int = 512) -> str:
        """Ask a model of the sovereign OS for one completion (default model unless named)."""
        backend = await services.governed_model(principal, model)
        messages = [Message(role="system", content=system)] if system else []
        messages.append(Message(role="user", content=prompt))
        response = await backend.complete(ChatRequest(model=backend.name, messages=messages, max_tokens=max_tokens))
        return response.message.content or ""

    def list_models() -> str:
        """The models the sovereign OS knows, one JSON object per line (name, tier, local or remote)."""
        return "\n".join(
            json.dumps({"name": spec.name, "tier": spec.tier, "local": spec.is_local,
                        "context_size": spec.context_size})
            for spec in services.registry
        )

    return [chat, list_models]


def _agent_tool(services: Services, approvals: ApprovalQueue, principal: Principal) -> Callable[..., Any] | None:
    found = _optional("sovereign.agent", "Runner")
    config = _optional("sovereign.agent.agent", "agent_config")
    if found is None or config is None:
        return None
    (runner_class,), (agent_config,) = found, config

    async def run_agent(task: str, agent: str | None = None) -> str:
        """Run an agent of the sovereign OS on a task and return its answer.

        Risky tool calls inside the run wait for a human in `sovereign approvals`.
        """
        definition = agent_config(agent, services.settings.home).build()
        runner = runner_class(services=services, approver=approvals,
                              workspace=services.settings.home / "workspace")
        result = await runner.run(definition, task, principal=principal)
        answer = result.answer or ""
        return answer if result.ok else f"[run {result.run_id} stopped: {result.stop_reason}] {answer}"

    return run_agent


def _memory_tool(services: Services, owner: str) -> Callable[..., Any] | None:
    found = _optional("sovereign.memory", "MemoryStore")
    if found is None:
        return None
    (store_class,) = found
    opened: list[Any] = []

    def search_memory(query: str, k: int = 5, agent: str | None = None) -> str:
        """Search the owner's long-term memory; returns the best matches, one JSON object per line."""
        if not opened:
            opened.append(store_class.open(services.db, services.settings.home))
        hits = opened[0].search(owner, query, agent=agent, k=k)
        return "\n".join(
            json.dumps({"id": h.item.id, "content": h.item.content, "kind": h.item.kind,
                        "agent": h.item.agent, "score": round(h.score, 4)})
            for h in hits
        ) or "no memories match"

    return search_memory


def _principal(services: Services, owner: str | None) -> Principal:
    """Who the server acts as: the local admin, or the identity named (or id'd) by ``owner``."""
    return services.keys.local_principal() if owner is None else services.keys.principal_for(owner)


def available_tools(services: Services, *, owner: str | None = None) -> list[Callable[..., Any]]:
    """The functions ``build_server`` exposes, given what is importable right now; they act as
    ``owner`` (an identity name or id; default the local admin): chats and runs take the governed
    path as that identity, and ``search_memory`` reads its memory."""
    principal = _principal(services, owner)
    tools = _chat_tools(services, principal)
    extras = (_agent_tool(services, ApprovalQueue(services.db), principal),
              _memory_tool(services, principal.identity_id))
    for extra in extras:
        if extra is not None:
            tools.append(extra)
    return tools


def build_server(services: Services, *, owner: str | None = None) -> MCPServer:
    """An MCP server exposing the OS, acting as ``owner`` (default: the local admin)."""
    server = MCPServer(
        "sovereign",
        instructions="A local-first thinking-model OS: chat with its models, run its agents, search memory.",
    )
    for function in available_tools(services, owner=owner):
        server.add_tool(function, structured_output=False)
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="sovereign mcp serve", description=__doc__.splitlines()[0])
    parser.add_argument("--http", type=int, metavar="PORT", help="serve streamable HTTP on 127.0.0.1:PORT/mcp")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--owner", default=None,
                        help="the identity (name or id) the server acts as; default the local admin")
    args = parser.parse_args(argv)
    serve(http_port=args.http, host=args.host, owner=args.owner)


def serve(*, http_port: int | None = None, host: str = "127.0.0.1", owner: str | None = None) -> None:
    """Open the OS and serve it over stdio (default) or streamable HTTP until stopped."""
    services = Services.open()
    try:
        server = build_server(services, owner=owner)
        if http_port is None:
            server.run("stdio")
        else:
            server.run("streamable-http", host=host, port=http_port)
    finally:
        services.close()


if __name__ == "__main__":
    main()
