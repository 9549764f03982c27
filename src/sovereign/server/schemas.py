"""The OpenAI chat-completions wire format, validated by pydantic and mapped onto the kernel's types."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sovereign.errors import InvalidRequestError
from sovereign.kernel.messages import (
    ChatRequest,
    Message,
    ResponseFormat,
    ToolCall,
    ToolChoice,
    ToolSpec,
)
from sovereign.kernel.thinking import thinking_from_request


class FunctionCallIn(BaseModel):
    name: str
    arguments: str = "{}"


class ToolCallIn(BaseModel):
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCallIn


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None

    def text(self) -> str | None:
        if isinstance(self.content, list):
            parts = [p.text or "" for p in self.content if p.type == "text"]
            if len(parts) != len(self.content):
                kinds = sorted({p.type for p in self.content if p.type != "text"})
                raise InvalidRequestError(f"unsupported content part type(s) {kinds}; only 'text' is supported", param="messages")
            return "".join(parts)
        return self.content


class FunctionDefIn(BaseModel):
    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class ToolIn(BaseModel):
    type: Literal["function"]
    function: FunctionDefIn


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    messages: list[ChatMessageIn] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int = Field(default=1, ge=1, le=1, description="only one choice is supported")
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    tools: list[ToolIn] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high"] | None = None
    thinking: dict[str, Any] | None = None
    user: str | None = None

    @field_validator("stop")
    @classmethod
    def _stop_limit(cls, value):
        items = [value] if isinstance(value, str) else (value or [])
        if len(items) > 4:
            raise ValueError("at most 4 stop sequences")
        return value

    @field_validator("thinking")
    @classmethod
    def _thinking_shape(cls, value):
        if value is not None and value.get("type", "enabled") not in ("enabled", "disabled"):
            raise ValueError("thinking.type must be 'enabled' or 'disabled'")
        return value

    def to_kernel(self, default_model: str) -> ChatRequest:
        tools = [ToolSpec(t.function.name, t.function.description, t.function.parameters) for t in self.tools or []]
        messages = []
        for m in self.messages:
            calls = [ToolCall(name=c.function.name, arguments=c.function.arguments, **({"id": c.id} if c.id else {}))
                     for c in m.tool_calls or []]
            role = "system" if m.role == "developer" else m.role
            messages.append(Message(role=role, content=m.text(), name=m.name, tool_calls=calls,
                                    tool_call_id=m.tool_call_id, reasoning_content=m.reasoning_content))
        return ChatRequest(
            model=self.model or default_model,
            messages=messages,
            max_tokens=self.max_completion_tokens or self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            stop=[self.stop] if isinstance(self.stop, str) else list(self.stop or []),
            seed=self.seed,
            tools=tools,
            tool_choice=_tool_choice(self.tool_choice, tools),
            parallel_tool_calls=self.parallel_tool_calls is not False,
            response_format=_response_format(self.response_format),
            thinking=thinking_from_request(self.reasoning_effort, self.thinking),
        )


def _tool_choice(value: str | dict | None, tools: list[ToolSpec]) -> ToolChoice:
    if value is None:
        return ToolChoice("auto")
    if isinstance(value, str):
        if value not in ("auto", "none", "required"):
            raise InvalidRequestError(f"tool_choice '{value}' is invalid: use 'auto', 'none', 'required' or a function", param="tool_choice")
        if value == "required" and not tools:
            raise InvalidRequestError("tool_choice 'required' needs at least one tool", param="tool_choice")
        return ToolChoice(value)
    name = (value.get("function") or {}).get("name")
    if value.get("type") != "function" or not name:
        raise InvalidRequestError("tool_choice object must be {'type': 'function', 'function': {'name': ...}}", param="tool_choice")
    if name not in {t.name for t in tools}:
        raise InvalidRequestError(f"tool_choice names function '{name}', which is not in tools", param="tool_choice")
    return ToolChoice("function", name)


def _response_format(value: dict | None) -> ResponseFormat:
    if not value:
        return ResponseFormat()
    kind = value.get("type")
    if kind == "text":
        return ResponseFormat()
    if kind == "json_object":
        return ResponseFormat("json_object")
    if kind == "json_schema":
        spec = value.get("json_schema") or {}
        schema = spec.get("schema")
        if not isinstance(schema, dict):
            raise InvalidRequestError("response_format.json_schema.schema must be a JSON Schema object", param="response_format")
        from jsonschema import SchemaError
        from jsonschema.validators import validator_for

        try:
            validator_for(schema).check_schema(schema)
        except SchemaError as exc:
            raise InvalidRequestError(f"response_format.json_schema.schema is invalid: {exc.message}", param="response_format") from exc
        return ResponseFormat("json_schema", schema=schema, name=spec.get("name"))
    raise InvalidRequestError(f"response_format.type '{kind}' is invalid: use 'text', 'json_object' or 'json_schema'", param="response_format")
