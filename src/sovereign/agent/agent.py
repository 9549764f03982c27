"""The declarative ``Agent`` (configuration only; the runner drives it) and agent definitions
from config (``[[agents]]`` in ``config.toml`` or ``agents.toml``) or the API."""

from __future__ import annotations

import importlib
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sovereign.agent.budget import Budget
from sovereign.agent.compaction import CompactionPolicy
from sovereign.agent.errors import AgentConfigError, UnknownAgentError
from sovereign.agent.loop_detect import LoopPolicy
from sovereign.governance.injection import Policy
from sovereign.tools.base import Tool

__all__ = ["Agent", "AgentConfig", "BudgetConfig", "ToolCatalog", "agent_config", "builtin_resolver",
           "load_agent_configs", "resolve_tools", "weakening_settings"]

DEFAULT_AGENT = "default"
Mode = Literal["tools", "code"]
DEFAULT_MODE: Mode = "code"
"""The default agent's mode, chosen by measurement (BENCHMARKS.md, "Agent modes"): on the 0.5B
model JSON tool calls looped where code solved the same simple tasks."""
DEFAULT_TOOLS = ("list_files", "read_file", "search_files", "write_file", "calculator")
"""The default agent's tools: workspace files (writing asks for approval) and the calculator."""
ToolResolver = Callable[[str], Tool | None]


@dataclass(kw_only=True)
class Agent:
    """What an agent is: who it works for, how it thinks, what it may use, what it may spend."""

    name: str
    """Unique name; shown in traces and used to pick an agent from config."""
    instructions: str = ""
    """Appended to the short built-in system prompt."""
    model: str | None = None
    """Registry name of the model; None picks by ``tier``, else the default model."""
    tier: str | None = None
    """Registry tier (``small``, ``medium``, ...) when no model is named."""
    tools: list[Tool] = field(default_factory=list)
    budget: Budget = field(default_factory=Budget)
    owner: str | None = None
    """The identity (human owner) the run is accounted to in the ledger."""
    verify: str = "off"
    """Self-check before answering: ``off``, ``same`` (the agent's model) or a model name."""
    max_verify_retries: int = 2
    """Failed checks that send the agent back; after that the answer is returned unverified."""
    thinking: bool = False
    """Reason before each answer (the kernel's thinking mode)."""
    thinking_budget: int | None = None
    max_tokens: int = 512
    """Completion cap of each model call (the worst case the budget checks)."""
    temperature: float | None = 0.0
    loop: LoopPolicy = field(default_factory=LoopPolicy)
    compaction: CompactionPolicy = field(default_factory=CompactionPolicy)
    context_window: int | None = None
    """Override of the model's context size (tokens), for compaction."""
    max_tool_result_chars: int = 4000
    """Longer tool results are cut (with a note saying so) before the model sees them."""
    mode: Mode = "tools"
    """How the model acts: ``tools`` (JSON tool calls) or ``code`` (it writes Python that runs in
    the sandbox with the tools as functions, and calls ``final_answer``)."""
    max_corrections: int = 3
    """Invalid actions in a row (a call written as text, an unknown tool, bad arguments, no code)
    that go back to the model with a correction; one more ends the run as ``failed``."""
    read_named_files: bool = True
    """The opening move: before the first model turn the runtime reads the workspace files the
    task names (or lists the folder it names), so the model starts from their content."""
    fix_search: bool = True
    """Code mode, a task that asks to fix a Python file and states its check: while the file
    fails that check, the runtime samples candidate fixes in short separate requests and saves
    the first that passes (``agent/_fix_search.py``)."""
    injection_policy: Policy = "approve"
    """Outward tools (shell, file writes, HTTP, messages) once tool results are in the context:
    ``approve`` asks the runner's approver (``block`` when there is none), ``block`` refuses,
    ``off`` lets them run."""

    def tool(self, name: str) -> Tool | None:
        for candidate in self.tools:
            if candidate.name == name:
                return candidate
        return None

    def to_config(self) -> AgentConfig:
        """The serialisable definition (tools by name), as stored with each run."""
        return AgentConfig(
            name=self.name, instructions=self.instructions, model=self.model, tier=self.tier,
            tools=[t.name for t in self.tools], budget=BudgetConfig(**self.budget.to_dict()),
            owner=self.owner, verify=self.verify, max_verify_retries=self.max_verify_retries,
            thinking=self.thinking, thinking_budget=self.thinking_budget, max_tokens=self.max_tokens,
            temperature=self.temperature, repeat_limit=self.loop.repeat_limit,
            stale_steps=self.loop.stale_steps, loop_nudge=self.loop.nudge,
            compaction_threshold=self.compaction.threshold, keep_recent=self.compaction.keep_recent,
            context_window=self.context_window, max_tool_result_chars=self.max_tool_result_chars,
            injection_policy=self.injection_policy, mode=self.mode, max_corrections=self.max_corrections,
            read_named_files=self.read_named_files, fix_search=self.fix_search,
        )


class BudgetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_steps: int | None = Field(default=20, ge=0)
    max_tool_calls: int | None = Field(default=50, ge=0)
    max_input_tokens: int | None = Field(default=None, ge=0)
    max_output_tokens: int | None = Field(default=None, ge=0)
    max_cost_usd: float | None = Field(default=None, ge=0)
    max_wall_s: float | None = Field(default=None, ge=0)


class AgentConfig(BaseModel):
    """An agent definition at a boundary (TOML, HTTP): tools are named, not objects."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    instructions: str = ""
    model: str | None = None
    tier: str | None = None
    tools: list[str] = Field(default_factory=list)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    owner: str | None = None
    verify: str = "off"
    max_verify_retries: int = Field(default=2, ge=0, le=10)
    thinking: bool = False
    thinking_budget: int | None = Field(default=None, ge=0)
    max_tokens: int = Field(default=512, ge=1)
    temperature: float | None = Field(default=0.0, ge=0, le=2)
    repeat_limit: int = Field(default=2, ge=1)
    stale_steps: int = Field(default=3, ge=0)
    loop_nudge: bool = True
    compaction_threshold: float = Field(default=0.75, gt=0.1, le=1.0)
    keep_recent: int = Field(default=4, ge=1)
    context_window: int | None = Field(default=None, ge=256)
    max_tool_result_chars: int = Field(default=4000, ge=100)
    injection_policy: Policy = "approve"
    mode: Mode = "tools"
    max_corrections: int = Field(default=3, ge=0, le=20)
    read_named_files: bool = True
    fix_search: bool = True

    def build(self, resolve: ToolResolver | None = None) -> Agent:
        """The ``Agent``; each tool name is looked up with ``resolve`` (default: built-in tools)."""
        return Agent(
            name=self.name, instructions=self.instructions, model=self.model, tier=self.tier,
            tools=resolve_tools(self.tools, resolve), budget=Budget(**self.budget.model_dump()),
            owner=self.owner, verify=self.verify, max_verify_retries=self.max_verify_retries,
            thinking=self.thinking, thinking_budget=self.thinking_budget, max_tokens=self.max_tokens,
            temperature=self.temperature,
            loop=LoopPolicy(repeat_limit=self.repeat_limit, stale_steps=self.stale_steps, nudge=self.loop_nudge),
            compaction=CompactionPolicy(threshold=self.compaction_threshold, keep_recent=self.keep_recent),
            context_window=self.context_window, max_tool_result_chars=self.max_tool_result_chars,
            injection_policy=self.injection_policy, mode=self.mode, max_corrections=self.max_corrections,
            read_named_files=self.read_named_files, fix_search=self.fix_search,
        )


_STRICTNESS = {"off": 0, "approve": 1, "block": 2}
_SECURITY_PREFIXES = ("sandbox", "egress")


def weakening_settings(config: AgentConfig) -> dict[str, Any]:
    """The settings of ``config`` that weaken security against the defaults: an injection policy
    looser than the default one, and any sandbox or egress setting that differs from its default.
    Only an admin may use them (the API refuses others and audits an admin's use)."""
    found: dict[str, Any] = {}
    fields = type(config).model_fields
    if _STRICTNESS[config.injection_policy] < _STRICTNESS[fields["injection_policy"].default]:
        found["injection_policy"] = config.injection_policy
    for name, info in fields.items():
        value = getattr(config, name)
        if name.startswith(_SECURITY_PREFIXES) and value != info.get_default(call_default_factory=True):
            found[name] = value
    return found


def _builtin_tools(services: Any = None, workspace: Path | None = None) -> dict[str, Tool]:
    """The tools package's built-ins (``sovereign.tools.builtin_tools``), by name."""
    try:
        module = importlib.import_module("sovereign.tools")
    except ImportError:
        return {}
    factory = getattr(module, "builtin_tools", None)
    if factory is None:
        return {}
    return {t.name: t for t in factory(workspace, services) if isinstance(t, Tool)}


def _service_tools(services: Any) -> dict[str, Tool]:
    """Memory (``remember``/``recall``/``forget``, scoped to the calling run's owner and agent),
    knowledge-base (``kb_search``) tools on the services' database (stores open on first use), and
    perception (``read_image``, ``transcribe``, ``speak``)."""
    from sovereign.knowledge.tools import knowledge_tools
    from sovereign.memory.tools import memory_tools

    opened: dict[str, Any] = {}

    def memory() -> Any:
        if "memory" not in opened:
            from sovereign.memory.store import MemoryStore

            opened["memory"] = MemoryStore.open(services.db, services.settings.home)
        return opened["memory"]

    def kb() -> Any:
        if "kb" not in opened:
            from sovereign.knowledge.base import KnowledgeBase

            from sovereign.perception.ingest import ocr_function

            opened["kb"] = KnowledgeBase(services.db, ocr=ocr_function(services))
        return opened["kb"]

    from sovereign.perception.tools import perception_tools

    return {t.name: t for t in [*memory_tools(memory), *knowledge_tools(kb), *perception_tools(services)]}


@dataclass
class ToolCatalog:
    """The one tool resolver: every tool an agent may name, from config, the API or the CLI.

    Built-ins (workspace, sandbox, calculator, HTTP) bound to ``services`` and ``workspace``;
    with ``services``, the memory and knowledge-base tools on their database and the MCP tools
    mounted at start (``services.mounted_tools``, named ``<server>__<tool>``). Call it with a
    name (None when unknown); ``names()`` lists what is available."""

    services: Any = None
    workspace: Path | None = None
    _tools: dict[str, Tool] | None = None

    def tools(self) -> dict[str, Tool]:
        if self._tools is None:
            found = _builtin_tools(self.services, self.workspace)
            if self.services is not None and getattr(self.services, "db", None) is not None:
                found.update(_service_tools(self.services))
            for mounted in getattr(self.services, "mounted_tools", None) or ():
                found.setdefault(mounted.name, mounted)
            self._tools = found
        return self._tools

    def __call__(self, name: str) -> Tool | None:
        return self.tools().get(name)

    def names(self) -> list[str]:
        return sorted(self.tools())


def builtin_resolver(services: Any = None, workspace: Path | None = None) -> ToolCatalog:
    """The tool resolver (``ToolCatalog``) bound to ``services`` and ``workspace``."""
    return ToolCatalog(services, workspace)


def resolve_tools(names: Iterable[str], resolve: ToolResolver | None = None) -> list[Tool]:
    """Look each name up with ``resolve`` (default: the built-ins); an unknown name is an error
    that lists the tools available."""
    catalog = resolve if resolve is not None else ToolCatalog()
    tools: list[Tool] = []
    for name in names:
        found = catalog(name)
        if found is None and resolve is not None and not isinstance(resolve, ToolCatalog):
            found = ToolCatalog()(name)  # a custom resolver falls back to the built-ins
        if found is None:
            listed = getattr(catalog, "names", None)
            known = ", ".join(listed() if listed is not None else ToolCatalog().names()) or "none"
            raise AgentConfigError(f"unknown tool '{name}' (available tools: {known})", param="tools")
        tools.append(found)
    return tools


def load_agent_configs(home: Path, config_path: Path | None = None) -> dict[str, AgentConfig]:
    """Agents from ``[[agents]]`` in ``config.toml`` and in ``agents.toml`` (the latter wins)."""
    paths = [config_path or home / "config.toml", home / "agents.toml"]
    agents: dict[str, AgentConfig] = {}
    for path in paths:
        if not path.exists():
            continue
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise AgentConfigError(f"{path} is not valid TOML: {exc}") from exc
        for position, entry in enumerate(data.get("agents", [])):
            try:
                config = AgentConfig.model_validate(entry)
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or '(agent)'}: {e['msg']}" for e in exc.errors()
                )
                raise AgentConfigError(f"{path}: agents[{position}] is invalid: {problems}") from exc
            agents[config.name] = config
    return agents


def agent_config(name: str | None, home: Path, config_path: Path | None = None, *,
                 services: Any = None) -> AgentConfig:
    """The named agent from config, or the default agent (``DEFAULT_TOOLS``, ``DEFAULT_MODE``) when ``name`` is None."""
    configs = load_agent_configs(home, config_path)
    if name is None:
        if DEFAULT_AGENT in configs:
            return configs[DEFAULT_AGENT]
        available = _builtin_tools(services)
        return AgentConfig(name=DEFAULT_AGENT, tools=[t for t in DEFAULT_TOOLS if t in available], mode=DEFAULT_MODE)
    if name not in configs:
        known = ", ".join(sorted(configs)) or "none defined"
        raise UnknownAgentError(f"no agent named '{name}' (agents: {known})", param="agent")
    return configs[name]
