"""Tool definitions in, grammars out: validate tool schemas, build the call grammar, size a call.

For local models a GBNF grammar built from the tools' JSON Schemas constrains decoding so the
arguments always validate and the number of calls in a turn is bounded. Parsing calls out of
model text lives in ``tool_markup`` (re-exported here).
"""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
from jsonschema.validators import validator_for

from sovereign.errors import InvalidToolSchemaError
from sovereign.kernel.messages import ToolSpec
from sovereign.kernel.tool_markup import (  # noqa: F401  (re-exported)
    TOOL_CALL_CLOSE,
    TOOL_CALL_OPEN,
    CallCollector,
    MarkupGuard,
    dedupe_calls,
    has_tool_markup,
    looks_like_tool_call,
    parse_tool_calls,
)

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def validate_tools(tools: list[ToolSpec]) -> None:
    """Raise ``InvalidToolSchemaError`` naming the first bad tool definition."""
    seen: set[str] = set()
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        if not _NAME.match(tool.name or ""):
            raise InvalidToolSchemaError(
                f"{where}.function.name '{tool.name}' is invalid: use 1-64 letters, digits, '_' or '-'",
                param=f"{where}.function.name",
            )
        if tool.name in seen:
            raise InvalidToolSchemaError(f"{where}: duplicate tool name '{tool.name}'", param=f"{where}.function.name")
        seen.add(tool.name)
        params = tool.parameters
        if not isinstance(params, dict) or params.get("type", "object") != "object":
            raise InvalidToolSchemaError(
                f"{where}.function.parameters of '{tool.name}' must be a JSON Schema of type 'object'",
                param=f"{where}.function.parameters",
            )
        try:
            validator_for(params).check_schema(params)
        except jsonschema.SchemaError as exc:
            raise InvalidToolSchemaError(
                f"{where}.function.parameters of '{tool.name}' is not a valid JSON Schema: {exc.message}",
                param=f"{where}.function.parameters",
            ) from exc


def argument_errors(tool: ToolSpec, arguments: Any) -> list[str]:
    """Every way ``arguments`` fails the tool's schema (empty when it validates)."""
    validator = validator_for(tool.parameters)(tool.parameters)
    return [error.message for error in validator.iter_errors(arguments)]


def tool_call_grammar(
    tools: list[ToolSpec], *, max_calls: int = 1, max_string_chars: int | None = None, compact: bool = False
) -> str:
    """GBNF for 1 to ``max_calls`` ``{"name", "arguments"}`` objects, each closed by ``</tool_call>``.

    The prompt is expected to end with ``<tool_call>\\n`` already (the decoder is steered into
    the call), so the grammar starts at the JSON object. The count is bounded by the grammar
    itself: after the last allowed call only the closing tag can follow. ``max_string_chars``
    caps every string argument without its own ``maxLength`` and ``compact`` forbids the optional
    spaces between JSON tokens (so a call fits a small budget).
    """
    from llama_cpp.llama_grammar import SchemaConverter

    if max_calls < 1:
        raise ValueError("max_calls must be at least 1")
    converter = SchemaConverter(prop_order={"name": 0, "arguments": 1}, allow_fetch=False, dotall=False, raw_pattern=False)
    rule_names = []
    for index, tool in enumerate(tools):
        arguments = tool.parameters if max_string_chars is None else _cap_strings(tool.parameters, max_string_chars)
        schema = {
            "type": "object",
            "properties": {"name": {"const": tool.name}, "arguments": arguments},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        schema = converter.resolve_refs(schema, f"tool-{index}")
        rule_names.append(converter.visit(schema, f"call-{index}"))
    rules = converter.format_grammar()
    if compact:
        rules = re.sub(r"(?m)^space ::= .*$", 'space ::= ""', rules)
    separator = r'"\n</tool_call>\n<tool_call>\n"'
    more = ""
    for _ in range(max_calls - 1):
        more = f" ({separator} call-any{more})?"
    return f'root ::= call-any{more} "\\n</tool_call>"\ncall-any ::= {" | ".join(rule_names)}\n{rules}'


def _cap_strings(schema: Any, limit: int) -> Any:
    """``schema`` with ``maxLength: limit`` on every free string (no length, format, enum or const)."""
    if isinstance(schema, list):
        return [_cap_strings(item, limit) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _cap_strings(value, limit) if key in _NESTED else value for key, value in schema.items()}
    if key_map := out.get("properties"):
        out["properties"] = {name: _cap_strings(sub, limit) for name, sub in key_map.items()}
    free = not ({"maxLength", "format", "pattern", "enum", "const"} & set(schema))
    if schema.get("type") == "string" and free:
        out["maxLength"] = max(limit, schema.get("minLength", 0))
    return out


_NESTED = ("items", "anyOf", "oneOf", "allOf", "additionalProperties", "prefixItems")


def smallest_call(tool: ToolSpec) -> str | None:
    """The shortest valid call of ``tool`` as the grammar writes it (None when it cannot tell)."""
    arguments = _smallest(tool.parameters)
    if arguments is _UNKNOWN:
        return None
    return json.dumps({"name": tool.name, "arguments": arguments}, separators=(",", ":"))


_UNKNOWN = object()


def _smallest(schema: Any) -> Any:
    if not isinstance(schema, dict) or "$ref" in schema or "allOf" in schema:
        return _UNKNOWN if schema not in (True, {}) else {}
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return min(schema["enum"], key=lambda v: len(json.dumps(v)))
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        found = [v for v in (_smallest(o) for o in options) if v is not _UNKNOWN]
        return min(found, key=lambda v: len(json.dumps(v))) if found else _UNKNOWN
    kind = schema.get("type", "object")
    kind = kind[0] if isinstance(kind, list) and kind else kind
    if kind == "string":
        return "a" * schema.get("minLength", 0) if not {"format", "pattern"} & set(schema) else _UNKNOWN
    if kind in ("integer", "number"):
        if schema.get("minimum", 0) > 0 or schema.get("exclusiveMinimum", -1) >= 0:
            return _UNKNOWN  # rare; the caller then skips the size check
        return 0 if schema.get("maximum", 0) >= 0 else _UNKNOWN
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    if kind == "array":
        item = _smallest(schema.get("items", {}))
        count = schema.get("minItems", 0)
        return _UNKNOWN if item is _UNKNOWN and count else [item] * count
    if kind == "object":
        out = {}
        for name in schema.get("required", []):
            value = _smallest((schema.get("properties") or {}).get(name, {}))
            if value is _UNKNOWN:
                return _UNKNOWN
            out[name] = value
        return out
    return _UNKNOWN


def json_grammar(schema: dict[str, Any] | None) -> str:
    """GBNF for JSON matching ``schema`` (any JSON object when ``schema`` is None)."""
    from llama_cpp.llama_grammar import SchemaConverter

    converter = SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    target = schema if schema is not None else {"type": "object"}
    target = converter.resolve_refs(target, "response")
    converter.visit(target, "")
    return converter.format_grammar()
