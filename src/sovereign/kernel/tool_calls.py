"""Tool definitions in, tool calls out: validate schemas, parse native formats, build grammars.

Qwen-family models call tools as ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``;
some emit the bare JSON object. Either is turned into ``ToolCall`` objects, never left as text
in ``content``. For local models a GBNF grammar built from the tools' JSON Schemas constrains
decoding so the arguments always validate.
"""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
from jsonschema.validators import validator_for

from sovereign.errors import InvalidToolSchemaError
from sovereign.kernel.messages import ToolCall, ToolSpec

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)


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


def _to_call(obj: Any, tools_by_name: dict[str, ToolSpec]) -> ToolCall | None:
    if not isinstance(obj, dict) or obj.get("name") not in tools_by_name:
        return None
    arguments = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return None
    return ToolCall(name=obj["name"], arguments=json.dumps(arguments, ensure_ascii=False))


def parse_tool_calls(text: str, tools: list[ToolSpec]) -> tuple[str | None, list[ToolCall]]:
    """Split model output into (content, tool calls); text that is no valid call stays content."""
    by_name = {tool.name: tool for tool in tools}
    if TOOL_CALL_OPEN in text:
        calls = []
        for body in _BLOCK.findall(text):
            try:
                call = _to_call(json.loads(body), by_name)
            except json.JSONDecodeError:
                call = None
            if call is None:
                return text, []
            calls.append(call)
        before = text.split(TOOL_CALL_OPEN, 1)[0].strip()
        return (before or None), calls
    stripped = text.strip()
    if stripped.startswith("```") and stripped.endswith("```"):
        stripped = (_unfence(stripped) or "")[:-3].strip()
    if stripped.startswith("{"):
        try:
            parsed = json.loads(stripped)
        except json.JSONDecodeError:
            return text, []
        items = parsed if isinstance(parsed, list) else [parsed]
        calls = [_to_call(item, by_name) for item in items]
        if calls and all(calls):
            return None, [c for c in calls if c]
    return text, []


_CALL_START = '{"name":"'
_FENCE = re.compile(r"^```[a-zA-Z]*\n")


def _unfence(text: str) -> str | None:
    """Text inside a leading Markdown code fence (None while the fence line is incomplete)."""
    if not text.startswith("```"):
        return text
    match = _FENCE.match(text)
    if match is None:
        return None if "\n" not in text else ""
    return text[match.end():].lstrip()


def looks_like_tool_call(prefix: str) -> bool | None:
    """Whether generated text so far starts a tool call: True, False, or None (cannot tell yet).

    Recognises ``<tool_call>``, and a JSON object opening with ``"name"`` — bare or inside a
    Markdown code fence, as small models often write it.
    """
    head = prefix.lstrip()
    if not head:
        return None
    if head.startswith(TOOL_CALL_OPEN):
        return True
    if TOOL_CALL_OPEN.startswith(head) or "```".startswith(head):
        return None
    body = _unfence(head)
    if body is None:
        return None
    if not body:
        return None
    compact = "".join(body.split())
    if len(compact) < len(_CALL_START):
        return None if _CALL_START.startswith(compact) else False
    return compact.startswith(_CALL_START)


def tool_call_grammar(tools: list[ToolSpec], *, parallel: bool) -> str:
    """GBNF for one or more ``{"name", "arguments"}`` objects, each closed by ``</tool_call>``.

    The prompt is expected to end with ``<tool_call>\\n`` already (the decoder is steered into
    the call), so the grammar starts at the JSON object.
    """
    from llama_cpp.llama_grammar import SchemaConverter

    converter = SchemaConverter(prop_order={"name": 0, "arguments": 1}, allow_fetch=False, dotall=False, raw_pattern=False)
    rule_names = []
    for index, tool in enumerate(tools):
        schema = {
            "type": "object",
            "properties": {"name": {"const": tool.name}, "arguments": tool.parameters},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        schema = converter.resolve_refs(schema, f"tool-{index}")
        rule_names.append(converter.visit(schema, f"call-{index}"))
    rules = converter.format_grammar()
    call = " | ".join(rule_names)
    separator = r'"\n</tool_call>\n<tool_call>\n"'
    repeat = f" ({separator} ({call}))*" if parallel else ""
    return f'root ::= ({call}){repeat} "\\n</tool_call>"\n{rules}'


def json_grammar(schema: dict[str, Any] | None) -> str:
    """GBNF for JSON matching ``schema`` (any JSON object when ``schema`` is None)."""
    from llama_cpp.llama_grammar import SchemaConverter

    converter = SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    target = schema if schema is not None else {"type": "object"}
    target = converter.resolve_refs(target, "response")
    converter.visit(target, "")
    return converter.format_grammar()
