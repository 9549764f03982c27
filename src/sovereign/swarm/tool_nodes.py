"""Tool nodes (as in LLMCompiler): a plan node that is one direct call of a parent's tool, run
with no sub-agent.

A sub-task that is exactly one call of a listed tool, with arguments known from the task ("fetch
page 3"), costs a sub-agent two model calls around that call; as a tool node it costs none. The
planner writes ``"call": {"tool": name, "arguments": {...}}`` on the node. A string argument may
name the result of a node the call depends on as ``{node_id}``: a string that is only the
reference becomes that result's text, a reference inside a longer string is replaced in place.
Such references add the dependency when the plan omits it (``repair_plan``). A result marked
untrusted keeps its marking, and the run of a call given it counts its context as untrusted
(outward tools are gated by the injection guard: ``agent/planned.py``).

Here: the references, their substitution, and the checks of a call against the parent's tools
(``call_problems``: the tool exists and may be called directly, the arguments validate against
its parameter schema — each problem said exactly, for the re-plan). The orchestrator runs the
node as a planned-call run (``agent/planned.py``) on the governed path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from sovereign.agent.answer_check import usage_of
from sovereign.swarm.delegate import DELEGATION_TOOLS
from sovereign.tools.base import Tool, ToolArgumentError

__all__ = ["call_problems", "references", "substitute", "tool_usage"]

_REFERENCE = re.compile(r"\{([A-Za-z0-9_.-]{1,40})\}")
_STAND_INS = {"integer": 0, "number": 0, "boolean": False, "array": [], "object": {}, "null": None}
"""What a reference stands for while its result is not known: a value of the parameter's type."""


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def references(arguments: Mapping[str, Any], ids: Iterable[str]) -> list[str]:
    """The ids of ``ids`` that the arguments' strings reference as ``{id}``, in order, once each."""
    known = set(ids)
    found = (m.group(1) for text in _strings(arguments) for m in _REFERENCE.finditer(text))
    return list(dict.fromkeys(i for i in found if i in known))


def substitute(value: Any, results: Mapping[str, str]) -> Any:
    """``value`` with each ``{id}`` of ``results`` replaced by that result (see the module docstring)."""
    if isinstance(value, str):
        whole = _REFERENCE.fullmatch(value)
        if whole is not None and whole.group(1) in results:
            return results[whole.group(1)]
        return _REFERENCE.sub(lambda m: results.get(m.group(1), m.group(0)), value)
    if isinstance(value, Mapping):
        return {key: substitute(item, results) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute(item, results) for item in value]
    return value


def _stand_in(schema: Any) -> Any:
    if not isinstance(schema, Mapping):
        return ""
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    kind = next((k for k in kind if k != "null"), "string") if isinstance(kind, list) else kind
    return _STAND_INS.get(kind, "")


def call_problems(node_id: str, tool_name: str, arguments: Mapping[str, Any], tools: Mapping[str, Tool],
                  depends_on: Iterable[str]) -> list[str]:
    """What is wrong with node ``node_id``'s call of ``tool_name`` (empty: nothing). An argument
    that is only a reference to a dependency is checked as a value of its parameter's type; the
    call is checked again, whole, when it runs."""
    if tool_name in DELEGATION_TOOLS:
        return [f"'{node_id}' calls {tool_name} directly: delegation needs a sub-agent (no \"call\")"]
    tool = tools.get(tool_name)
    if tool is None:
        available = ", ".join(sorted(t for t in tools if t not in DELEGATION_TOOLS)) or "none"
        return [f"'{node_id}' calls a tool the swarm does not have: {tool_name} (available: {available})"]
    deps = set(depends_on)
    properties = tool.parameters.get("properties", {}) if isinstance(tool.parameters, Mapping) else {}
    probe = {}
    for key, value in arguments.items():
        whole = _REFERENCE.fullmatch(value) if isinstance(value, str) else None
        probe[key] = _stand_in(properties.get(key)) if whole is not None and whole.group(1) in deps else value
    try:
        tool.validate(probe)
    except ToolArgumentError as exc:
        return [f"'{node_id}' call: {exc.message} (usage: {usage_of([tool.spec()])})"]
    return []


def tool_usage(tools: Iterable[Tool]) -> str:
    """The tools a plan may call directly, with their arguments (``name(arg, optional?)``; "" for none)."""
    specs = [t.spec() for t in tools if t.name not in DELEGATION_TOOLS]
    return usage_of(specs) if specs else ""
