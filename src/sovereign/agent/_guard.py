"""Governance inside the agent runtime: one ``RunGuard`` per execution of a run.

It connects the loop to ``sovereign.governance`` (and, when present, ``sovereign.memory``):

- prompt-injection guard: one ``Taint`` per run (the task is trusted); every tool result is
  scanned (findings audited), and the result of a tool whose effects say ``reads_untrusted``
  taints the context; before every call of an outward tool (``acts_on_world`` or
  ``leaves_machine``) the ``ToolGate`` decides, and its ``needs_approval`` decisions go through
  the runner's ``Approver``. What a tool does is read from its declared ``Effects``, never
  from its name (so MCP tools are governed like built-ins);
- visibility: a *public* agent sees only the tools (and memory / knowledge / workspace) its owner
  exposed; the check is made here, not asked of the model;
- authorisation: a principal with scopes (an API key) that started the run limits the tools;
- audit: every tool call and its outcome (``tool.call``), when the runner has services;
- memory: the recall prefix at run start and the flush before compaction (optional, defensive).

Results of plain tools (``effects.source == "tool"``, or not ``reads_untrusted``) with no findings
reach the model as they are (short prompts for small models); untrusted results from files, the
web, MCP, retrieval and memory, and any result with findings, are wrapped in the
``<untrusted>`` block.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sovereign.agent.steps import Step, ToolResultStep
from sovereign.errors import PermissionDeniedError, SovereignError
from sovereign.governance.authz import authorize
from sovereign.governance.injection import (
    Decision,
    Policy,
    Source,
    Taint,
    ToolGate,
    mark_untrusted,
)

if TYPE_CHECKING:
    from sqlite3 import Connection

    from sovereign.agent.agent import Agent
    from sovereign.agent.hooks import Approver
    from sovereign.governance.audit import AuditLog
    from sovereign.governance.keys import Principal
    from sovereign.governance.visibility import Access
    from sovereign.kernel.messages import ChatRequest, ChatResponse, Message
    from sovereign.services import Services
    from sovereign.tools.base import Tool

__all__ = ["RunGuard", "effective_policy", "public_access", "recall_for", "tool_resource", "tool_source"]

log = logging.getLogger(__name__)

DEFAULT_RESOURCE = "default"
"""Name of the knowledge base and workspace a tool reaches (exposures: ``default`` or ``*``)."""
_AUDIT_EXCERPT = 300


def tool_source(tool: Tool) -> Source:
    """Where a tool's result comes from, for the injection guard (its declared ``effects.source``)."""
    return tool.effects.source


def tool_resource(tool: Tool, agent_name: str) -> tuple[str, str] | None:
    """The memory / knowledge base / workspace a tool reaches (``effects.reaches``), as a
    visibility ``(kind, name)``."""
    reaches = tool.effects.reaches
    if reaches is None:
        return None
    return reaches, agent_name if reaches == "memory" else DEFAULT_RESOURCE


def effective_policy(agent: Agent, approver: Approver | None) -> Policy:
    """The agent's injection policy; ``approve`` without an approver becomes ``block``."""
    policy = agent.injection_policy
    return "block" if policy == "approve" and approver is None else policy


def public_access(services: Services | None, agent: Agent) -> Access | None:
    """The ``Access`` of the agent's identity when it is public (its name, else its owner); None
    when the agent is private or has no identity."""
    if services is None:
        return None
    for identity in dict.fromkeys(n for n in (agent.name, agent.owner) if n):
        try:
            access = services.visibility.access_for(identity)
        except SovereignError:
            continue
        if access.public:
            return access
    return None


# --- memory ---------------------------------------------------------------------------------


def _memory_in_use(services: Services) -> bool:
    row = services.db.query_one("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'memory_items'")
    return row is not None


def open_memory(services: Services | None, memory: Any) -> Any:
    """The runner's memory store, or one opened on the services' database when memory is in use
    there (never created from nothing: a fresh home loads no embedding model)."""
    if memory is not None or services is None or not _memory_in_use(services):
        return memory
    try:
        from sovereign.memory.store import MemoryStore
    except ImportError:
        return None
    try:
        return MemoryStore.open(services.db, services.settings.home)
    except (SovereignError, OSError) as exc:
        log.warning("memory unavailable to the agent runtime: %s", exc)
        return None


