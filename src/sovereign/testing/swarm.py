"""A deterministic, scripted model double for swarms (it implements the ``Model`` protocol; it is
not a language model), and a tool to go with it. Both pickle, so Ray workers can use them.

``SwarmScriptModel`` answers by the kind of request:
- a plan (``response_format`` named ``swarm_plan``): ``plan`` if given, else one independent
  sub-task per line of the task that starts with ``- `` (each with the tool ``tool``, if any); with
  ``tool_nodes``, each such line is a tool node instead: a direct call of ``tool`` with
  ``{arg: <last word of the line>}`` (no sub-agent); the first ``bad_plans`` answers are not JSON
  (to exercise the re-ask);
- a re-plan (``swarm_replan``): the failed sub-task with ``FAIL`` taken out of its task;
- a synthesis (the orchestrator's merge): ``merged:`` and the sub-agents' results, one a line;
- a sub-agent turn: a task containing ``FAIL`` raises ``ModelUnavailableError`` (the run fails);
  with no tool result yet, a call of ``tool`` with ``{arg: <last word of the task's first line>}``;
  with ``hops`` > 1, after each of the first ``hops - 1`` results another call, whose argument is
  the link (``href="/<x>"``) in the latest result (a sub-task that reads a page, then follows a
  link found in it); then the answer ``<first line> => <last tool result>``.
``latency`` seconds are awaited on every call (``latency=0.3``: "a scripted model with 300 ms
per call").
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from sovereign.errors import ModelUnavailableError
from sovereign.kernel.messages import ChatRequest, ChatResponse, Message, StreamEvent, ToolCall, Usage
from sovereign.tools.base import PURE, Tool, tool

__all__ = ["SwarmScriptModel", "lookup_tool"]


def _usage(request: ChatRequest, text: str) -> Usage:
    prompt = sum(len((m.content or "").split()) for m in request.messages)
    return Usage(prompt_tokens=max(prompt, 1), completion_tokens=max(len(text.split()), 1), requests=1)


@dataclass
class SwarmScriptModel:
    name: str = "swarm-script"
    plan: dict[str, Any] | None = None
    tool: str = "lookup"
    arg: str = "key"
    latency: float = 0.0
    bad_plans: int = 0
    hops: int = 1
    """Tool calls a sub-agent makes one after another before it answers (``hops + 1`` turns)."""
    tool_nodes: bool = False
    """Plan each line as a tool node (a direct call of ``tool``) rather than a sub-agent."""
    calls: int = 0
    _plans_asked: int = field(default=0, repr=False)

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.calls += 1
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        fmt = request.response_format
        if fmt.type == "json_schema" and fmt.name == "swarm_plan":
            text = self._plan(request)
        elif fmt.type == "json_schema" and fmt.name == "swarm_replan":
            text = self._replan(request)
        elif _system(request).startswith("You are the orchestrator"):
            text = self._merge(request)
        else:
            return self._agent_turn(request)
        return ChatResponse(model=self.name, message=Message(role="assistant", content=text),
                            usage=_usage(request, text))

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        response = await self.complete(request)
        yield StreamEvent(content=response.message.content, tool_calls=list(response.message.tool_calls),
                          finish_reason=response.finish_reason, usage=response.usage)

    def _plan(self, request: ChatRequest) -> str:
        self._plans_asked += 1
        if self._plans_asked <= self.bad_plans:
            return "Sure! Here is my plan: first fetch everything, then merge."
        if self.plan is not None:
            return orjson.dumps(self.plan).decode()
        task = _last_user(request, first=True)
        lines = [line[2:].strip() for line in task.splitlines() if line.startswith("- ")]
        tools = [self.tool] if self.tool else []
        subtasks = [{"id": f"n{i + 1}", "task": line, "instructions": "", "tools": tools, "depends_on": []}
                    for i, line in enumerate(lines)] or [{"id": "n1", "task": task, "tools": [], "depends_on": []}]
        if self.tool_nodes and self.tool:
            for sub in subtasks:
                words = sub["task"].split()
                sub["call"] = {"tool": self.tool, "arguments": {self.arg: words[-1] if words else ""}}
        return orjson.dumps({"subtasks": subtasks}).decode()

    def _replan(self, request: ChatRequest) -> str:
        user = _last_user(request)
        failed = orjson.loads(user.split("Failed sub-task: ", 1)[1].split("\n\nWhy it failed:", 1)[0])
        failed["task"] = failed["task"].replace("FAIL", "").replace("  ", " ").strip()
        return orjson.dumps(failed).decode()

    def _merge(self, request: ChatRequest) -> str:
        results = _last_user(request).split("Results of the sub-agents:", 1)[-1]
        kept = [line.strip() for line in results.splitlines() if line.strip() and not line.startswith("[")]
        return "merged:\n" + "\n".join(kept)

    def _agent_turn(self, request: ChatRequest) -> ChatResponse:
        task = _last_user(request, first=True)
        first = task.splitlines()[0] if task else ""
        if "FAIL" in first:
            raise ModelUnavailableError(f"scripted failure for '{first}'")
        results = [m.content or "" for m in request.messages if m.role == "tool"]
        link = _LINK.search(results[-1]) if results else None
        done = len(results) >= self.hops or (bool(results) and link is None)
        if done or not any(spec.name == self.tool for spec in request.tools):
            text = f"{first} => {results[-1] if results else 'done'}"
            return ChatResponse(model=self.name, message=Message(role="assistant", content=text),
                                usage=_usage(request, text))
        target = link.group(1) if link is not None else (first.split()[-1] if first.split() else "")
        arguments = orjson.dumps({self.arg: target}).decode()
        call = ToolCall(name=self.tool, arguments=arguments, id=f"call_{self.calls}")
        return ChatResponse(model=self.name, message=Message(role="assistant", tool_calls=[call]),
                            finish_reason="tool_calls", usage=_usage(request, arguments))


_LINK = re.compile(r'href="/?([^"]+)"')


def _system(request: ChatRequest) -> str:
    return next((m.content or "" for m in request.messages if m.role == "system"), "")


def _last_user(request: ChatRequest, *, first: bool = False) -> str:
    users = [m.content or "" for m in request.messages if m.role == "user"]
    if not users:
        return ""
    return users[0] if first else users[-1]


def lookup_tool(*, latency: float = 0.0, log: str | None = None) -> Tool:
    """``lookup(key)`` → ``value-of-<key>``, after ``latency`` seconds; each call is appended to
    the file ``log`` (to count calls across processes)."""

    @tool(effects=PURE)
    async def lookup(key: str) -> str:
        """Look up the value stored under a key."""
        if latency > 0:
            await asyncio.sleep(latency)
        if log is not None:
            with open(log, "a", encoding="utf-8") as f:
                f.write(f"{key} {time.time():.3f}\n")
        return f"value-of-{key}"

    return lookup
