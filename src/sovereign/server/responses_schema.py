"""The OpenAI Responses request (``POST /v1/responses``), validated by pydantic and mapped onto
the kernel's ``ChatRequest``.

Input is a string (one user message) or a list of items: messages (``role`` + text content, as
a string or ``input_text`` / ``output_text`` parts), ``function_call`` items (calls the model
made earlier) and ``function_call_output`` items (their results). Tools are ``function`` tools;
other kinds (web search, file search, ...) and non-text content are refused with a 400 naming
them. Unknown top-level fields are accepted and ignored, as for chat completions.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sovereign.errors import InvalidRequestError
from sovereign.kernel.messages import ChatRequest, Message, ResponseFormat, ToolCall, ToolChoice, ToolSpec
from sovereign.kernel.thinking import thinking_from_request
from sovereign.server.schemas import _FUNCTION_NAME, _check_schema

__all__ = ["ResponsesRequest", "input_messages"]


class _Wire(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class FunctionToolIn(_Wire):
    type: str
    name: str | None = Field(default=None, pattern=_FUNCTION_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class NamedFunctionChoice(_Wire):
    type: Literal["function"]
    name: str = Field(min_length=1)


class TextFormatIn(_Wire):
    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str | None = Field(default=None, max_length=64)
    json_schema: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None

    model_config = ConfigDict(strict=True, extra="ignore", populate_by_name=True)


class TextIn(_Wire):
    format: TextFormatIn | None = None


class ReasoningIn(_Wire):
    effort: Literal["none", "minimal", "low", "medium", "high"] | None = None


LOGPROBS_INCLUDE = "message.output_text.logprobs"
"""The ``include`` value that asks for the output text's token log probabilities."""


class ResponsesRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")

    model: str | None = None
    input: str | list[dict[str, Any]] = Field(description="a string, or a list of input items")
    instructions: str | None = None
    tools: list[FunctionToolIn] | None = None
    tool_choice: Literal["auto", "none", "required"] | NamedFunctionChoice | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    max_tool_calls: int | None = Field(default=None, ge=1, le=64)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stream: bool = False
    store: bool = True
    previous_response_id: str | None = Field(default=None, min_length=1)
    text: TextIn | None = None
    reasoning: ReasoningIn | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    include: list[str] | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20, description="alternatives per output token")

    @field_validator("input")
    @classmethod
    def _input_not_empty(cls, value):
        if isinstance(value, list) and not value:
            raise ValueError("input must not be an empty list")
        return value

    def tool_specs(self) -> list[ToolSpec]:
        specs = []
        for index, tool in enumerate(self.tools or []):
            if tool.type != "function":
                raise InvalidRequestError(f"tools.{index}: tool type '{tool.type}' is not supported; only "
                                          "'function' tools are", param=f"tools.{index}.type")
            if not tool.name:
                raise InvalidRequestError(f"tools.{index}: a function tool needs a name", param=f"tools.{index}.name")
            parameters = tool.parameters or {"type": "object", "properties": {}}
            specs.append(ToolSpec(tool.name, tool.description or "", parameters))
        return specs

    def to_kernel(self, default_model: str, history: list[Message]) -> tuple[ChatRequest, list[Message]]:
        """The kernel request, and the new messages of this turn (to store with its output)."""
        tools = self.tool_specs()
        new = input_messages(self.input)
        system = [Message(role="system", content=self.instructions)] if self.instructions else []
        effort = self.reasoning.effort if self.reasoning is not None else None
        request = ChatRequest(
            model=self.model or default_model, messages=[*system, *history, *new],
            max_tokens=self.max_output_tokens, temperature=self.temperature, top_p=self.top_p,
            tools=tools, tool_choice=_tool_choice(self.tool_choice, tools),
            parallel_tool_calls=self.parallel_tool_calls is not False, max_tool_calls=self.max_tool_calls,
            response_format=_text_format(self.text), thinking=thinking_from_request(effort, None),
            logprobs=LOGPROBS_INCLUDE in (self.include or []), top_logprobs=self.top_logprobs or 0,
        )
        return request, new


def _tool_choice(value: str | NamedFunctionChoice | None, tools: list[ToolSpec]) -> ToolChoice:
    if value is None:
        return ToolChoice("auto")
    if isinstance(value, str):
        if value == "required" and not tools:
            raise InvalidRequestError("tool_choice 'required' needs at least one tool", param="tool_choice")
        return ToolChoice(value)
    if value.name not in {t.name for t in tools}:
        raise InvalidRequestError(f"tool_choice names function '{value.name}', which is not in tools",
                                  param="tool_choice.name")
    return ToolChoice("function", value.name)


def _text_format(text: TextIn | None) -> ResponseFormat:
    spec = text.format if text is not None else None
    if spec is None or spec.type == "text":
        return ResponseFormat()
    if spec.type == "json_object":
        return ResponseFormat("json_object")
    if spec.json_schema is None:
        raise InvalidRequestError("text.format of type 'json_schema' needs a 'schema'", param="text.format.schema")
    _check_schema(spec.json_schema)
    return ResponseFormat("json_schema", schema=spec.json_schema, name=spec.name)


# --- input items ------------------------------------------------------------------------------

_TEXT_PARTS = ("input_text", "output_text", "text", "summary_text", "reasoning_text")


def _text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequestError(f"{where}.content must be a string or a list of content parts", param=f"{where}.content")
    pieces = []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in _TEXT_PARTS or not isinstance(part.get("text"), str):
            raise InvalidRequestError(
                f"{where}.content.{index}: content part type '{kind}' is not supported; only text parts "
                "(input_text, output_text) are", param=f"{where}.content.{index}.type")
        pieces.append(part["text"])
    return "".join(pieces)


def _required_str(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or (key != "arguments" and not value):
        raise InvalidRequestError(f"{where}: '{key}' must be a non-empty string", param=f"{where}.{key}")
    return value


def _output_text(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    return _text(value, where)


def input_messages(value: str | list[dict[str, Any]]) -> list[Message]:
    """Kernel messages for a Responses ``input``: consecutive ``function_call`` items become one
    assistant message with several tool calls."""
    if isinstance(value, str):
        return [Message(role="user", content=value)]
    messages: list[Message] = []
    for index, item in enumerate(value):
        where = f"input.{index}"
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise InvalidRequestError(f"{where}: role must be user, assistant, system or developer, not "
                                          f"{role!r}", param=f"{where}.role")
            messages.append(Message(role="system" if role == "developer" else role,
                                    content=_text(item.get("content"), where)))
        elif kind == "function_call":
            arguments = item.get("arguments", "{}")
            if not isinstance(arguments, str):
                raise InvalidRequestError(f"{where}: 'arguments' must be a JSON object as a string",
                                          param=f"{where}.arguments")
            call = ToolCall(name=_required_str(item, "name", where), arguments=arguments or "{}",
                            id=_required_str(item, "call_id", where))
            last = messages[-1] if messages else None
            if last is not None and last.role == "assistant" and last.tool_calls and not last.content:
                last.tool_calls.append(call)
            else:
                messages.append(Message(role="assistant", tool_calls=[call]))
        elif kind == "function_call_output":
            messages.append(Message(role="tool", tool_call_id=_required_str(item, "call_id", where),
                                    content=_output_text(item.get("output"), where)))
        elif kind == "reasoning":
            continue  # earlier reasoning is not sent back to the model
        else:
            raise InvalidRequestError(f"{where}: input item type '{kind}' is not supported (message, function_call, "
                                      "function_call_output and reasoning are)", param=f"{where}.type")
    return messages