def _has_memories(store: Any, owner: str, agent: str) -> bool:
    row = store.db.query_one("SELECT 1 FROM memory_items WHERE owner = ? AND agent = ? AND status = 'active' LIMIT 1",
                             (owner, agent))
    return row is not None


def recall_for(store: Any, access: Access | None, agent: Agent, task: str, k: int) -> str:
    """The recall prefix for a new run ("" without memory, owner, exposure or matches)."""
    if store is None or not agent.owner or k <= 0:
        return ""
    if access is not None and not access.allows("memory", agent.name):
        return ""
    try:
        from sovereign.memory.tools import recall_prefix
    except ImportError:
        return ""
    try:
        if not _has_memories(store, agent.owner, agent.name):
            return ""  # nothing to find: the embedding model is not loaded for nothing
        return recall_prefix(store, agent.owner, agent.name, task, k)
    except (SovereignError, OSError) as exc:
        log.warning("memory recall skipped: %s", exc)
        return ""


@dataclass
class _Budgeted:
    """The run's model as ``sovereign.memory`` sees it: each call is budgeted and accounted."""

    name: str
    complete_fn: Any

    async def complete(self, request: ChatRequest) -> ChatResponse:
        return await self.complete_fn(request)


# --- the guard ------------------------------------------------------------------------------


