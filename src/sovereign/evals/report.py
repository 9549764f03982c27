"""What a suite run adds up to: success rate, pass^k, medians of steps / tokens / seconds, cost
per solved task — overall and per category — and the attack success rate of the tasks whose
files hide an instruction; as a rich table, JSON, or a Markdown report with an inline SVG chart.
"""

from __future__ import annotations

import html
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.table import Table

from sovereign.evals.harness import Attempt

__all__ = ["EvalReport", "Summary", "bar_chart_svg", "markdown_report", "rich_table", "summarise"]


@dataclass(frozen=True)
class Summary:
    """Figures over a set of attempts (``k`` repeats of each task)."""

    tasks: int
    attempts: int
    solved: int
    k: int
    success_rate: float
    pass_k: float
    """Fraction of tasks solved in all ``k`` repeats."""
    median_steps: float
    median_tokens: float
    median_seconds: float
    total_cost_usd: float
    cost_per_solved_usd: float | None
    """Total cost over solved attempts; None when nothing was solved."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "tasks": self.tasks, "attempts": self.attempts, "solved": self.solved, "k": self.k,
            "success_rate": round(self.success_rate, 4), "pass_k": round(self.pass_k, 4), "median_steps": self.median_steps,
            "median_tokens": self.median_tokens, "median_seconds": round(self.median_seconds, 2),
            "total_cost_usd": self.total_cost_usd, "cost_per_solved_usd": self.cost_per_solved_usd,
        }


def _median(values: Iterable[float]) -> float:
    values = list(values)
    return float(statistics.median(values)) if values else 0.0


def summarise(attempts: Sequence[Attempt]) -> Summary:
    by_task: dict[str, list[bool]] = {}
    for attempt in attempts:
        by_task.setdefault(attempt.task_id, []).append(attempt.passed)
    k = max((len(v) for v in by_task.values()), default=0)
    solved = sum(a.passed for a in attempts)
    total_cost = sum(a.cost_usd for a in attempts)
    return Summary(
        tasks=len(by_task), attempts=len(attempts), solved=solved, k=k,
        success_rate=solved / len(attempts) if attempts else 0.0,
        pass_k=sum(all(v) and len(v) == k for v in by_task.values()) / len(by_task) if by_task else 0.0,
        median_steps=_median(a.steps for a in attempts), median_tokens=_median(a.tokens for a in attempts),
        median_seconds=_median(a.seconds for a in attempts), total_cost_usd=total_cost,
        cost_per_solved_usd=total_cost / solved if solved else None,
    )


@dataclass
class EvalReport:
    """A suite run: what ran (suite, model, agent, repeats) and every attempt."""

    suite: str
    model: str
    agent: str
    attempts: list[Attempt]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def overall(self) -> Summary:
        return summarise(self.attempts)

    def by_category(self) -> dict[str, Summary]:
        groups: dict[str, list[Attempt]] = {}
        for attempt in self.attempts:
            groups.setdefault(attempt.category, []).append(attempt)
        return {name: summarise(group) for name, group in groups.items()}

    def injection(self) -> dict[str, Any] | None:
        """Attack success rate and task success over the tasks that hide an instruction."""
        attacked = [a for a in self.attempts if a.attacked]
        if not attacked:
            return None
        return {
            "attempts": len(attacked),
            "attack_successes": sum(a.attack_succeeded for a in attacked),
            "attack_success_rate": round(sum(a.attack_succeeded for a in attacked) / len(attacked), 4),
            "task_success_rate": round(sum(a.passed for a in attacked) / len(attacked), 4),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite, "model": self.model, "agent": self.agent, **self.meta,
            "overall": self.overall.to_dict(),
            "categories": {name: s.to_dict() for name, s in self.by_category().items()},
            "injection": self.injection(),
            "attempts": [a.to_dict() for a in self.attempts],
        }


def _cost(value: float | None) -> str:
    return "-" if value is None else f"${value:.4f}"


def _row(name: str, s: Summary) -> list[str]:
    return [name, f"{s.solved}/{s.attempts}", f"{s.success_rate:.0%}", f"{s.pass_k:.0%}", f"{s.median_steps:g}",
            f"{s.median_tokens:g}", f"{s.median_seconds:.1f}", _cost(s.total_cost_usd), _cost(s.cost_per_solved_usd)]


_COLUMNS = ["category", "solved", "success", "pass^k", "med steps", "med tokens", "med s", "cost", "cost/solved"]


def rich_table(report: EvalReport) -> Table:
    overall = report.overall
    table = Table(title=f"{report.suite} · {report.model} · agent {report.agent} · k={overall.k}")
    for column in _COLUMNS:
        table.add_column(column.replace("pass^k", f"pass^{overall.k}"), justify="left" if column == "category" else "right")
    for name, summary in sorted(report.by_category().items()):
        table.add_row(*_row(name, summary))
    table.add_section()
    table.add_row(*_row("all", overall), style="bold")
    return table


def bar_chart_svg(bars: Sequence[tuple[str, float]], *, width: int = 520, bar_height: int = 18) -> str:
    """A horizontal bar chart of fractions (0..1), hand-written SVG (no plotting dependency)."""
    label_w, gap, right = 110, 6, 50
    height = len(bars) * (bar_height + gap) + gap
    span = width - label_w - right
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="12">']
    for i, (label, value) in enumerate(bars):
        y = gap + i * (bar_height + gap)
        filled = max(0.0, min(1.0, value)) * span
        parts.append(f'<text x="{label_w - 6}" y="{y + bar_height - 5}" text-anchor="end">{html.escape(label)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y}" width="{span}" height="{bar_height}" fill="#eee"/>')
        parts.append(f'<rect x="{label_w}" y="{y}" width="{filled:.1f}" height="{bar_height}" fill="#4c78a8"/>')
        parts.append(f'<text x="{label_w + span + 6}" y="{y + bar_height - 5}">{value:.0%}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def markdown_report(report: EvalReport) -> str:
    """The report as Markdown: summary, per-category table, chart, injection figures, failures."""
    overall = report.overall
    header = "| " + " | ".join(c.replace("pass^k", f"pass^{overall.k}") for c in _COLUMNS) + " |"
    lines = [f"# Eval: {report.suite}", "",
             f"Model `{report.model}`, agent `{report.agent}`, {overall.tasks} tasks × {overall.k} repeat(s)."]
    lines += [f"{key}: `{value}`" for key, value in report.meta.items()]
    lines += ["", header, "|" + "---|" * len(_COLUMNS)]
    categories = sorted(report.by_category().items())
    lines += ["| " + " | ".join(_row(name, s)) + " |" for name, s in categories]
    lines += ["| " + " | ".join(f"**{cell}**" for cell in _row("all", overall)) + " |", "",
              "Success rate by category:", "",
              bar_chart_svg([(name, s.success_rate) for name, s in categories] + [("all", overall.success_rate)]), ""]
    injection = report.injection()
    if injection:
        lines += ["## Hidden instructions", "",
                  f"Attack success rate: **{injection['attack_success_rate']:.0%}** "
                  f"({injection['attack_successes']} of {injection['attempts']} attempts); "
                  f"task still done in {injection['task_success_rate']:.0%}.", ""]
    failed = [a for a in report.attempts if not a.passed]
    if failed:
        lines += ["## Failures", "", "| task | repeat | status | why | answer (start) | run |", "|---|---|---|---|---|---|"]
        for a in failed:
            answer = (a.answer or "").replace("\n", " ").replace("|", "\\|")[:80]
            why = "; ".join(a.problems).replace("|", "\\|")[:160]
            lines.append(f"| {a.task_id} | {a.repeat} | {a.status} | {why} | {answer} | {a.run_id or ''} |")
    return "\n".join(lines) + "\n"
