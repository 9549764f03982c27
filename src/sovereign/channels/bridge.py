"""``ChannelAgent``: what an agent does with the messages a ``Channel`` hands it.

- Who may talk to it: senders matching ``allow`` (globs over the sender id, ``nick!user@host``
  on IRC) and the owner; anyone else is ignored (and logged).
- What each sender's runs may use: the agent's tools narrowed by the first ``tool_rules`` entry
  matching the sender (``default_tools`` otherwise), then by visibility: the channel's agent
  identity is public unless configured otherwise, so the runtime gives it only what its owner
  exposed — never private memory, knowledge or tools (``governance/visibility.py``).
- How it answers: an ordinary run through the ``Runner`` as the channel's agent identity, so
  every model and tool call takes the governed path (key-less principal, the identity's own
  daily cap, the owner's caps, ledger, audit); the answer goes back where it was asked.
- Approvals: a tool that needs approval waits in the ``ApprovalQueue``; the owner is told in a
  direct message and answers ``!approve ID`` / ``!deny ID`` there. Only senders matching
  ``owner_hostmasks`` may decide, and only approvals of the owner's own runs or of agents the
  owner owns.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import TYPE_CHECKING, Any

from sovereign.agent import Runner
from sovereign.agent.agent import AgentConfig, agent_config, builtin_resolver
from sovereign.channels.base import Channel, Incoming
from sovereign.channels.config import IrcConfig
from sovereign.channels.irc_lines import hostmask_matches
from sovereign.errors import ConfigError, NotFoundError, SovereignError
from sovereign.tools.approvals import ApprovalQueue

if TYPE_CHECKING:
    from sovereign.services import Services

__all__ = ["ChannelAgent", "ensure_channel_identity"]

log = logging.getLogger("sovereign.channels")
ACTOR = "channels"


def ensure_channel_identity(services: Services, config: IrcConfig) -> dict[str, Any]:
    """The channel's agent identity (created on first start), owned by ``config.owner`` (default:
    the local admin), public as configured, with its own daily cap."""
    keys = services.keys
    try:
        owner = keys.identity(config.owner) if config.owner else keys.identity(keys.ensure_admin())
    except NotFoundError as exc:
        raise ConfigError(f"channels.irc '{config.name}': owner '{config.owner}' is not an identity") from exc
    name = config.identity_name
    try:
        row = keys.identity(name)
    except NotFoundError:
        keys.create_identity(name, kind="agent", role="operator", owner=owner["id"], public=config.public, actor=ACTOR)
        row = keys.identity(name)
    if row["kind"] != "agent" or row["owner_id"] != owner["id"]:
        raise ConfigError(f"channels.irc '{config.name}': identity '{name}' exists and is not an agent of "
                          f"'{owner['name']}'; name another with `identity`")
    if bool(row["public"]) != config.public:
        row = keys.update_identity(name, public=config.public, actor=ACTOR)
    if config.daily_cap_usd is not None:
        current = [c for c in services.spend.caps() if (c.scope, c.subject, c.period) == ("agent", row["id"], "day")]
        if not current or current[0].max_usd != config.daily_cap_usd:
            services.spend.set_cap("agent", row["id"], "day", max_usd=config.daily_cap_usd, actor=ACTOR)
    return row


class ChannelAgent:
    """Answers a channel's messages with agent runs (see the module docstring)."""

    def __init__(self, services: Services, channel: Channel, config: IrcConfig, *, workspace: Any = None) -> None:
        self.services = services
        self.channel = channel
        self.config = config
        self.identity = ensure_channel_identity(services, config)
        self.owner_id: str = self.identity["owner_id"]
        self.queue = ApprovalQueue(services.db, timeout=config.approval_timeout_s, audit=services.audit)
        self.runner = Runner(services, approver=self, workspace=workspace)
        self.workspace = workspace
        self._slots = asyncio.Semaphore(config.max_concurrent_runs)
        self._origins: dict[str, Incoming] = {}

    def is_owner(self, message: Incoming) -> bool:
        return hostmask_matches(self.config.owner_hostmasks, message.sender_id)

    async def handle(self, message: Incoming) -> None:
        """The channel's handler: a command, a question, or nothing for a sender not allowed."""
        words = message.text.split()
        if message.direct and words and words[0].lower() in ("!approve", "!deny"):
            await self.channel.reply(message, self._command(message, words))
            return
        if not (self.is_owner(message) or hostmask_matches(self.config.allow, message.sender_id)):
            log.info("channel %s: ignored %s (not in the allowlist)", self.config.name, message.sender_id)
            return
        if not message.text:
            return
        async with self._slots:
            answer = await self._answer(message)
        await self.channel.reply(message, answer, max_lines=self.config.max_reply_lines)

    # --- runs ------------------------------------------------------------------------------------

    def _agent(self, message: Incoming):
        config = self.config
        settings = self.services.settings
        if config.agent:
            definition = agent_config(config.agent, settings.home, settings.config_path, services=self.services)
        else:
            definition = AgentConfig(name=config.identity_name, mode="tools", tools=[], read_named_files=False,
                                     budget={"max_steps": 6})
        allowed = set(config.tools_for(message.sender_id))
        where = f"in {message.room}" if message.room else "in a direct message"
        note = (f"You are answering {message.sender} on IRC ({config.name}, {where}). Answer in plain text, "
                "briefly; no markdown.")
        definition = definition.model_copy(update={
            "tools": [t for t in definition.tools if t in allowed],
            "instructions": f"{definition.instructions}\n{note}".strip()})
        return definition.build(builtin_resolver(self.services, self.workspace))

    async def _answer(self, message: Incoming) -> str:
        run_id = "run_" + uuid.uuid4().hex[:20]
        self._origins[run_id] = message
        try:
            agent = self._agent(message)
            principal = self.services.keys.principal_for(self.identity["id"])
            result = await self.runner.run(agent, message.text, run_id=run_id, principal=principal)
        except SovereignError as exc:
            return f"sorry, I cannot answer that: {exc.message}"
        except Exception:
            log.exception("channel %s: the run for %s failed", self.config.name, message.sender_id)
            return "sorry, something went wrong (the server log has the details)"
        finally:
            self._origins.pop(run_id, None)
        if result.answer:
            return result.answer
        return f"(no answer: the run stopped: {result.stop_reason})"

    # --- approvals -------------------------------------------------------------------------------

    async def decide(self, run_id: str, tool_name: str, arguments: dict[str, Any]) -> bool:
        """The runtime's ``Approver``: queue the request, tell the owner, wait for the decision."""
        approval = self.queue.request(run_id, tool_name, arguments)
        shown = json.dumps(arguments, ensure_ascii=False)[:300]
        ask = f"approval {approval.id}: {tool_name}({shown}) — reply !approve {approval.id} or !deny {approval.id}"
        for nick in self.config.owner_nicks:
            await self.channel.notify(nick, ask)
        origin = self._origins.get(run_id)
        if origin is not None:
            await self.channel.reply(origin, f"waiting for my owner to approve {tool_name} ({approval.id})")
        decided = await self.queue.wait(approval.id)
        return decided.status == "approved"

    def _command(self, message: Incoming, words: list[str]) -> str:
        verb = words[0].lower()
        if not self.is_owner(message):
            return "only this agent's owner may decide approvals"
        if len(words) < 2:
            return f"usage: {verb} <approval id> [reason]"
        approval_id, reason = words[1], " ".join(words[2:]) or None
        try:
            approval = self.queue.get(approval_id)
        except NotFoundError:
            return f"no approval {approval_id} for your runs"
        if approval.owner not in self._owned_identities():
            return f"no approval {approval_id} for your runs"  # another owner's: not even confirmed to exist
        who = f"{self.identity['name']} owner via irc {message.sender_id}"
        try:
            decide = self.queue.approve if verb == "!approve" else self.queue.deny
            decided = decide(approval_id, decided_by=who, reason=reason)
        except SovereignError as exc:
            return exc.message
        return f"{decided.status} {approval_id} ({approval.tool_name})"

    def _owned_identities(self) -> set[str]:
        rows = self.services.db.query("SELECT id FROM identities WHERE id = ? OR owner_id = ?",
                                      (self.owner_id, self.owner_id))
        return {row["id"] for row in rows}
