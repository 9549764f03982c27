"""``sovereign run "task"`` (live progress, final summary) and ``sovereign runs list/show/resume``.

The CLI acts as the local admin identity (``KeyStore.local_principal``): it owns the runs it
starts, and their model calls take the governed path (caps, ledger, audit) as that identity.

The lead registers ``run_command`` as ``sovereign run`` and ``runs_app`` as ``sovereign runs``;
``python -m sovereign.cli.run`` offers both for testing.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from sovereign.agent import AllowAll, Budget, Runner, RunResult, RunStore, parse_budget
from sovereign.agent.agent import agent_config, builtin_resolver
from sovereign.agent.hooks import RunEvent
from sovereign.agent.store import RunRecord
from sovereign.cli.swarm import node_progress, print_tree
from sovereign.errors import InvalidRequestError, SovereignError
from sovereign.swarm import SwarmResult, SwarmStore, parse_swarm_budget
from sovereign.swarm.wiring import swarm_budget as swarm_budget_of
from sovereign.swarm.wiring import swarm_for
from sovereign.tools.mcp_client import mount_configured

__all__ = ["run_command", "runs_app"]

runs_app = typer.Typer(help="List, show and resume agent runs.", no_args_is_help=True)


class ConsoleApprover:
    """Asks the person at the terminal before a ``needs_approval`` tool runs (deny if none)."""

    def __init__(self, console: Console) -> None:
        self.console = console

    async def decide(self, run_id: str, tool_name: str, arguments: dict[str, Any]) -> bool:
        if not sys.stdin.isatty():
            self.console.print(f"[yellow]{tool_name} needs approval; no terminal to ask, denied[/]")
            return False
        question = f"Allow {tool_name}({json.dumps(arguments)[:200]})? [y/N] "
        answer = await asyncio.to_thread(input, question)
        return answer.strip().lower() in ("y", "yes")


def _open_services():
    from sovereign.services import Services

    return Services.open()


def _progress(console: Console):
    def listener(event: RunEvent) -> None:
        if event.type == "step" and event.step is not None:
            step = event.step
            took = f"{step.duration_ms / 1000:.1f}s" if step.duration_ms else ""
            console.print(f"[dim]{step.index:>3}[/] {step.summary_line()} [dim]{took}[/]", highlight=False)
        elif event.type == "status" and event.data.get("status") != "running":
            console.print(f"[bold]{event.data['status']}[/]: {event.data.get('stop_reason')}")

    return listener


def _summary(console: Console, result: RunResult | RunRecord) -> None:
    spent = result.spent
    table = Table(show_header=False, box=None)
    run_id = result.run_id if isinstance(result, RunResult) else result.id
    stop = result.stop_reason or ""
    table.add_row("run", run_id)
    table.add_row("status", f"{result.status} ({stop})")
    table.add_row("steps", f"{spent.steps} model turns, {spent.tool_calls} tool calls, {spent.usage.requests} model calls")
    table.add_row("tokens", f"{spent.usage.prompt_tokens} in ({spent.usage.cached_tokens} cached), "
                            f"{spent.usage.completion_tokens} out")
    table.add_row("cost", f"${spent.cost_usd:.6f}")
    table.add_row("time", f"{spent.elapsed():.1f}s")
    console.print(table)
    console.print()
    console.print(result.answer or "(no answer)", highlight=False)


def _fail(console: Console, exc: SovereignError) -> None:
    console.print(f"[red]error:[/] {exc.message}")
    raise typer.Exit(code=1)


def run_command(
    task: Annotated[str, typer.Argument(help="What the agent should do.")],
    agent: Annotated[str | None, typer.Option("--agent", "-a", help="Agent name from config.")] = None,
    budget: Annotated[str | None, typer.Option(help="e.g. steps=8,tool_calls=10,output_tokens=4000,cost=0.05,time=120")] = None,
    model: Annotated[str | None, typer.Option(help="Override the agent's model.")] = None,
    verify: Annotated[str | None, typer.Option(help="off, same, or a model name.")] = None,
    mode: Annotated[str | None, typer.Option(help="How the agent acts: 'tools' (JSON tool calls) or 'code' "
                                                  "(Python in the sandbox). Default: the agent's own.")] = None,
    workspace: Annotated[Path | None, typer.Option(help="Folder the workspace tools work in.")] = None,
    tools: Annotated[str | None, typer.Option(
        "--tools", help="Comma-separated tool names the agent gets instead of its own "
                        "(built-ins, recall/remember/forget, kb_search, <mcp server>__<tool>).")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Approve every tool that asks.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    swarm: Annotated[bool, typer.Option("--swarm", help="Split the task into sub-tasks run by parallel "
                                                        "sub-agents under one budget (the swarm section of the config).")] = False,
    swarm_budget: Annotated[str | None, typer.Option(
        help="With --swarm: agents=16,concurrency=8,depth=2,output_tokens=20000,cost=0.5,tool_calls=200,time=600")] = None,
    executor: Annotated[str | None, typer.Option(help="With --swarm: 'asyncio' or 'ray' (default: config).")] = None,
) -> None:
    """Run an agent on a task, showing each step live, then a summary."""
    console = Console(stderr=as_json)
    services = _open_services()

    async def go() -> RunResult:
        async with mount_configured(services):  # the [[mcp_servers]] tools, for the resolver
            config = agent_config(agent, services.settings.home, services.settings.config_path, services=services)
            if tools is not None:
                config = config.model_copy(update={"tools": [t.strip() for t in tools.split(",") if t.strip()]})
            runner = Runner(services, approver=AllowAll() if yes else ConsoleApprover(console), workspace=workspace)
            swarms = swarm_for(runner, executor=executor, workspace=workspace,
                               resolve=builtin_resolver(services, workspace))
            built = config.build(swarms.delegation.resolver(builtin_resolver(services, workspace)))
            if budget:
                built.budget = parse_budget(budget, built.budget)
            if model:
                built.model = model
            if verify:
                built.verify = verify
            if mode:
                if mode not in ("tools", "code"):
                    raise InvalidRequestError(f"--mode must be 'tools' or 'code', not '{mode}'", param="mode")
                built.mode = mode  # type: ignore[assignment]
            if swarm:
                runner.subscribe(node_progress(console))
                result = await swarms.run(built, task, principal=services.keys.local_principal(),
                                          budget=parse_swarm_budget(swarm_budget, swarm_budget_of(services.settings.swarm)))
                await swarms.executor.close()
                return result
            runner.subscribe(_progress(console))
            return await runner.run(built, task, principal=services.keys.local_principal())

    try:
        result = asyncio.run(go())
    except SovereignError as exc:
        _fail(console, exc)
    finally:
        services.close()
    if as_json:
        print(json.dumps(result.to_dict()))
    elif isinstance(result, SwarmResult):
        print_tree(console, result.tree)
        console.print(f"[bold]{result.status}[/] ({result.stop_reason})")
        console.print(result.answer or "(no answer)", highlight=False)
    else:
        _summary(console, result)
    raise typer.Exit(code=0 if result.ok else 2)


@runs_app.command("list")
def list_runs(
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    status: Annotated[str | None, typer.Option(help="Only runs with this status.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Recent runs: status, steps, tokens, cost, time."""
    services = _open_services()
    try:
        records = RunStore(services.db).list(limit=limit, status=status)
    finally:
        services.db.close()
    if as_json:
        print(json.dumps([r.to_dict() for r in records]))
        return
    table = Table("agent", "status", "steps", "tools", "tokens", "cost", "time", "task")
    table.add_column("id", no_wrap=True)
    table.columns.insert(0, table.columns.pop())
    for r in records:
        u = r.spent
        table.add_row(r.id, r.agent, r.status, str(u.steps), str(u.tool_calls),
                      str(u.usage.total_tokens), f"${u.cost_usd:.4f}", f"{u.elapsed():.1f}s", r.task[:40])
    Console().print(table)


