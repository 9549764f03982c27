"""The one interface every chat channel implements (IRC today; Matrix or Slack can follow), and
the message it hands to the agent side.

A ``Channel`` keeps itself connected and calls its handler with each ``Incoming`` message
addressed to the agent (a mention in a room, or a direct message); the handler answers through
``reply`` and reaches a person directly with ``notify``. Everything about agents, governance and
approvals lives in ``bridge.ChannelAgent``, which works with any ``Channel``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["Channel", "Handler", "Incoming"]


@dataclass(frozen=True, slots=True)
class Incoming:
    """One message addressed to the agent."""

    channel: str
    """The channel (network) it came through, by its configured name."""
    sender: str
    """Who sent it, as others see them (an IRC nick)."""
    sender_id: str
    """The sender's full identity on the network, matched by allowlists and rules
    (IRC: ``nick!user@host``)."""
    room: str | None
    """Where it was said (``#channel``); None for a direct message."""
    text: str
    """The message, without the mention of the agent."""

    @property
    def direct(self) -> bool:
        return self.room is None

    @property
    def reply_to(self) -> str:
        """Where an answer goes: the room, or the sender of a direct message."""
        return self.room or self.sender


Handler = Callable[[Incoming], Awaitable[None]]


@runtime_checkable
class Channel(Protocol):
    name: str

    async def run(self, handler: Handler) -> None:
        """Connect, stay connected (reconnecting with back-off) and call ``handler`` for every
        addressed message, until cancelled."""
        ...

    async def reply(self, message: Incoming, text: str, *, max_lines: int | None = None) -> int:
        """Answer ``message`` where it was said; long text is split and paced. Returns the
        number of lines queued."""
        ...

    async def notify(self, person: str, text: str) -> None:
        """A direct message to ``person`` (approval requests to an owner)."""
        ...
