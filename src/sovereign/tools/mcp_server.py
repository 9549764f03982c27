"""``sovereign mcp serve``: the OS as an MCP server (stdio, or streamable HTTP on loopback).

Tools offered, each only when the layer behind it is importable:

- ``chat`` — one completion from a model in the registry (always);
- ``list_models`` — the models the OS knows (always);
- ``run_agent`` — run a configured agent on a task (``sovereign.agent``); risky tool calls
  inside the run wait in the approvals queue (``sovereign approvals``);
- ``search_memory`` — hybrid search over an owner's memory (``sovereign.memory``).

Over stdio the server is local and trusted: it acts as the local admin (or ``--owner``). Over
HTTP every request needs an API key of the OS (``Authorization: Bearer``, the same ``KeyStore``
as the HTTP API; 401 otherwise), and each tool call acts as that key's identity, within its
scopes — unless ``[server] require_api_key = false``, which opens it as the local admin.

Run ``python -m sovereign.tools.mcp_server [--http PORT]``.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import inspect
import json
from collections.abc import Callable
from typing import Any

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from sovereign.errors import AuthenticationError, SovereignError, UserError
from sovereign.governance.authz import can
from sovereign.governance.keys import KeyStore, Principal
from sovereign.kernel.messages import ChatRequest, Message
from sovereign.services import Services
from sovereign.tools.approvals import ApprovalQueue

__all__ = ["build_server", "available_tools", "main", "KeyVerifier"]

Caller = Callable[[], Principal]


def _optional(module: str, *names: str) -> tuple[Any, ...] | None:
    """The named attributes of ``module``, or None if it (or any of them) is missing."""
    try:
        loaded = importlib.import_module(module)
    except ImportError:
        return None
    found = tuple(getattr(loaded, name, None) for name in names)
    return None if any(item is None for item in found) else found


def _chat_tools(services: Services, caller: Caller) -> list[Callable[..., Any]]:
    async def chat(prompt: str, model: str | None = None, system: str | None = None,
                   max_tokens: int = 512) -> str:
        """Ask a model of the sovereign OS for one completion (default model unless named)."""
        backend = await services.governed_model(caller(), model)
        messages = [Message(role="system", content=system)] if system else []
        messages.append(Message(role="user", content=prompt))
        response = await backend.complete(ChatRequest(model=backend.name, messages=messages, max_tokens=max_tokens))
        return response.message.content or ""

    def list_models() -> str:
        """The models of the sovereign OS the caller may use, one JSON object per line (name, tier, local or remote)."""
        principal = caller()
        return "\n".join(
            json.dumps({"name": spec.name, "tier": spec.tier, "local": spec.is_local,
                        "context_size": spec.context_size})
            for spec in services.registry if can(principal, model=spec.name, action="read")
        )

    return [chat, list_models]


def _agent_tool(services: Services, approvals: ApprovalQueue, caller: Caller) -> Callable[..., Any] | None:
    found = _optional("sovereign.agent", "Runner")
    config = _optional("sovereign.agent.agent", "agent_config", "builtin_resolver")
    if found is None or config is None:
        return None
    (runner_class,), (agent_config, resolver) = found, config

    async def run_agent(task: str, agent: str | None = None) -> str:
        """Run an agent of the sovereign OS on a task and return its answer.

        Risky tool calls inside the run wait for a human in `sovereign approvals`.
        """
        definition = agent_config(agent, services.settings.home).build(resolver(services))
        runner = runner_class(services=services, approver=approvals,
                              workspace=services.settings.home / "workspace")
        result = await runner.run(definition, task, principal=caller())
        answer = result.answer or ""
        return answer if result.ok else f"[run {result.run_id} stopped: {result.stop_reason}] {answer}"

    return run_agent


def _memory_tool(services: Services, caller: Caller) -> Callable[..., Any] | None:
    found = _optional("sovereign.memory", "MemoryStore")
    if found is None:
        return None
    (store_class,) = found
    opened: list[Any] = []

    def search_memory(query: str, k: int = 5, agent: str | None = None) -> str:
        """Search the owner's long-term memory; returns the best matches, one JSON object per line."""
        if not opened:
            opened.append(store_class.open(services.db, services.settings.home))
        hits = opened[0].search(caller().identity_id, query, agent=agent, k=k)
        return "\n".join(
            json.dumps({"id": h.item.id, "content": h.item.content, "kind": h.item.kind,
                        "agent": h.item.agent, "score": round(h.score, 4)})
            for h in hits
        ) or "no memories match"

    return search_memory