@dataclass
class RunGuard:
    """The governance state of one execution of a run (see the module docstring)."""

    agent: Agent
    run_id: str
    policy: Policy
    approver: Approver | None = None
    services: Services | None = None
    principal: Principal | None = None
    access: Access | None = None
    memory: Any = None
    taint: Taint = field(default_factory=Taint)
    gate: ToolGate = field(default_factory=ToolGate)
    approved: set[str] = field(default_factory=set)
    """Call ids a person approved in this execution (stored on their call steps)."""
    _forbidden: dict[str, str | None] = field(default_factory=dict, repr=False)
    """``forbidden``'s answers: they depend only on the visibility and the principal, both
    taken when the execution began, so each tool name is decided once."""

    @classmethod
    def build(cls, agent: Agent, run_id: str, task: str, *, approver: Approver | None, services: Services | None,
              principal: Principal | None = None, memory: Any = None) -> RunGuard:
        audit = services.audit if services is not None else None
        policy = effective_policy(agent, approver)
        taint = Taint(audit=audit, actor=agent.name)
        taint.trust_text(task)
        return cls(agent=agent, run_id=run_id, policy=policy, approver=approver, services=services,
                   principal=principal, access=public_access(services, agent), memory=memory, taint=taint,
                   gate=ToolGate(policy=policy, audit=audit))

    @property
    def audit(self) -> AuditLog | None:
        return self.services.audit if self.services is not None else None

    def offered(self, tools: Sequence[Tool]) -> list[Tool]:
        """The tools the model is shown: those neither hidden from a public agent nor out of scope."""
        return [t for t in tools if self.forbidden(t.name) is None]

    def forbidden(self, name: str) -> str | None:
        """Why this run may not use tool ``name`` at all (visibility, key scopes), or None."""
        try:
            return self._forbidden[name]
        except KeyError:
            why = self._forbidden[name] = self._why_forbidden(name)
            return why

    def _why_forbidden(self, name: str) -> str | None:
        access = self.access
        if access is not None:
            tool = self.agent.tool(name)
            resource = tool_resource(tool, self.agent.name) if tool is not None else None
            if not access.allows("tool", name):
                return f"not run: this public agent may not use the tool '{name}' (its owner has not exposed it)"
            if resource is not None and not access.allows(*resource):  # type: ignore[arg-type]
                kind, what = resource
                return f"not run: this public agent may not reach {kind} '{what}' (its owner has not exposed it)"
        if self.principal is not None:
            try:
                authorize(self.principal, tool=name)
            except PermissionDeniedError as exc:
                return f"not run: {exc.message}"
        return None

    async def check(self, tool: Tool, arguments: dict[str, Any], call_id: str, *, needs_approval: bool,
                    gate: bool = True, before_wait: Callable[[], None] | None = None) -> str | None:
        """Injection gate, then approval (the tool's own, or the gate's); a refusal text or None.

        ``before_wait`` runs before the run pauses for a person (the loop stores its steps)."""
        decision = Decision(True)
        if gate:
            decision = self.gate.check_call(tool.name, arguments, acts_on_world=tool.effects.outward,
                                            taint=self.taint, actor=self.agent.name)
        if not decision.allowed and not decision.needs_approval:
            return f"not run: {decision.reason}. Continue without it, or answer with what you have."
        if not (needs_approval or decision.needs_approval):
            return None
        if self.approver is None:
            return f"not run: '{tool.name}' needs approval and no approver is configured"
        if before_wait is not None:
            before_wait()
        if not await self.approver.decide(self.run_id, tool.name, arguments):
            why = f" ({decision.reason})" if decision.needs_approval else ""
            return f"not run: a person denied approval for '{tool.name}'{why}"
        self.approved.add(call_id)
        return None

    def observe(self, tool: Tool, content: str) -> str:
        """Scan a tool result and taint the context with it when the tool reads untrusted content
        (or the scan finds an attack); what the model should see of it."""
        source = tool_source(tool)
        before = len(self.taint.findings)
        self._take(tool, content, source)
        if (tool.effects.reads_untrusted and source != "tool") or len(self.taint.findings) > before:
            return mark_untrusted(content, source, tool.name)
        return content

    def _take(self, tool: Tool | None, content: str, source: Source) -> None:
        origin = tool.name if tool is not None else ""
        if tool is None or tool.effects.reads_untrusted:
            self.taint.observe(content, source=source, origin=origin, mark=False)
        else:
            self.taint.inspect(content, source=source, origin=origin)

    def replay(self, steps: Iterable[Step]) -> None:
        """Rebuild the taint of a resumed run from its stored results (findings not re-audited)."""
        audit, self.taint.audit = self.taint.audit, None
        try:
            for step in steps:
                if isinstance(step, ToolResultStep) and step.executed:
                    tool = self.agent.tool(step.name)
                    self._take(tool, step.content, tool_source(tool) if tool is not None else "tool")
        finally:
            self.taint.audit = audit

    def record(self, step: ToolResultStep, arguments: str, conn: Connection | None = None) -> None:
        """Audit one tool call and its outcome (secrets are redacted by the audit log), inside
        ``conn``'s transaction when given."""
        audit = self.audit
        if audit is None:
            return
        try:
            args: Any = json.loads(arguments) if arguments else {}
        except (json.JSONDecodeError, TypeError):
            args = arguments
        entry = {
            "run_id": self.run_id, "agent": self.agent.name, "owner": self.agent.owner, "tool": step.name,
            "call_id": step.call_id, "arguments": args, "executed": step.executed, "ok": step.ok,
            "approved": step.call_id in self.approved or None, "error": step.error,
            "duration_ms": step.duration_ms, "result": step.content[:_AUDIT_EXCERPT],
        }
        if conn is None:
            audit.append("tool.call", self.agent.name, entry)
        else:
            audit.append_in(conn, "tool.call", self.agent.name, entry)

    async def flush_memory(self, messages: list[Message], complete_fn: Any, model_name: str) -> None:
        """Store durable facts from ``messages`` before they are summarised away (when memory is on)."""
        if self.memory is None or not self.agent.owner:
            return
        if self.access is not None and not self.access.allows("memory", self.agent.name):
            return
        try:
            from sovereign.memory.compaction import flush_before_compaction
        except ImportError:
            return
        try:
            await flush_before_compaction(self.memory, _Budgeted(model_name, complete_fn), self.agent.owner,
                                          self.agent.name, messages, run_id=self.run_id)
        except (SovereignError, OSError) as exc:
            log.warning("memory flush before compaction skipped: %s", exc)
