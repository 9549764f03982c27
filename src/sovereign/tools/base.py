"""A tool is a typed Python function: its JSON schema comes from the signature, its description
from the docstring, and arguments are validated before the call.

Bad arguments raise ``ToolArgumentError``, whose message goes back to the model; errors the tool
itself raises on purpose (``ToolError``) do too. Anything else is our bug and propagates.

Each tool declares its ``Effects`` (what calling it does: reads untrusted content, acts on the
world, leaves the machine, needs approval); the injection guard and approvals read those, never
the tool's name.
"""

from __future__ import annotations

import asyncio
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import orjson
from pydantic import TypeAdapter, ValidationError, create_model

from sovereign.errors import SovereignError
from sovereign.kernel.messages import ToolSpec

if TYPE_CHECKING:
    from sovereign.governance.injection import Source

__all__ = ["Effects", "PURE", "Reach", "Tool", "ToolArgumentError", "ToolContext", "ToolError", "tool"]

Reach = Literal["memory", "kb", "workspace"]
_SOURCES = frozenset({"tool", "file", "web", "retrieval", "mcp", "memory", "message"})


class ToolArgumentError(SovereignError):
    """The model called a tool with arguments that fail its schema."""

    status_code = 400
    error_type = "tool_argument_error"


class ToolError(SovereignError):
    """A tool failed in a way the model should hear about (file not found, command failed...)."""

    status_code = 400
    error_type = "tool_error"


@dataclass(frozen=True, slots=True, kw_only=True)
class Effects:
    """What calling a tool does, declared by the tool (``@tool(effects=Effects(...))``).

    The defaults describe a tool nobody has described: its result is treated as untrusted (it
    may carry text from anywhere), and nothing else is assumed. A pure function declares
    ``PURE``; anything that writes, runs, sends or fetches says so.
    """

    reads_untrusted: bool = True
    """Its result may hold content the user does not control (files, web pages, MCP servers,
    retrieved documents, memories): once seen, the context counts as untrusted."""
    acts_on_world: bool = False
    """It changes something outside the agent's context (writes files, runs commands, sends
    messages): blocked or approved by the injection guard while the context is untrusted."""
    leaves_machine: bool = False
    """Data it is given may leave this machine (network): gated like ``acts_on_world`` and its
    arguments are checked for exfiltration."""
    needs_approval: bool = False
    """A person approves every call, untrusted context or not."""
    source: Source = "tool"
    """The kind of content its result is, as the untrusted marking names it (``file``, ``web``,
    ``mcp``, ``retrieval``, ``memory``; ``tool`` for plain results, shown unmarked unless the
    scan finds something)."""
    reaches: Reach | None = None
    """The owned resource it uses (``memory``, ``kb``, ``workspace``), which a public agent may
    only touch when its owner exposed it."""

    def __post_init__(self) -> None:
        if self.source not in _SOURCES:
            raise ValueError(f"effects source must be one of {', '.join(sorted(_SOURCES))}, not '{self.source}'")
        if self.reaches not in (None, "memory", "kb", "workspace"):
            raise ValueError(f"effects reaches must be memory, kb, workspace or None, not '{self.reaches}'")

    @property
    def outward(self) -> bool:
        """Acts on the world or leaves the machine: what the injection guard gates."""
        return self.acts_on_world or self.leaves_machine

    def to_dict(self) -> dict[str, Any]:
        return {"reads_untrusted": self.reads_untrusted, "acts_on_world": self.acts_on_world,
                "leaves_machine": self.leaves_machine, "needs_approval": self.needs_approval,
                "source": self.source, "reaches": self.reaches}


PURE = Effects(reads_untrusted=False)
"""A function of its arguments only: reads nothing untrusted, touches nothing."""


