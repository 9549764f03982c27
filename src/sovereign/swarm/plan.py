"""The orchestrator's plan: a task split into a graph of sub-tasks, as structured output that
always parses.

The model is asked for JSON under the plan's schema (``response_format`` ``json_schema``: the
embedded kernel decodes under a grammar built from it, so the text is JSON of that shape);
pydantic validates it and ``plan_problems`` checks what a schema cannot say (unknown
dependencies, cycles, tools the parent does not have, too many sub-tasks, a tool node's call
that does not fit its tool: ``swarm/tool_nodes.py``). A plan that fails is
sent back with the problems named, up to ``attempts`` times; after that the task becomes a
one-node plan (the whole task for one sub-agent), so planning never fails a swarm. Dependencies
on ids the plan does not have are dropped first (``repair_plan``) rather than refused, and those
a tool node's arguments reference are added.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sovereign.kernel.messages import ChatRequest, ChatResponse, Message, ResponseFormat
from sovereign.swarm.tool_nodes import call_problems, references, tool_usage
from sovereign.tools.base import Tool

__all__ = ["Plan", "PlanOutcome", "PlannedCall", "SubTask", "ask_structured", "plan_problems", "plan_request",
           "repair_plan", "replan_request", "single_node_plan", "subtask_problems", "topological_order"]

_ID = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")


class PlannedCall(BaseModel):
    """A tool node's direct call: one of the parent's tools and its arguments (a string may
    reference a dependency's result as ``{node_id}``)."""

    model_config = ConfigDict(extra="ignore")

    tool: str = Field(min_length=1, max_length=64)
    arguments: dict[str, Any] = Field(default_factory=dict)


class SubTask(BaseModel):
    """One node of the plan: what one sub-agent does, or, with ``call``, one direct tool call."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=40)
    task: str = Field(min_length=1, max_length=8000)
    instructions: str = Field(default="", max_length=4000)
    tools: list[str] = Field(default_factory=list, max_length=32)
    depends_on: list[str] = Field(default_factory=list, max_length=100)
    call: PlannedCall | None = None


class Plan(BaseModel):
    """The graph: sub-tasks and, through ``depends_on``, the edges results travel along."""

    model_config = ConfigDict(extra="ignore")

    subtasks: list[SubTask] = Field(min_length=1, max_length=200)


def _schema(node: bool = False) -> dict:
    """The JSON schema the model decodes under (kept plain: the grammar converter reads it)."""
    subtask = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "task": {"type": "string"},
            "instructions": {"type": "string"},
            "tools": {"type": "array", "items": {"type": "string"}},
            "depends_on": {"type": "array", "items": {"type": "string"}},
            "call": {"type": "object", "properties": {"tool": {"type": "string"}, "arguments": {"type": "object"}},
                     "required": ["tool", "arguments"]},
        },
        "required": ["id", "task", "tools", "depends_on"],
    }
    if node:
        return subtask
    return {"type": "object", "properties": {"subtasks": {"type": "array", "items": subtask, "minItems": 1}},
            "required": ["subtasks"]}


PLAN_SCHEMA = _schema()
SUBTASK_SCHEMA = _schema(node=True)


def repair_plan(plan: Plan) -> list[str]:
    """Drop dependencies on ids the plan does not have (or on the node itself), which small
    models write often (a file name, a step they did not list), and add those a tool node's
    arguments reference; returns what was dropped."""
    ids = {s.id for s in plan.subtasks}
    dropped: list[str] = []
    for sub in plan.subtasks:
        kept = [d for d in sub.depends_on if d in ids and d != sub.id]
        dropped += [f"{sub.id} -> {d}" for d in sub.depends_on if d not in kept]
        if sub.call is not None:
            kept += [d for d in references(sub.call.arguments, ids - {sub.id}) if d not in kept]
        sub.depends_on = kept
    return dropped


def plan_problems(plan: Plan, tools: Sequence[Tool], max_nodes: int) -> list[str]:
    """What is wrong with ``plan`` beyond its shape (empty: nothing); ``tools``: the parent's."""
    problems: list[str] = []
    ids = [s.id for s in plan.subtasks]
    if len(ids) > max_nodes:
        problems.append(f"{len(ids)} sub-tasks, at most {max_nodes} allowed")
    bad_ids = [i for i in ids if not _ID.match(i)]
    if bad_ids:
        problems.append(f"ids must be letters, digits, '_', '-' or '.': {', '.join(bad_ids[:5])}")
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            problems.append(f"duplicate id '{i}'")
        seen.add(i)
    for sub in plan.subtasks:
        unknown = [d for d in sub.depends_on if d not in seen]
        if unknown:
            problems.append(f"'{sub.id}' depends on unknown ids: {', '.join(unknown)}")
        if sub.id in sub.depends_on:
            problems.append(f"'{sub.id}' depends on itself")
        problems += subtask_problems(sub, tools)
    if not problems and topological_order(plan.subtasks) is None:
        problems.append("the dependencies form a cycle")
    return problems


def subtask_problems(sub: SubTask, tools: Sequence[Tool]) -> list[str]:
    """What is wrong with one node's tools or call, given the parent's ``tools``."""
    by_name = {t.name: t for t in tools}
    if sub.call is not None:
        return call_problems(sub.id, sub.call.tool, sub.call.arguments, by_name, sub.depends_on)
    extra = [t for t in sub.tools if t not in by_name]
    if extra:
        return [f"'{sub.id}' names tools the swarm does not have: {', '.join(extra)} "
                f"(available: {', '.join(sorted(by_name)) or 'none'})"]
    return []


def topological_order(subtasks: Sequence[SubTask]) -> list[str] | None:
    """Ids in an order where each comes after what it depends on (None: a cycle)."""
    deps = {s.id: set(s.depends_on) for s in subtasks}
    order: list[str] = []
    done: set[str] = set()
    while len(order) < len(deps):
        ready = [i for i, d in deps.items() if i not in done and d <= done]
        if not ready:
            return None
        order += ready
        done.update(ready)
    return order


def single_node_plan(task: str, tools: Sequence[str]) -> Plan:
    """The fallback: the whole task for one sub-agent with every tool."""
    return Plan(subtasks=[SubTask(id="task", task=task, tools=list(tools))])


def plan_request(model: str, task: str, tools: Sequence[Tool], max_nodes: int, max_tokens: int) -> ChatRequest:
    names = [t.name for t in tools]
    system = (
        "You are the orchestrator of a swarm of agents. Split the user's task into sub-tasks that "
        "sub-agents can do in parallel. Reply with JSON only: {\"subtasks\": [{\"id\", \"task\", "
        "\"instructions\", \"tools\", \"depends_on\", \"call\"?}]}. Each task must stand on its own; list in "
        "depends_on the ids whose results a sub-task needs (they are given to it); independent "
        f"sub-tasks have none. At most {max_nodes} sub-tasks. Tools available: "
        f"{', '.join(names) or 'none'}; give each sub-task only the tools it needs."
    )
    if usage := tool_usage(tools):
        system += (
            " A sub-task that is exactly one call of a listed tool, with arguments known from the task, "
            "is a tool call, not a sub-agent: give it \"call\": {\"tool\": name, \"arguments\": {...}} "
            "and no tools. An argument may be the result of a sub-task it depends on, written \"{id}\". "
            f"Every other sub-task (reading, deciding, several steps) has no \"call\". Calls: {usage}."
        )
    return ChatRequest(model=model, messages=[Message(role="system", content=system),
                                              Message(role="user", content=task)],
                       max_tokens=max_tokens, temperature=0.0,
                       response_format=ResponseFormat(type="json_schema", schema=PLAN_SCHEMA, name="swarm_plan"))


def replan_request(model: str, task: str, failed: SubTask, reason: str, tools: Sequence[Tool],
                   max_tokens: int) -> ChatRequest:
    system = (
        "You are the orchestrator of a swarm of agents. A sub-task failed. Write one replacement "
        "sub-task (same id and depends_on) that avoids the failure. Reply with JSON only: "
        f"{{\"id\", \"task\", \"instructions\", \"tools\", \"depends_on\", \"call\"?}}. Tools available: "
        f"{', '.join(t.name for t in tools) or 'none'}."
    )
    if usage := tool_usage(tools):
        system += (" A \"call\": {\"tool\", \"arguments\"} makes it one direct tool call instead of a "
                   f"sub-agent (arguments may reference a dependency's result as \"{{id}}\"). Calls: {usage}.")
    user = (f"Overall task: {task}\n\nFailed sub-task: {failed.model_dump_json(exclude_none=True)}\n\n"
            f"Why it failed: {reason}")
    return ChatRequest(model=model, messages=[Message(role="system", content=system), Message(role="user", content=user)],
                       max_tokens=max_tokens, temperature=0.0,
                       response_format=ResponseFormat(type="json_schema", schema=SUBTASK_SCHEMA, name="swarm_replan"))


@dataclass(slots=True)
class PlanOutcome:
    """What structured asking produced: the value (None when every attempt failed), the
    problems of each failed attempt, and the responses (for accounting)."""

    value: BaseModel | None
    problems: list[str]
    responses: list[ChatResponse]


async def ask_structured(call: Callable[[ChatRequest], Awaitable[ChatResponse]], request: ChatRequest,
                         kind: type[BaseModel], check: Callable[[BaseModel], list[str]], *,
                         attempts: int = 3) -> PlanOutcome:
    """Ask for JSON of ``kind``; on a parse, validation or ``check`` failure, ask again with the
    problems named (the failed answer is in the conversation)."""
    problems: list[str] = []
    responses: list[ChatResponse] = []
    messages = list(request.messages)
    for _ in range(max(attempts, 1)):
        response = await call(_with_messages(request, messages))
        responses.append(response)
        text = (response.message.content or "").strip()
        found = _parse(text, kind)
        issues = found if isinstance(found, list) else check(found)
        if not issues:
            return PlanOutcome(found, problems, responses)  # type: ignore[arg-type]
        problems.append("; ".join(issues))
        messages += [Message(role="assistant", content=text[:4000]),
                     Message(role="user", content="That is not a valid answer: " + "; ".join(issues)
                             + ". Reply again with JSON only, fixing these problems.")]
    return PlanOutcome(None, problems, responses)


def _with_messages(request: ChatRequest, messages: list[Message]) -> ChatRequest:
    from dataclasses import replace

    return replace(request, messages=list(messages))


def _parse(text: str, kind: type[BaseModel]) -> BaseModel | list[str]:
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        return ["no JSON object in the answer"]
    try:
        data = orjson.loads(text[start:end + 1])
    except orjson.JSONDecodeError as exc:
        return [f"the JSON does not parse: {exc}"]
    try:
        return kind.model_validate(data)
    except ValidationError as exc:
        return [f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()[:8]]
