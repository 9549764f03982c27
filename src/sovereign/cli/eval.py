"""``sovereign eval SUITE``: run a task suite through the agent runtime and report how it did."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from sovereign.cli.common import friendly_errors, open_services, run
from sovereign.errors import InvalidRequestError

if TYPE_CHECKING:
    from sovereign.evals import Attempt

__all__ = ["eval_command"]


def _commit() -> str | None:
    """The git commit of the source tree running the eval, when it is a checkout."""
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                              text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


@friendly_errors
def eval_command(
    suite: Annotated[Path, typer.Argument(help="A suite file (TOML) or a folder holding suite.toml.")],
    model: Annotated[str | None, typer.Option(help="Override the agent's model.")] = None,
    agent: Annotated[str | None, typer.Option("--agent", "-a", help="Agent name from config (default agent if unset).")] = None,
    repeat: Annotated[int, typer.Option(help="Runs of each task (k of pass^k).", min=1)] = 1,
    budget: Annotated[str | None, typer.Option(help="Budget override per task, e.g. steps=8,time=120.")] = None,
    approve: Annotated[str, typer.Option(help="Risky tools: 'workspace' allows effects confined to the task's "
                                              "throwaway workspace (writes there, sandboxed code); 'deny' refuses all.")] = "workspace",
    filter_: Annotated[str | None, typer.Option("--filter", help="Only tasks whose id or category matches this regex.")] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many tasks.", min=1)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    report: Annotated[Path | None, typer.Option(help="Write a Markdown report (with a chart) to this file.")] = None,
) -> None:
    """Run every task of SUITE in a fresh workspace, check each strictly, and report success rate,
    pass^k, median steps / tokens / seconds and cost per solved task, per category."""
    from sovereign.evals import EvalOptions, EvalReport, Evaluator, load_suite, markdown_report, rich_table

    if approve not in ("workspace", "deny"):
        raise InvalidRequestError(f"--approve must be 'workspace' or 'deny', not '{approve}'", param="approve")
    loaded = load_suite(suite)
    tasks = loaded.select(filter_, limit)
    if not tasks:
        raise InvalidRequestError(f"no task of suite '{loaded.name}' matches --filter '{filter_}'", param="filter")
    console = Console(stderr=as_json)
    options = EvalOptions(agent=agent, model=model, budget=budget, repeat=repeat, approve=approve)  # type: ignore[arg-type]
    commit = _commit()  # the code that runs the tasks, taken before they start (the tree may move on)
    services = open_services()
    try:
        evaluator = Evaluator(services, options, on_attempt=lambda a: console.print(_line(a), highlight=False))
        model_name = evaluator.model_name()
        console.print(f"[bold]{loaded.name}[/]: {len(tasks)} tasks × {repeat} on [cyan]{model_name}[/]")
        attempts = run(evaluator.run(loaded, tasks))
    finally:
        services.close()
    meta = {"approve": approve, "commit": commit, "filter": filter_, "limit": limit}
    result = EvalReport(suite=loaded.name, model=model_name, agent=agent or "default", attempts=attempts,
                        meta={k: v for k, v in meta.items() if v is not None})
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(markdown_report(result), encoding="utf-8")
    if as_json:
        print(json.dumps(result.to_dict()))
        return
    console.print(rich_table(result))
    injection = result.injection()
    if injection:
        console.print(f"hidden instructions: attack success {injection['attack_success_rate']:.0%} "
                      f"({injection['attack_successes']}/{injection['attempts']}), "
                      f"task still done {injection['task_success_rate']:.0%}")
    if report is not None:
        console.print(f"report written to {report}")


def _line(attempt: Attempt) -> str:
    mark = "[green]✓[/]" if attempt.passed else "[red]✗[/]"
    why = "" if attempt.passed else f" [dim]{escape('; '.join(attempt.problems)[:120])}[/]"
    return (f"{mark} {attempt.task_id} [dim]#{attempt.repeat} {attempt.steps} steps "
            f"{attempt.tokens} tok {attempt.seconds:.1f}s[/]{why}")