@runs_app.command("show")
def show_run(
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The trace of one run: every step with its time, tokens and cost, then the summary."""
    console = Console()
    services = _open_services()
    tree = None
    try:
        record = RunStore(services.db).get(run_id)
        swarms = SwarmStore(services.db)
        tree = swarms.get(run_id).tree() if swarms.is_swarm(run_id) else None
    except SovereignError as exc:
        _fail(console, exc)
    finally:
        services.db.close()
    if as_json:
        print(json.dumps(record.to_dict(with_steps=True) | ({"swarm": tree} if tree is not None else {})))
        return
    table = Table("#", "step", "time", "tokens", "cost")
    for step in record.steps:
        tokens = f"{step.usage.prompt_tokens}/{step.usage.completion_tokens}" if step.usage else ""
        table.add_row(str(step.index), step.summary_line(), f"{step.duration_ms / 1000:.2f}s", tokens,
                      f"${step.cost_usd:.5f}" if step.usage else "")
    console.print(table)
    if tree is not None:
        print_tree(console, tree)
    _summary(console, record)


@runs_app.command("resume")
def resume_run(
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    budget: Annotated[str | None, typer.Option(help="A new budget for the rest of the run.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Approve every tool that asks.")] = False,
) -> None:
    """Continue an interrupted or stopped run; completed tool calls are not repeated."""
    console = Console()
    services = _open_services()
    try:
        runner = Runner(services, approver=AllowAll() if yes else ConsoleApprover(console))
        record = runner.store.get(run_id, with_steps=False)
        new_budget = parse_budget(budget, Budget.from_dict(record.agent_config["budget"])) if budget else None
        runner.subscribe(_progress(console))
        swarms = swarm_for(runner, resolve=builtin_resolver(services, None))
        is_swarm = swarms.is_swarm(run_id) and swarms.store.get(run_id).phase != "delegating"

        async def go() -> RunResult:
            async with mount_configured(services):
                if is_swarm:  # a swarm: finished sub-agents are kept, interrupted ones continued
                    done = await swarms.resume(run_id, principal=services.keys.local_principal())
                    await swarms.executor.close()
                    return runner.store.get(done.swarm_id, with_steps=False)
                resolve = swarms.delegation.resolver(builtin_resolver(services, None))
                return await runner.resume(run_id, budget=new_budget, resolve=resolve,
                                           principal=services.keys.local_principal())

        result = asyncio.run(go())
    except SovereignError as exc:
        _fail(console, exc)
    finally:
        services.close()
    _summary(console, result)
    raise typer.Exit(code=0 if result.status == "completed" else 2)


def _standalone() -> typer.Typer:
    app = typer.Typer(no_args_is_help=True)
    app.command("run")(run_command)
    app.add_typer(runs_app, name="runs")
    return app


if __name__ == "__main__":
    _standalone()()
