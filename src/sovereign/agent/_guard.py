"""Governance inside the agent runtime: one ``RunGuard`` per execution of a run.

It connects the loop to ``sovereign.governance`` (and, when present, ``sovereign.memory``):

- prompt-injection guard: one ``Taint`` per run (the task is trusted); every tool result is
  observed as untrusted (scanned, findings audited); before every call the ``ToolGate`` decides,
  and its ``needs_approval`` decisions go through the runner's ``Approver``;
- visibility: a *public* agent sees only the tools (and memory / knowledge / workspace) its owner
  exposed; the check is made here, not asked of the model;
- authorisation: a principal with scopes (an API key) that started the run limits the tools;
- audit: every tool call and its outcome (``tool.call``), when the runner has services;
- memory: the recall prefix at run start and the flush before compaction (optional, defensive).

Results of plain tools with no findings reach the model as they are (short prompts for small
models); results from files, the web, MCP, retrieval and memory, and any result with findings,
are wrapped in the ``<untrusted>`` block. Either way the context counts as tainted.
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
    acts_on_world,
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

MEMORY_TOOLS = frozenset({"remember", "recall", "forget"})
WORKSPACE_TOOLS = frozenset({"list_files", "read_file", "write_file", "search_files", "run_shell", "run_python"})
FILE_TOOLS = frozenset({"list_files", "read_file", "search_files"})
WEB_TOOLS = frozenset({"http", "http_fetch", "http_get", "http_post", "http_request", "fetch", "web_fetch",
                       "web_search"})
DEFAULT_RESOURCE = "default"
"""Name of the knowledge base and workspace a tool reaches (exposures: ``default`` or ``*``)."""
_AUDIT_EXCERPT = 300


def tool_source(tool: Tool) -> Source:
    """Where a tool's result comes from, for the injection guard."""
    name = tool.name
    if getattr(tool, "server", "") or getattr(tool, "remote_name", ""):
        return "mcp"
    if name in WEB_TOOLS or name.startswith(("http_", "web_")):
        return "web"
    if name in FILE_TOOLS:
        return "file"
    if name.startswith("kb_"):
        return "retrieval"
    if name in MEMORY_TOOLS:
        return "memory"
    return "tool"


def tool_resource(tool_name: str, agent_name: str) -> tuple[str, str] | None:
    """The memory / knowledge base / workspace a tool reaches, as a visibility ``(kind, name)``."""
    if tool_name in MEMORY_TOOLS:
        return "memory", agent_name
    if tool_name.startswith("kb_"):
        return "kb", DEFAULT_RESOURCE
    if tool_name in WORKSPACE_TOOLS:
        return "workspace", DEFAULT_RESOURCE
    return None


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
        access = self.access
        if access is not None:
            resource = tool_resource(name, self.agent.name)
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
            decision = self.gate.check_call(tool.name, arguments, acts_on_world=acts_on_world(tool.name, tool.risky),
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
        """Taint the context with a tool result; what the model should see of it."""
        source = tool_source(tool)
        before = len(self.taint.findings)
        self.taint.observe(content, source=source, origin=tool.name, mark=False)
        if source != "tool" or len(self.taint.findings) > before:
            return mark_untrusted(content, source, tool.name)
        return content

    def replay(self, steps: Iterable[Step]) -> None:
        """Rebuild the taint of a resumed run from its stored results (findings not re-audited)."""
        audit, self.taint.audit = self.taint.audit, None
        try:
            for step in steps:
                if isinstance(step, ToolResultStep) and step.executed:
                    self.taint.observe(step.content, source="tool", origin=step.name, mark=False)
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
