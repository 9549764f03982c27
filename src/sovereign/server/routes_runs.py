"""``/v1/runs``: create agent runs, read them, stream their steps (SSE), cancel and resume them.

A run created here is driven in the background by one ``Runner`` per app; its tools that need
approval wait in the approvals queue (``/v1/approvals``). Callers see their own runs; admins see all.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from sovereign.agent import Agent, Runner, RunRecord, RunStore
from sovereign.agent.agent import AgentConfig, BudgetConfig, agent_config, weakening_settings
from sovereign.agent.budget import Budget
from sovereign.agent.errors import RunNotFoundError
from sovereign.agent.store import TERMINAL
from sovereign.errors import PermissionDeniedError
from sovereign.governance.authz import authorize
from sovereign.server import swarm_api

__all__ = ["router"]

router = APIRouter(prefix="/v1/runs", tags=["runs"])


class RunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: str = Field(min_length=1, max_length=100_000)
    agent: str | None = Field(default=None, description="an agent defined in config")
    definition: AgentConfig | None = Field(default=None, description="an agent defined inline")
    budget: BudgetConfig | None = None
    model: str | None = None
    mode: Literal["tools", "code"] | None = Field(default=None, description="how the agent acts (overrides its own)")
    wait: bool = Field(default=False, description="answer when the run ends instead of at once")
    swarm: bool | swarm_api.SwarmOptions | None = Field(
        default=None, description="split the task into sub-tasks run by parallel sub-agents under one budget")


class RunResume(BaseModel):
    model_config = ConfigDict(extra="forbid")

    budget: BudgetConfig | None = None


def _runner(request: Request) -> Runner:
    state = request.app.state
    runner = getattr(state, "agent_runner", None)
    if runner is None:
        from sovereign.tools.approvals import ApprovalQueue

        services = state.services
        runner = Runner(services, approver=ApprovalQueue(services.db))
        state.agent_runner = runner
    return runner


def _principal(request: Request) -> Any:
    return getattr(request.state, "principal", None)


def _owner(request: Request) -> str | None:
    principal = _principal(request)
    return principal.identity_id if principal is not None else None


def _visible(request: Request, record: RunRecord) -> RunRecord:
    principal = _principal(request)
    if principal is not None and principal.role != "admin" and record.owner != principal.identity_id:
        raise RunNotFoundError(f"no run with id '{record.id}'", param="run_id")
    return record


def _authorise(request: Request, agent: Agent, model: str | None = None) -> None:
    """The caller may run ``agent`` (role, agent scope), each of its tools and its model."""
    principal = _principal(request)
    if principal is None:
        return
    authorize(principal, agent=agent.name, action="use")
    for tool in agent.tools:
        authorize(principal, tool=tool.name)
    if (model or agent.model) not in (None, "auto"):
        authorize(principal, model=model or agent.model)


def _admin_only_settings(request: Request, config: AgentConfig) -> None:
    """Settings of an inline definition that weaken security are for admins only (403 naming
    the field otherwise); an admin's use of them is audited."""
    weakened = weakening_settings(config)
    if not weakened:
        return
    principal = _principal(request)
    if principal is None or principal.role != "admin":
        role = principal.role if principal is not None else "none"
        fields = ", ".join(f"{name} = {value!r}" for name, value in weakened.items())
        raise PermissionDeniedError(
            f"{fields} weakens security: only an admin may set it in an agent definition (your role: {role})",
            code="admin_only_setting", param="definition." + next(iter(weakened)),
        )
    request.app.state.services.audit.append("policy.override", principal.identity_name, {
        "agent": config.name, "identity_id": principal.identity_id, "key_id": principal.key_id,
        "settings": weakened})


def _build(request: Request, body: RunCreate) -> Agent:
    services = request.app.state.services
    if body.definition is not None:
        config = body.definition
        _admin_only_settings(request, config)
    else:
        config = agent_config(body.agent, services.settings.home, services.settings.config_path, services=services)
    agent = config.build(swarm_api.resolver(request, _runner(request)))
    agent.owner = _owner(request) or agent.owner
    if body.budget is not None:
        agent.budget = Budget(**body.budget.model_dump())
    if body.model is not None:
        agent.model = body.model
    if body.mode is not None:
        agent.mode = body.mode
    if agent.model is None:
        agent.model = _runner(request).model_name_for(agent)
    if agent.model != "auto":  # auto: the router picks among the models the key may use (a refusal is a 403)
        services.registry.get(agent.model)  # an unknown model is a 404 now, not a failed run later
    _authorise(request, agent)
    return agent