def _principal(services: Services, owner: str | None) -> Principal:
    """Who the server acts as: the local admin, or the identity named (or id'd) by ``owner``."""
    return services.keys.local_principal() if owner is None else services.keys.principal_for(owner)


def _reported(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` whose deliberate errors (scope refused, cap reached, unknown model...) reach the
    MCP client with their message; the SDK would mask them as a crash."""
    if inspect.iscoroutinefunction(function):
        @functools.wraps(function)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await function(*args, **kwargs)
            except SovereignError as exc:
                raise ToolError(exc.message) from exc
    else:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return function(*args, **kwargs)
            except SovereignError as exc:
                raise ToolError(exc.message) from exc
    return wrapper


class KeyVerifier:
    """The MCP SDK's bearer-token check, answered by the OS's ``KeyStore`` (the API's keys)."""

    def __init__(self, keys: KeyStore) -> None:
        self.keys = keys

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            principal = self.keys.authenticate(token)  # revoked, expired and unknown keys refused (audited)
        except AuthenticationError:
            return None
        return AccessToken(token=token, client_id=principal.key_id, scopes=[], subject=principal.identity_id)


def _keyed_caller(keys: KeyStore, fallback: Principal | None) -> Caller:
    """The principal of the current call: the key's (over HTTP), else ``fallback`` (stdio)."""

    def caller() -> Principal:
        token = get_access_token()
        if token is not None:
            return keys.authenticate(token.token)  # re-checked per call: a revoked key stops at once
        if fallback is None:
            raise AuthenticationError("this MCP server needs an API key: send 'Authorization: Bearer <key>'",
                                      code="missing_api_key")
        return fallback

    return caller


def available_tools(services: Services, *, owner: str | None = None,
                    caller: Caller | None = None) -> list[Callable[..., Any]]:
    """The functions ``build_server`` exposes, given what is importable right now. Each call acts
    as ``caller()`` — by default ``owner`` (an identity name or id; default the local admin):
    chats and runs take the governed path as that identity, and ``search_memory`` reads its memory."""
    if caller is None:
        principal = _principal(services, owner)
        caller = lambda: principal  # noqa: E731 - a fixed principal
    tools = _chat_tools(services, caller)
    extras = (_agent_tool(services, ApprovalQueue(services.db), caller), _memory_tool(services, caller))
    for extra in extras:
        if extra is not None:
            tools.append(extra)
    return tools


def build_server(services: Services, *, owner: str | None = None, require_key: bool = False,
                 url: str = "http://127.0.0.1") -> MCPServer:
    """An MCP server exposing the OS. Without ``require_key`` (stdio, in-process) it acts as
    ``owner`` (default: the local admin); with it (HTTP) every request needs an API key and each
    call acts as the key's identity. ``url`` is where it is served (named in its auth metadata)."""
    keyed = require_key and services.settings.server.require_api_key
    if keyed and owner is not None:
        raise UserError("--owner applies to stdio only: over HTTP each API key says who the caller is")
    auth = {}
    if keyed:
        auth = {"token_verifier": KeyVerifier(services.keys),
                "auth": AuthSettings(issuer_url=url, resource_server_url=None)}
    server = MCPServer(
        "sovereign",
        instructions="A local-first thinking-model OS: chat with its models, run its agents, search memory.",
        **auth,
    )
    caller = _keyed_caller(services.keys, None) if keyed else None
    for function in available_tools(services, owner=owner, caller=caller):
        server.add_tool(_reported(function), structured_output=False)
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="sovereign mcp serve", description=__doc__.splitlines()[0])
    parser.add_argument("--http", type=int, metavar="PORT",
                        help="serve streamable HTTP on HOST:PORT/mcp (every request needs an API key)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--owner", default=None,
                        help="stdio only: the identity (name or id) the server acts as; default the local admin")
    args = parser.parse_args(argv)
    serve(http_port=args.http, host=args.host, owner=args.owner)


def serve(*, http_port: int | None = None, host: str = "127.0.0.1", owner: str | None = None) -> None:
    """Open the OS and serve it over stdio (default, trusted) or key-checked streamable HTTP."""
    services = Services.open()
    try:
        if http_port is None:
            build_server(services, owner=owner).run("stdio")
        else:
            where = f"[{host}]" if ":" in host else host
            server = build_server(services, owner=owner, require_key=True, url=f"http://{where}:{http_port}")
            server.run("streamable-http", host=host, port=http_port)
    finally:
        services.close()


if __name__ == "__main__":
    main()
