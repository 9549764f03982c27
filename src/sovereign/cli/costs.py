"""``sovereign costs``: spend and tokens from the ledger (by day, owner, agent, model, run),
cost per completed task, the same usage re-priced on catalogue models, and the workload and
break-even calculators (``costs estimate``, ``costs breakeven``)."""

from __future__ import annotations

import json
from dataclasses import asdict

import typer
from rich.table import Table

from sovereign.cli.common import console, friendly_errors, open_services
from sovereign.errors import InvalidRequestError
from sovereign.finops.calculator import Hardware, Workload, blended_price, breakeven, estimate
from sovereign.finops.reports import DIMENSIONS, CostFilter, CostReport
from sovereign.finops.summary import cost_summary, priced_models

__all__ = ["app"]

app = typer.Typer(help="What model calls cost: reports from the ledger, workload and break-even calculators.",
                  invoke_without_command=True)

_BAR = 24


def _usd(value: float | None) -> str:
    if value is None:
        return "-"
    return f"${value:,.2f}" if abs(value) >= 1 else f"${value:.6f}"


def _bar(value: float, top: float) -> str:
    """A text bar: the chart for a column of costs that a table alone makes hard to compare."""
    return "█" * max(1 if value > 0 else 0, round(_BAR * value / top)) if top > 0 else ""