@router.post("", status_code=201)
async def create_run(request: Request, body: RunCreate) -> dict:
    runner = _runner(request)
    agent = _build(request, body)
    if body.swarm:
        options = body.swarm if isinstance(body.swarm, swarm_api.SwarmOptions) else swarm_api.SwarmOptions()
        swarm = swarm_api.swarm_of(request, runner, options.executor)
        handle = swarm.start(agent, body.task, budget=options.budget(request.app.state.services.settings.swarm),
                             principal=_principal(request))
    else:
        handle = runner.start(agent, body.task, principal=_principal(request))
    if body.wait:
        await asyncio.shield(handle.task)
    out = runner.store.get(handle.run_id, with_steps=body.wait).to_dict(with_steps=body.wait)
    tree = swarm_api.swarm_tree(runner, handle.run_id)
    return out | ({"swarm": tree} if tree is not None else {})


@router.get("")
async def list_runs(request: Request, limit: int = Query(default=20, ge=1, le=500),
                    status: str | None = None) -> dict:
    principal = _principal(request)
    owner = None if principal is None or principal.role == "admin" else principal.identity_id
    records = _runner(request).store.list(limit=limit, owner=owner, status=status)
    return {"object": "list", "data": [r.to_dict() for r in records]}


@router.get("/{run_id}")
async def get_run(request: Request, run_id: str, steps: bool = True) -> dict:
    record = _visible(request, _runner(request).store.get(run_id, with_steps=steps))
    out = record.to_dict(with_steps=steps)
    out["live"] = run_id in _runner(request).handles
    tree = swarm_api.swarm_tree(_runner(request), run_id)
    return out | ({"swarm": tree} if tree is not None else {})


@router.post("/{run_id}/cancel")
async def cancel_run(request: Request, run_id: str) -> dict:
    runner = _runner(request)
    record = _visible(request, runner.store.get(run_id, with_steps=False))
    handle = runner.handles.get(run_id)
    if handle is not None:
        handle.cancel()
        try:
            async with asyncio.timeout(10):
                await asyncio.shield(handle.task)
        except (asyncio.CancelledError, TimeoutError):
            pass
    elif record.status not in TERMINAL:
        runner.store.set_status(run_id, "cancelled", stop_reason="cancelled (not running in this server)")
    return runner.store.get(run_id, with_steps=False).to_dict()


@router.post("/{run_id}/resume")
async def resume_run(request: Request, run_id: str, body: RunResume | None = None) -> dict:
    """Continue a run as the caller: its key must be scoped for the run's agent, tools and model."""
    runner = _runner(request)
    record = _visible(request, runner.store.get(run_id, with_steps=False))
    budget = Budget(**body.budget.model_dump()) if body is not None and body.budget is not None else None
    agent = AgentConfig.model_validate(record.agent_config).build(swarm_api.resolver(request, runner))
    _authorise(request, agent, record.model)
    if swarm_api.is_resumable_swarm(runner, run_id):
        handle = swarm_api.swarm_of(request, runner).start_resume(run_id, agent=agent, principal=_principal(request))
    else:
        handle = runner.start_resume(run_id, agent=agent, budget=budget, principal=_principal(request))
    return runner.store.get(handle.run_id, with_steps=False).to_dict()


def _sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _events(runner: Runner, store: RunStore, run_id: str, request: Request) -> AsyncIterator[str]:
    wake = asyncio.Event()
    unsubscribe = runner.subscribe(lambda e: wake.set() if e.run_id == run_id else None)
    last = -1
    nodes: dict[str, tuple] = {}
    try:
        while True:
            for step in store.steps(run_id, after=last):
                yield _sse("step", {"run_id": run_id, "step": step.to_dict(), "line": step.summary_line()})
                last = step.index
            for node in swarm_api.node_changes(runner, run_id, nodes):
                yield _sse("node", {"run_id": run_id, "node": node})
            record = store.get(run_id, with_steps=False)
            if record.status in TERMINAL and run_id not in runner.handles:
                yield _sse("done", record.to_dict())
                return
            if await request.is_disconnected():
                return
            wake.clear()
            try:
                async with asyncio.timeout(1.0):
                    await wake.wait()
            except TimeoutError:
                yield ": keep-alive\n\n"
    finally:
        unsubscribe()


@router.get("/{run_id}/events")
async def run_events(request: Request, run_id: str) -> StreamingResponse:
    """Server-sent events: every stored step, then new ones as they happen, then ``done``."""
    runner = _runner(request)
    _visible(request, runner.store.get(run_id, with_steps=False))
    return StreamingResponse(_events(runner, runner.store, run_id, request), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})
