"""``sovereign channels``: list the configured chat channels, and run them (``sovereign serve``
runs them too, beside the API)."""

from __future__ import annotations

import asyncio
import logging

import typer
from rich.table import Table

from sovereign.cli.common import console, friendly_errors, open_services

app = typer.Typer(help="Chat channels (\\[\\[channels.irc]] in config.toml).", no_args_is_help=True)


@app.command("list")
@friendly_errors
def list_channels() -> None:
    """The configured channels: network, channels, agent identity, allowlist."""
    from sovereign.channels.config import irc_configs

    services = open_services()
    try:
        configs = irc_configs(services.settings.channels)
    finally:
        services.close()
    table = Table("name", "server", "nick", "channels", "identity", "public", "daily cap", "allow")
    for c in configs:
        table.add_row(c.name, f"{c.host}:{c.port}{' tls' if c.tls else ''}", c.nick, " ".join(c.channels),
                      c.identity_name, "yes" if c.public else "no",
                      "-" if c.daily_cap_usd is None else f"${c.daily_cap_usd:g}", " ".join(c.allow))
    console.print(table)


@app.command("run")
@friendly_errors
def run_channels_command() -> None:
    """Connect every configured channel and answer until Ctrl-C."""
    from sovereign.channels.service import build_channels, run_channels
    from sovereign.tools.mcp_client import mount_configured

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    services = open_services()

    async def go() -> None:
        async with mount_configured(services):
            built = build_channels(services)
            if not built:
                console.print("no channels configured: add a [[channels.irc]] table to config.toml")
                return
            console.print(f"running {len(built)} channel(s): {', '.join(c.name for c, _ in built)}")
            await run_channels(built)

    try:
        asyncio.run(go())
    except KeyboardInterrupt:
        pass
    finally:
        services.close()
