"""``sovereign mcp ...`` (serve the OS over MCP, list configured servers' tools) and
``sovereign approvals ...`` (list, approve, deny risky tool calls waiting for a human)."""

from __future__ import annotations

import getpass
import json
import os

import typer
from rich.table import Table

from sovereign.cli.common import console, friendly_errors, run

__all__ = ["mcp_app", "approvals_app"]

mcp_app = typer.Typer(help="MCP: serve the OS as an MCP server; inspect configured MCP servers.",
                      no_args_is_help=True)
approvals_app = typer.Typer(help="Risky tool calls waiting for a human decision.", no_args_is_help=True)


# --- mcp -----------------------------------------------------------------------------------


@mcp_app.command("serve")
@friendly_errors
def mcp_serve(
    http: int | None = typer.Option(None, "--http", metavar="PORT",
                                    help="serve streamable HTTP on HOST:PORT/mcp instead of stdio; every request "
                                         "then needs an API key (Authorization: Bearer, see `sovereign keys create`)"),
    host: str = typer.Option("127.0.0.1", help="bind address for --http"),
    owner: str = typer.Option(None, help="stdio only: the identity (name or id) the server acts as; "
                                         "default the local admin (over HTTP the key decides)"),
) -> None:
    """Expose the OS (chat, run an agent, search memory) as an MCP server: stdio by default (local,
    trusted), or key-checked streamable HTTP with --http, where each call acts as the key's identity."""
    from sovereign.tools.mcp_server import serve

    serve(http_port=http, host=host, owner=owner)


@mcp_app.command("list")
@friendly_errors
def mcp_list() -> None:
    """Connect to each \\[\\[mcp_servers]] entry in config.toml and list the tools it offers."""
    from sovereign.config import load_settings
    from sovereign.governance.egress import EgressGate
    from sovereign.tools.mcp_client import MCPMount, load_mcp_servers

    settings = load_settings()
    servers = load_mcp_servers(settings.home)
    if not servers:
        console.print("no MCP servers configured (add [[mcp_servers]] entries to config.toml)")
        return
    gate = EgressGate(mode=settings.egress.mode, allow_hosts=list(settings.egress.allow_hosts))

    async def collect() -> MCPMount:
        async with MCPMount(servers, gate) as mount:
            return mount

    mount = run(collect())
    table = Table("tool", "approval", "description")
    for item in mount.tools:
        table.add_row(item.name, "needs approval" if item.needs_approval else "trusted", item.description)
    console.print(table)
    for name, error in mount.errors.items():
        console.print(f"[red]{name}[/]: {error}")


# --- approvals -------------------------------------------------------------------------------


def _who() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"cli:uid-{os.getuid()}"


def _queue():
    from sovereign.config import load_settings
    from sovereign.store import Database
    from sovereign.tools.approvals import ApprovalQueue

    return ApprovalQueue(Database(load_settings().database_path))


@approvals_app.command("list")
@friendly_errors
def approvals_list(
    all_: bool = typer.Option(False, "--all", help="include decided requests"),
    as_json: bool = typer.Option(False, "--json", help="print JSON lines"),
) -> None:
    """List approval requests (pending ones unless --all)."""
    items = _queue().list(None if all_ else "pending")
    if as_json:
        for item in items:
            console.print_json(json.dumps(item.to_dict()))
        return
    if not items:
        console.print("no pending approvals" if not all_ else "no approvals")
        return
    table = Table("id", "status", "run", "tool", "arguments", "created")
    for item in items:
        table.add_row(item.id, item.status, item.run_id, item.tool_name, item.arguments[:80], item.created_at)
    console.print(table)


@approvals_app.command("approve")
@friendly_errors
def approvals_approve(approval_id: str, reason: str | None = typer.Option(None, help="why")) -> None:
    """Approve a pending request; the waiting run continues."""
    item = _queue().approve(approval_id, decided_by=_who(), reason=reason)
    console.print(f"approved {item.id} ({item.tool_name} in run {item.run_id})")


@approvals_app.command("deny")
@friendly_errors
def approvals_deny(approval_id: str, reason: str | None = typer.Option(None, help="why")) -> None:
    """Deny a pending request; the waiting run is told the call was refused."""
    item = _queue().deny(approval_id, decided_by=_who(), reason=reason)
    console.print(f"denied {item.id} ({item.tool_name} in run {item.run_id})")
