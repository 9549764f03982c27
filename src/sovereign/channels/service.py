"""Starting the configured channels: ``sovereign channels run`` and ``sovereign serve`` both use
``channels_running`` (every ``[[channels.irc]]`` entry, each with its ``ChannelAgent``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from sovereign.channels.bridge import ChannelAgent
from sovereign.channels.config import irc_configs
from sovereign.channels.irc import IrcChannel

if TYPE_CHECKING:
    from sovereign.services import Services

__all__ = ["build_channels", "channels_running", "run_channels"]

log = logging.getLogger("sovereign.channels")


def build_channels(services: Services) -> list[tuple[IrcChannel, ChannelAgent]]:
    """A channel and its agent per configured entry (identities and caps set up now)."""
    built = []
    for config in irc_configs(services.settings.channels):
        channel = IrcChannel(config, services.egress)
        built.append((channel, ChannelAgent(services, channel, config)))
    return built


async def run_channels(built: list[tuple[IrcChannel, ChannelAgent]]) -> None:
    """Run every channel until cancelled; one that fails for good (bad SASL credentials) is
    logged and the others go on."""

    async def one(channel: IrcChannel, agent: ChannelAgent) -> None:
        try:
            await channel.run(agent.handle)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("channel %s stopped", channel.name)

    await asyncio.gather(*(one(c, a) for c, a in built))


@asynccontextmanager
async def channels_running(services: Services) -> AsyncIterator[list[tuple[IrcChannel, ChannelAgent]]]:
    """The configured channels, running in the background while the block runs."""
    built = build_channels(services)
    if not built:
        yield built
        return
    task = asyncio.ensure_future(run_channels(built))
    try:
        yield built
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
