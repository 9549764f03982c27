"""Kernel stream events rendered as an OpenAI Responses object and its stream events.

``OutputBuilder`` consumes the governed model's ``StreamEvent``s and returns, for each, the
Responses events it makes (``response.output_item.added``, ``response.output_text.delta``,
``response.function_call_arguments.done``, ...), while it collects the output items; the
non-streaming route feeds it the same events and keeps only the final object, so both modes
return the same response.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sovereign.kernel.messages import Message, StreamEvent, TokenLogprob, ToolCall, Usage
from sovereign.server.openai_format import token_logprobs_json
from sovereign.server.responses_schema import ResponsesRequest

__all__ = ["OutputBuilder", "ResponseMeta", "error_event", "usage_json"]


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def usage_json(usage: Usage) -> dict[str, Any]:
    out: dict[str, Any] = {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }
    if usage.estimated:
        out["estimated"] = True
    return out


@dataclass(slots=True)
class ResponseMeta:
    """What the response object echoes of its request."""

    id: str
    created_at: int
    model: str
    body: ResponsesRequest

    def envelope(self, status: str, output: list[dict[str, Any]], usage: Usage | None,
                 incomplete: str | None = None, cost_usd: float | None = None) -> dict[str, Any]:
        body = self.body
        choice = body.tool_choice
        text_format = body.text.format.model_dump(by_alias=True, exclude_none=True) if body.text and body.text.format \
            else {"type": "text"}
        out: dict[str, Any] = {
            "id": self.id, "object": "response", "created_at": self.created_at, "status": status,
            "error": None, "incomplete_details": {"reason": incomplete} if incomplete else None,
            "instructions": body.instructions, "max_output_tokens": body.max_output_tokens, "model": self.model,
            "output": output, "parallel_tool_calls": body.parallel_tool_calls is not False,
            "previous_response_id": body.previous_response_id,
            "reasoning": {"effort": body.reasoning.effort if body.reasoning else None, "summary": None},
            "store": body.store, "temperature": body.temperature, "top_p": body.top_p,
            "text": {"format": text_format},
            "tool_choice": choice.model_dump() if choice is not None and not isinstance(choice, str) else (choice or "auto"),
            "tools": [t.model_dump(exclude_none=True) for t in body.tools or []],
            "truncation": "disabled", "usage": usage_json(usage) if usage is not None else None,
            "user": body.user, "metadata": body.metadata or {},
        }
        if cost_usd is not None:
            out["cost_usd"] = cost_usd
        return out


@dataclass
class _Open:
    """The output item being streamed: a reasoning item or a message, and its text so far."""

    kind: str
    id: str
    index: int
    text: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)


class OutputBuilder:
    """Turns kernel stream events into Responses stream events and output items."""

    def __init__(self, meta: ResponseMeta) -> None:
        self.meta = meta
        self.items: list[dict[str, Any]] = []
        self.calls: list[ToolCall] = []
        self.usage = Usage()
        self.finish: str | None = None
        self._sequence = 0
        self._open: _Open | None = None

    def _event(self, type_: str, **fields: Any) -> dict[str, Any]:
        event = {"type": type_, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return event

    def next_sequence(self) -> int:
        self._sequence += 1
        return self._sequence - 1

    def start(self) -> list[dict[str, Any]]:
        pending = self.meta.envelope("in_progress", [], None)
        return [self._event("response.created", response=pending),
                self._event("response.in_progress", response=pending)]

    def feed(self, event: StreamEvent) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if event.reasoning_content:
            out += self._text("reasoning", event.reasoning_content)
        if event.content:
            out += self._text("message", event.content, event.logprobs)
        elif event.logprobs and self._open is not None and self._open.kind == "message":
            self._open.logprobs.extend(event.logprobs)  # tokens whose text came earlier or was held back
        for call in event.tool_calls:
            out += self._close()
            out += self._call(call)
        if event.usage is not None:
            self.usage = event.usage
        if event.finish_reason is not None:
            self.finish = event.finish_reason
        return out

    def finish_events(self, cost_usd: float | None) -> list[dict[str, Any]]:
        """The closing events: open items done, then ``response.completed`` (or ``.incomplete``)."""
        out = self._close()
        if not self.items:  # an empty answer is still one (empty) message
            out += self._begin("message") + self._close()
        final = self.response(cost_usd)
        kind = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
        return [*out, self._event(kind, response=final)]

    def response(self, cost_usd: float | None) -> dict[str, Any]:
        incomplete = "max_output_tokens" if self.finish == "length" else None
        return self.meta.envelope("incomplete" if incomplete else "completed", list(self.items), self.usage,
                                  incomplete, cost_usd)

    def message(self) -> Message:
        """The assistant's turn as a kernel message (stored for ``previous_response_id``)."""
        text = "".join(part["text"] for item in self.items if item["type"] == "message" for part in item["content"])
        return Message(role="assistant", content=text or None, tool_calls=list(self.calls))

    # --- items -------------------------------------------------------------------------------

    def _text(self, kind: str, piece: str, logprobs: list[TokenLogprob] | None = None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self._open is None or self._open.kind != kind:
            out += self._close()
            out += self._begin(kind)
        current = self._open
        assert current is not None
        current.text.append(piece)
        current.logprobs.extend(logprobs or [])
        delta = "response.output_text.delta" if kind == "message" else "response.reasoning_text.delta"
        extra = {"logprobs": token_logprobs_json(logprobs or [])} if kind == "message" else {}
        out.append(self._event(delta, item_id=current.id, output_index=current.index, content_index=0,
                               delta=piece, **extra))
        return out

    def _begin(self, kind: str) -> list[dict[str, Any]]:
        current = _Open(kind, _id("msg" if kind == "message" else "rs"), len(self.items))
        self._open = current
        self.items.append(self._item(current, "in_progress"))
        return [self._event("response.output_item.added", output_index=current.index, item=self._item(current, "in_progress")),
                self._event("response.content_part.added", item_id=current.id, output_index=current.index,
                            content_index=0, part=self._part(kind, ""))]

    def _close(self) -> list[dict[str, Any]]:
        current = self._open
        if current is None:
            return []
        self._open = None
        text = "".join(current.text)
        item = self._item(current, "completed")
        self.items[current.index] = item
        if current.kind == "message":
            done = self._event("response.output_text.done", item_id=current.id, output_index=current.index,
                               content_index=0, text=text, logprobs=token_logprobs_json(current.logprobs))
        else:
            done = self._event("response.reasoning_text.done", item_id=current.id, output_index=current.index,
                               content_index=0, text=text)
        return [done,
                self._event("response.content_part.done", item_id=current.id, output_index=current.index,
                            content_index=0, part=self._part(current.kind, text, current.logprobs)),
                self._event("response.output_item.done", output_index=current.index, item=item)]

    def _call(self, call: ToolCall) -> list[dict[str, Any]]:
        self.calls.append(call)
        index, item_id = len(self.items), _id("fc")
        item = {"type": "function_call", "id": item_id, "call_id": call.id, "name": call.name,
                "arguments": call.arguments, "status": "completed"}
        self.items.append(item)
        return [self._event("response.output_item.added", output_index=index,
                            item={**item, "arguments": "", "status": "in_progress"}),
                self._event("response.function_call_arguments.delta", item_id=item_id, output_index=index,
                            delta=call.arguments),
                self._event("response.function_call_arguments.done", item_id=item_id, output_index=index,
                            arguments=call.arguments, name=call.name),
                self._event("response.output_item.done", output_index=index, item=item)]

    @staticmethod
    def _part(kind: str, text: str, logprobs: list[TokenLogprob] | None = None) -> dict[str, Any]:
        if kind == "message":
            return {"type": "output_text", "text": text, "annotations": [], "logprobs": token_logprobs_json(logprobs or [])}
        return {"type": "reasoning_text", "text": text}

    def _item(self, current: _Open, status: str) -> dict[str, Any]:
        text = "".join(current.text)
        if current.kind == "message":
            content = [self._part("message", text, current.logprobs)] if status == "completed" else []
            return {"type": "message", "id": current.id, "status": status, "role": "assistant", "content": content}
        return {"type": "reasoning", "id": current.id, "summary": [], "status": status,
                "content": [self._part("reasoning", text)] if status == "completed" else []}


def error_event(sequence: int, message: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"type": "error", "sequence_number": sequence, "message": message, "code": code, "param": param}
