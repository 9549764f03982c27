"""The agent loop on the real embedded 0.5B model: a small multi-step task solved with tools
(read a CSV in the workspace, compute a figure), checked against the true figure."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path

import pytest

from sovereign.agent import Agent, Budget, Runner, RunStore
from sovereign.store import Database
from sovereign.tools import tool
from sovereign.tools.base import ToolError

pytestmark = pytest.mark.integration


def _csv_tools(workspace: Path):
    def _rows(path: str) -> list[dict[str, str]]:
        target = (workspace / path).resolve()
        if workspace.resolve() not in target.parents or not target.exists():
            raise ToolError(f"no file '{path}' in the workspace")
        with target.open(newline="") as f:
            return list(csv.DictReader(f))

    @tool
    def read_csv(path: str) -> str:
        """Read a CSV file from the workspace; returns its header and rows."""
        rows = _rows(path)
        header = ",".join(rows[0]) if rows else ""
        return header + "\n" + "\n".join(",".join(r.values()) for r in rows)

    @tool
    def sum_column(path: str, column: str) -> str:
        """Add up the numbers in one column of a CSV file in the workspace."""
        rows = _rows(path)
        if rows and column not in rows[0]:
            raise ToolError(f"no column '{column}'; columns are: {', '.join(rows[0])}")
        return f"sum of {column} = {sum(float(r[column]) for r in rows):g}"

    return [read_csv, sum_column]


def test_real_model_reads_a_csv_and_reports_the_total(embedded_model, tmp_path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "sales.csv").write_text("region,amount\nnorth,120\nsouth,80\neast,45\nwest,57\n")
    executed: list[str] = []
    tools = _csv_tools(workspace)
    agent = Agent(
        name="analyst",
        instructions="Use sum_column to add up a column.",
        tools=tools,
        max_tokens=96,
        budget=Budget(max_steps=5, max_tool_calls=6, max_wall_s=500),
    )
    store = RunStore(Database(tmp_path / "runs.db"))
    runner = Runner(model=embedded_model, store=store)
    runner.subscribe(lambda e: executed.append(e.step.name) if e.step is not None and e.step.kind == "tool_call" else None)
    result = asyncio.run(runner.run(agent, "What is the total of the amount column in sales.csv?"))
    assert result.status == "completed", result.stop_reason
    assert "sum_column" in executed
    assert "302" in (result.answer or "")
    assert result.spent.usage.requests >= 2 and result.spent.usage.completion_tokens > 0
    stored = store.get(result.run_id)
    assert stored.status == "completed" and stored.answer == result.answer
    assert [s.kind for s in stored.steps][0] == "task" and stored.steps[-1].kind == "final_answer"
