"""``sovereign route "QUESTION"``: what ``model auto`` would do with a question — which model,
which reasoning effort and why, the fallback order, breakers, and the reasoning profile that
applied — without calling a model."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from sovereign.cli.common import console, friendly_errors, open_services
from sovereign.kernel.messages import ChatRequest, Message, Thinking
from sovereign.kernel.thinking import DEFAULT_BUDGET

__all__ = ["route_command"]


@friendly_errors
def route_command(
    question: str = typer.Argument(..., help="the request to route (a user message)"),
    data_class: str = typer.Option(None, help="public, internal or private (default from \\[router])"),
    think: bool = typer.Option(None, "--think/--instant", help="set the reasoning yourself, as a caller can"),
    as_json: bool = typer.Option(False, "--json", help="print the decision as JSON"),
) -> None:
    """Explain the routing decision for QUESTION (no model is called, nothing is spent)."""
    services = open_services()
    try:
        thinking = Thinking(enabled=bool(think), budget_tokens=DEFAULT_BUDGET if think else None)
        request = ChatRequest(model="auto", messages=[Message(role="user", content=question)], thinking=thinking)
        decision = services.router.explain(request, services.keys.local_principal(), data_class=data_class,
                                           explicit_thinking=think is not None)
    finally:
        services.close()
    if as_json:
        console.print_json(json.dumps(decision))
        return
    console.print(f"[bold]{decision['model']}[/], effort [cyan]{decision['effort']}[/] "
                  f"({decision['budget_tokens']} reasoning tokens) — kind {decision['kind']}, tier {decision['tier']}, "
                  f"data class {decision['data_class']}, decided in {decision['decision_us']:.0f} µs")
    console.print(f"why: {decision['reason']}", markup=False, highlight=False)
    table = Table(title="plan (tried in this order)")
    for column in ("#", "model", "breaker"):
        table.add_column(column)
    for index, name in enumerate(decision["plan"], 1):
        state = decision["breakers"].get(name)
        breaker = "closed" if state is None else (
            f"open, retry in {state['retry_in_s']:.0f}s ({state['last_error']})" if state["open"]
            else f"{state['failures']} failure(s): {state['last_error']}")
        table.add_row(str(index), name, breaker)
    console.print(table)
