"""Chat channels: the agent on IRC (Matrix or Slack can follow behind the same ``Channel``
interface). ``base`` is the interface, ``irc`` the IRC client, ``bridge`` what the agent does with
messages (allowlists, tool rules, runs on the governed path, approvals), ``service`` starts the
configured ones."""

from sovereign.channels.base import Channel, Incoming

__all__ = ["Channel", "Incoming"]
