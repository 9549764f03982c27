"""The OpenAI chat-completions wire format, validated by pydantic and mapped onto the kernel's types.

Every field has a precise type (strict: no "5" for 5, no "yes" for true), so a malformed body is
refused with a 400 naming the field before anything runs. Unknown top-level fields are accepted
and ignored, as OpenAI-compatible servers do; the nested objects of the spec ignore unknown keys.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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

_FUNCTION_NAME = r"^[A-Za-z0-9_.:-]{1,64}$"


class _Wire(BaseModel):
    """A nested object of the wire format: strict types, unknown keys ignored."""

    model_config = ConfigDict(strict=True, extra="ignore")


class FunctionCallIn(_Wire):
    name: str = Field(min_length=1, max_length=256)
    arguments: str = "{}"


class ToolCallIn(_Wire):
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCallIn


class ImageUrlIn(_Wire):
    url: str = Field(min_length=1, description="a data URL (data:image/png;base64,...) or a workspace file path")
    detail: str | None = None


class InputAudioIn(_Wire):
    data: str = Field(min_length=1, description="base64 audio")
    format: str | None = None


class ContentPart(_Wire):
    type: str = Field(min_length=1)
    text: str | None = None
    image_url: ImageUrlIn | None = None
    input_audio: InputAudioIn | None = None

    @model_validator(mode="after")
    def _part_has_its_field(self) -> ContentPart:
        if self.type == "text" and self.text is None:
            raise ValueError("a content part of type 'text' needs a 'text' string")
        if self.type == "image_url" and self.image_url is None:
            raise ValueError("a content part of type 'image_url' needs an 'image_url' object: {'url': ...}")
        if self.type == "input_audio" and self.input_audio is None:
            raise ValueError("a content part of type 'input_audio' needs an 'input_audio' object: "
                             "{'data': base64, 'format': 'wav'}")
        return self


class ChatMessageIn(_Wire):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None

    def images(self) -> list[str]:
        """The image URLs left for a model that reads images natively (``expand_media``)."""
        if not isinstance(self.content, list):
            return []
        return [p.image_url.url for p in self.content if p.type == "image_url" and p.image_url is not None]

    def text(self) -> str | None:
        if isinstance(self.content, list):
            parts = [p.text or "" for p in self.content if p.type == "text"]
            if len(parts) + len(self.images()) != len(self.content):
                kinds = sorted({p.type for p in self.content if p.type != "text"})
                raise InvalidRequestError(f"unsupported content part type(s) {kinds}; use 'text', 'image_url' or "
                                          "'input_audio'", param="messages")
            return "".join(parts)
        return self.content


class FunctionDefIn(_Wire):
    name: str = Field(pattern=_FUNCTION_NAME, description="letters, digits, _ . : - (at most 64)")
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None


class ToolIn(_Wire):
    type: Literal["function"]
    function: FunctionDefIn


class NamedFunction(_Wire):
    name: str = Field(min_length=1)


class NamedToolChoice(_Wire):
    type: Literal["function"]
    function: NamedFunction


class JsonSchemaSpec(_Wire):
    model_config = ConfigDict(strict=True, extra="ignore", populate_by_name=True)

    name: str | None = Field(default=None, max_length=64)
    description: str | None = None
    json_schema: dict[str, Any] = Field(alias="schema", description="the JSON Schema the answer must match")
    strict: bool | None = None


class ResponseFormatIn(_Wire):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaSpec | None = None

    @model_validator(mode="after")
    def _schema_when_needed(self) -> ResponseFormatIn:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("type 'json_schema' needs a json_schema object: {'name': ..., 'schema': {...}}")
        return self


class StreamOptions(_Wire):
    include_usage: bool | None = None


class ThinkingIn(_Wire):
    type: Literal["enabled", "disabled"] = "enabled"
    budget_tokens: int | None = Field(default=None, ge=1, le=1_000_000)


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")

    model: str | None = None
    messages: list[ChatMessageIn] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int = Field(default=1, ge=1, le=1, description="only one choice is supported")
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    tools: list[ToolIn] | None = None
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_tool_calls: int | None = Field(default=None, ge=1, le=64, description="most tool calls in one reply")
    response_format: ResponseFormatIn | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high"] | None = None
    thinking: ThinkingIn | None = None
    user: str | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20, description="alternatives per token (needs logprobs)")
    data_class: Literal["public", "internal", "private"] | None = Field(
        default=None, description='model "auto": how sensitive the messages are (private never leaves the machine)')

    @field_validator("stop")
    @classmethod
    def _stop_limit(cls, value):
        items = [value] if isinstance(value, str) else (value or [])
        if len(items) > 4:
            raise ValueError("at most 4 stop sequences")
        return value

    @property
    def explicit_thinking(self) -> bool:
        """Whether the caller set the reasoning effort itself (the router then keeps it)."""
        return self.reasoning_effort is not None or self.thinking is not None

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def to_kernel(self, default_model: str) -> ChatRequest:
        tools = [ToolSpec(t.function.name, t.function.description, t.function.parameters) for t in self.tools or []]
        messages = []
        for m in self.messages:
            calls = [ToolCall(name=c.function.name, arguments=c.function.arguments, **({"id": c.id} if c.id else {}))
                     for c in m.tool_calls or []]
            role = "system" if m.role == "developer" else m.role
            messages.append(Message(role=role, content=m.text(), name=m.name, tool_calls=calls,
                                    tool_call_id=m.tool_call_id, reasoning_content=m.reasoning_content,
                                    images=m.images()))
        thinking = self.thinking.model_dump() if self.thinking is not None else None
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
            max_tool_calls=self.max_tool_calls,
            response_format=_response_format(self.response_format),
            thinking=thinking_from_request(self.reasoning_effort, thinking),
            logprobs=bool(self.logprobs),
            top_logprobs=self._top_logprobs(),
        )

    def _top_logprobs(self) -> int:
        if self.top_logprobs and not self.logprobs:
            raise InvalidRequestError("top_logprobs needs logprobs: true", param="top_logprobs")
        return self.top_logprobs or 0


def _tool_choice(value: str | NamedToolChoice | None, tools: list[ToolSpec]) -> ToolChoice:
    if value is None:
        return ToolChoice("auto")
    if isinstance(value, str):
        if value == "required" and not tools:
            raise InvalidRequestError("tool_choice 'required' needs at least one tool", param="tool_choice")
        return ToolChoice(value)
    name = value.function.name
    if name not in {t.name for t in tools}:
        raise InvalidRequestError(f"tool_choice names function '{name}', which is not in tools",
                                  param="tool_choice.function.name")
    return ToolChoice("function", name)


def _response_format(value: ResponseFormatIn | None) -> ResponseFormat:
    if value is None or value.type == "text":
        return ResponseFormat()
    if value.type == "json_object":
        return ResponseFormat("json_object")
    spec = value.json_schema
    assert spec is not None  # the model validator requires it for json_schema
    _check_schema(spec.json_schema)
    return ResponseFormat("json_schema", schema=spec.json_schema, name=spec.name)


def _check_schema(schema: dict[str, Any]) -> None:
    from jsonschema import SchemaError
    from jsonschema.validators import validator_for

    param = "response_format.json_schema.schema"
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        raise InvalidRequestError(f"{param} is invalid: {exc.message}", param=param) from exc
    except (TypeError, ValueError, LookupError, RecursionError) as exc:  # e.g. an unhashable "$schema"
        raise InvalidRequestError(f"{param} is not a usable JSON Schema: {exc}", param=param) from exc