@dataclass
class ToolContext:
    """What a tool may know about the run calling it. Tools that need none of it ignore it."""

    workspace: Path | None = None
    run_id: str | None = None
    agent: str | None = None
    owner: str | None = None
    services: Any = None  # sovereign.services.Services, when running inside the OS
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    function: Callable[..., Any]
    effects: Effects = Effects()
    timeout: float | None = None
    takes_context: bool = False
    inline: bool = False
    """A quick, non-blocking synchronous function (arithmetic, lookups in memory): it runs on the
    event loop instead of hopping to a worker thread. Anything that may block must leave it off."""
    _validator: TypeAdapter | None = None

    @property
    def needs_approval(self) -> bool:
        """A person approves every call (``effects.needs_approval``)."""
        return self.effects.needs_approval

    @property
    def inward(self) -> bool:
        """Runs at once on the event loop (``inline``, synchronous, no context) and touches
        nothing outside the run (not outward, no approval): running it again changes nothing,
        so the agent loop need not store its call before it runs."""
        return (self.inline and not self.takes_context and not self.effects.outward
                and not self.effects.needs_approval and not self._is_async)

    @property
    def risky(self) -> bool:
        """Acts on the world or leaves the machine (``effects.outward``)."""
        return self.effects.outward

    def spec(self) -> ToolSpec:
        return ToolSpec(name=self.name, description=self.description, parameters=self.parameters)

    def validate(self, arguments: str | dict[str, Any]) -> dict[str, Any]:
        """Parse and validate arguments; raises ``ToolArgumentError`` naming each problem."""
        if isinstance(arguments, str):
            if self._validator is not None and arguments.startswith("{"):
                return self._validate_json(arguments)
            try:
                arguments = orjson.loads(arguments or "{}")
            except orjson.JSONDecodeError as exc:
                raise ToolArgumentError(f"arguments for '{self.name}' are not valid JSON: {exc}") from exc
        if not isinstance(arguments, dict):
            raise ToolArgumentError(f"arguments for '{self.name}' must be a JSON object")
        if self._validator is None:
            return arguments
        try:
            model = self._validator.validate_python(arguments)
        except ValidationError as exc:
            raise ToolArgumentError(f"invalid arguments for '{self.name}': {_problems(exc)}") from exc
        return dict(model.__dict__)

    def _validate_json(self, arguments: str) -> dict[str, Any]:
        """Parse and validate in one pass (pydantic-core reads the JSON itself)."""
        assert self._validator is not None
        try:
            model = self._validator.validate_json(arguments)
        except ValidationError as exc:
            if any(e["type"] == "json_invalid" for e in exc.errors()):
                raise ToolArgumentError(f"arguments for '{self.name}' are not valid JSON: "
                                        f"{exc.errors()[0]['msg']}") from exc
            raise ToolArgumentError(f"invalid arguments for '{self.name}': {_problems(exc)}") from exc
        return dict(model.__dict__)

    async def call(self, arguments: str | dict[str, Any], context: ToolContext | None = None) -> Any:
        """Validate, then run the tool (in a thread if synchronous), honouring ``timeout``."""
        return await self.invoke(self.validate(arguments), context)

    async def invoke(self, values: dict[str, Any], context: ToolContext | None = None) -> Any:
        """Run the tool on arguments ``validate`` already returned."""
        if self.takes_context:
            values = {**values, "ctx": context or ToolContext()}
        is_async = self._is_async
        if self.inline and not is_async:
            return self.function(**values)  # no await: nothing runs on the loop meanwhile
        job = self.function(**values) if is_async else asyncio.to_thread(self.function, **values)
        if self.timeout is None:
            return await job
        try:
            async with asyncio.timeout(self.timeout):  # not wait_for: it can lose a cancellation on 3.11
                return await job
        except TimeoutError as exc:
            raise ToolError(f"tool '{self.name}' timed out after {self.timeout:g}s") from exc

    @property
    def on_loop(self) -> bool:
        """``invoke`` runs the function on the event loop and returns without awaiting anything
        (``inline`` and synchronous): no timeout can interrupt it."""
        return self.inline and not self._is_async

    @property
    def _is_async(self) -> bool:
        """Whether the function is a coroutine function (worked out once per function: every
        call asks)."""
        known = self.__dict__.get("_async_of")
        if known is None or known[0] is not self.function:
            known = self.__dict__["_async_of"] = (self.function, inspect.iscoroutinefunction(self.function))
        return known[1]


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(arguments)'}: {e['msg']}" for e in exc.errors())


def _type_hints(function: Callable) -> dict[str, Any]:
    """Parameter annotations, resolved even under ``from __future__ import annotations``."""
    try:
        return typing.get_type_hints(function, include_extras=True)
    except (NameError, TypeError):
        # Some name is only importable under TYPE_CHECKING: keep the raw annotations (as text).
        return dict(getattr(function, "__annotations__", {}))


def _description(func: Callable) -> str:
    doc = inspect.getdoc(func) or ""
    return doc.split("\n\n", 1)[0].strip()


def _merged(effects: Effects, *, risky: bool, needs_approval: bool) -> Effects:
    if risky and not effects.acts_on_world:
        effects = replace(effects, acts_on_world=True)
    if needs_approval and not effects.needs_approval:
        effects = replace(effects, needs_approval=True)
    return effects


def tool(
    func: Callable | None = None,
    *,
    name: str | None = None,
    effects: Effects | None = None,
    risky: bool = False,
    needs_approval: bool = False,
    timeout: float | None = None,
    inline: bool = False,
) -> Any:
    """Make a ``Tool`` from a typed function (usable as ``@tool`` or ``@tool(effects=PURE)``).

    ``effects`` says what a call does (default ``Effects()``: result untrusted, nothing more).
    ``risky=True`` is shorthand for ``acts_on_world=True`` and ``needs_approval=True`` sets that
    flag, both on top of ``effects``. ``inline=True`` marks a quick synchronous function that may run on the event loop (see
    ``Tool.inline``). A parameter named ``ctx`` receives the ``ToolContext`` and is left out of the schema.
    """

    def build(function: Callable) -> Tool:
        signature = inspect.signature(function)
        hints = _type_hints(function)
        fields: dict[str, Any] = {}
        takes_context = False
        for param in signature.parameters.values():
            if param.name == "ctx":
                takes_context = True
                continue
            annotation = hints.get(param.name, Any)
            default = param.default if param.default is not inspect.Parameter.empty else ...
            fields[param.name] = (annotation, default)
        model = create_model(f"{function.__name__}_arguments", **fields)
        schema = model.model_json_schema()
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
        schema.setdefault("properties", {})
        schema["type"] = "object"
        return Tool(
            name=name or function.__name__,
            description=_description(function),
            parameters=schema,
            function=function,
            effects=_merged(effects or Effects(), risky=risky, needs_approval=needs_approval),
            timeout=timeout,
            takes_context=takes_context,
            inline=inline,
            _validator=TypeAdapter(model),
        )

    return build(func) if func is not None else build