@app.callback()
@friendly_errors
def report(
    ctx: typer.Context,
    by: str = typer.Option("model", help=f"group by: {', '.join(DIMENSIONS)}"),
    since: str = typer.Option(None, help="first day (YYYY-MM-DD, UTC)"),
    until: str = typer.Option(None, help="last day (YYYY-MM-DD, UTC)"),
    owner: str = typer.Option(None, help="only this owner (identity name or id)"),
    agent: str = typer.Option(None, help="only this agent"),
    model: str = typer.Option(None, help="only this model"),
    reprice: str = typer.Option(None, help="comma-separated models to re-price on (default: every priced one)"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
) -> None:
    """Spend and tokens from the ledger (cached / uncached input, output, reasoning), grouped."""
    if ctx.invoked_subcommand is not None:
        return
    services = open_services()
    try:
        owner_id = services.keys.identity(owner)["id"] if owner else None
        scope = CostFilter(owner_id=owner_id, agent=agent, model=model, since=_day(since, "since"),
                           until=_day(until, "until"))
        names = [n.strip() for n in reprice.split(",") if n.strip()] if reprice else None
        summary = cost_summary(services.db, priced_models(services.registry), scope, by, names)
    finally:
        services.close()
    if as_json:
        print(json.dumps(summary))
        return
    _print_summary(summary)


def _day(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    from datetime import date

    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise InvalidRequestError(f"--{name} must be a day like 2026-12-01, not '{value}'", param=name) from None


def _print_summary(summary: dict) -> None:
    rows = summary["rows"]
    top = max((r["cost_usd"] for r in rows), default=0.0)
    table = Table(title=f"costs by {summary['by']} (tokens: cached / uncached input, output, reasoning)",
                  caption="energy: the local part, an energy + hardware estimate (\\[finops]), not a billed price")
    for column in (summary["by"], "calls", "cached", "uncached", "output", "reasoning", "cost", "energy", ""):
        table.add_column(column, justify="left" if column in (summary["by"], "") else "right")
    for r in rows:
        table.add_row(r["key"], f"{r['calls']:,}", f"{r['cached_tokens']:,}", f"{r['uncached_tokens']:,}",
                      f"{r['output_tokens']:,}", f"{r['reasoning_tokens']:,}", _usd(r["cost_usd"]),
                      _usd(r["energy_cost_usd"]), _bar(r["cost_usd"], top))
    t = summary["totals"]
    table.add_section()
    table.add_row("total", f"{t['calls']:,}", f"{t['cached_tokens']:,}", f"{t['uncached_tokens']:,}",
                  f"{t['output_tokens']:,}", f"{t['reasoning_tokens']:,}", _usd(t["cost_usd"]),
                  _usd(t["energy_cost_usd"]), "")
    console.print(table)
    tasks, esc, speed = summary["tasks"], summary["escalations"], summary["local_throughput"]
    console.print(f"tasks: {tasks['runs']} runs, {tasks['completed']} completed; cost per completed task "
                  f"{_usd(tasks['per_completed_usd'])}")
    if t["energy_j"]:
        console.print(f"local energy: {t['energy_j'] / 3600:.3f} Wh over {t['compute_s']:.1f} s of compute"
                      + (f"; {speed['tokens_per_s']:.1f} tokens/s measured" if speed["tokens_per_s"] else ""))
    if esc["routed"]:
        rate = f"{esc['rate']:.0%}" if esc["rate"] is not None else "-"
        console.print(f"router: {esc['routed']} routed requests, {esc['escalated']} escalated ({rate}), "
                      f"escalation spend {_usd(esc['spend_usd'])} (bigger models {_usd(esc['extra_cost_usd'])}, "
                      f"checks {_usd(esc['check_cost_usd'])})")
    repriced = Table(title="the same usage on other models")
    for column in ("model", "would have cost", ""):
        repriced.add_column(column, justify="right" if column == "would have cost" else "left")
    top = max((r["cost_usd"] for r in summary["repriced"]), default=0.0)
    for r in summary["repriced"]:
        note = "" if r["cached_price_published"] else " (no cached price: billed uncached)"
        repriced.add_row(r["model"] + note, _usd(r["cost_usd"]), _bar(r["cost_usd"], top))
    console.print(repriced)


@app.command("estimate")
@friendly_errors
def estimate_command(
    calls: float = typer.Option(..., help="number of calls, e.g. 1e6"),
    cached: float = typer.Option(0, help="cached input tokens per call"),
    uncached: float = typer.Option(0, help="uncached input tokens per call"),
    output: float = typer.Option(0, help="output tokens per call (reasoning included)"),
    model: str = typer.Option("deepseek-v4-flash", help="the model to price on"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Price a workload on a model, then on every priced catalogue model."""
    from sovereign.config import load_settings
    from sovereign.kernel.registry import ModelRegistry

    registry = ModelRegistry.load(load_settings())
    workload = Workload(calls, cached, uncached, output)
    chosen = estimate(workload, model, registry.get(model).prices)
    others = sorted((estimate(workload, name, sheet) for name, sheet in priced_models(registry).items()),
                    key=lambda c: (c.total_usd, c.model))
    if as_json:
        print(json.dumps({"workload": asdict(workload), "estimate": chosen.to_dict(),
                          "catalogue": [c.to_dict() for c in others]}))
        return
    console.print(f"{calls:,.0f} calls × ({cached:,.0f} cached + {uncached:,.0f} uncached input, {output:,.0f} output) "
                  f"on [bold]{model}[/]: [bold green]${chosen.total_usd:,.2f}[/]")
    table = Table(title="the same workload on the catalogue")
    for column in ("model", "cached input", "uncached input", "output", "total"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for c in others:
        note = "" if c.cached_price_published else " *"
        table.add_row(c.model + note, f"${c.cached_usd:,.2f}", f"${c.uncached_usd:,.2f}", f"${c.output_usd:,.2f}",
                      f"${c.total_usd:,.2f}")
    console.print(table)
    if any(not c.cached_price_published for c in others):
        console.print("[dim]* no published cached-input price: cached input billed at the uncached rate[/]")


@app.command("breakeven")
@friendly_errors
def breakeven_command(
    hardware_usd: float = typer.Option(..., help="purchase price of the machine"),
    power_watts: float = typer.Option(..., help="power draw while generating"),
    electricity: float = typer.Option(0.17, help="USD per kWh"),
    utilisation: float = typer.Option(0.5, help="share of the day the machine generates (0-1]"),
    years: float = typer.Option(3.0, help="amortisation period"),
    idle_watts: float = typer.Option(0.0, help="power draw when idle (paid around the clock)"),
    tokens_per_s: float = typer.Option(None, help="throughput; default: measured on local calls in the ledger"),
    model: str = typer.Option("deepseek-v4-flash", help="the hosted model to compare with"),
    hosted_price: float = typer.Option(None, help="USD per million tokens instead of the model's blended price"),
    cached: float = typer.Option(2000, help="workload mix for the blended price: cached input per call"),
    uncached: float = typer.Option(200, help="... uncached input per call"),
    output: float = typer.Option(300, help="... output per call"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """When does owning a machine beat a hosted price? (daily volume where they meet)"""
    services = open_services()
    try:
        measured = CostReport(services.db).local_throughput()
        price = hosted_price if hosted_price is not None else blended_price(
            services.registry.get(model).prices, Workload(1, cached, uncached, output))
    finally:
        services.close()
    speed = tokens_per_s if tokens_per_s is not None else measured.tokens_per_s
    if speed is None:
        raise InvalidRequestError("no local calls in the ledger to measure throughput from: give --tokens-per-s",
                                  param="tokens_per_s")
    result = breakeven(Hardware(hardware_usd, power_watts, electricity, years, utilisation, speed, idle_watts), price)
    source = "given" if tokens_per_s is not None else f"measured over {measured.calls} local calls"
    if as_json:
        print(json.dumps({**result.to_dict(), "tokens_per_s": speed, "tokens_per_s_source": source}))
        return
    table = Table(show_header=False, box=None)
    table.add_row("hosted price", f"${result.hosted_usd_per_mtok:.4f} per million tokens"
                  + ("" if hosted_price is not None else f" ({model}, blended over the mix)"))
    table.add_row("throughput", f"{speed:,.1f} tokens/s ({source})")
    table.add_row("fixed cost", f"${result.fixed_usd_per_day:,.2f} per day (hardware over {years:g} years + idle power)")
    table.add_row("energy", f"${result.energy_usd_per_mtok:.4f} per million tokens")
    table.add_row("capacity", f"{result.capacity_tokens_per_day:,.0f} tokens per day at {utilisation:.0%} utilisation")
    table.add_row("local at capacity", f"${result.local_usd_per_mtok_at_capacity:.4f} per million tokens")
    if result.breakeven_tokens_per_day is None:
        verdict = "[red]never: energy alone costs more per token than the hosted price[/]"
    else:
        verdict = f"{result.breakeven_tokens_per_day:,.0f} tokens per day" + (
            "" if result.reachable else " [red](beyond this machine's capacity: hosted stays cheaper)[/]")
    table.add_row("[bold]break-even[/]", verdict)
    console.print(table)
