"""``sovereign run`` / ``sovereign runs list|show|resume`` through the typer objects. Runs are
seeded with the deterministic scripted model (sovereign.testing); ``run`` and ``resume`` then
finish on the real embedded model."""

from __future__ import annotations

import asyncio
import json

import pytest
from typer.testing import CliRunner

from sovereign.agent import Agent, Budget, Runner, RunStore
from sovereign.cli.run import _standalone
from sovereign.config import DEFAULT_MODEL, load_settings
from sovereign.services import Services
from sovereign.testing import ScriptedModel, text_response, tool_response
from sovereign.tools.calculator import calculator_tool

cli = CliRunner(env={"COLUMNS": "200"})


class _StopAfter(RunStore):
    """Stores ``n`` steps, then fails like a dead process (nothing more is written)."""

    def __init__(self, db, n: int) -> None:
        super().__init__(db)
        self.n = n

    def append(self, run_id, steps, spent=None, also=()) -> None:
        if self.n < len(steps):
            self.n = 0
            raise KeyboardInterrupt
        self.n -= len(steps)
        super().append(run_id, steps, spent, also)

    def set_status(self, *args, **kwargs) -> None:
        if self.n == 0:
            raise KeyboardInterrupt
        super().set_status(*args, **kwargs)


def _seed(home, *, crash_after: int | None = None) -> str:
    services = Services.open(load_settings(home))
    try:
        script = ScriptedModel([tool_response(("calculator", '{"expression": "2+3"}')), text_response("5")])
        store = RunStore(services.db) if crash_after is None else _StopAfter(services.db, crash_after)
        runner = Runner(services, model=script, store=store)
        agent = Agent(name="calc", model=DEFAULT_MODEL, tools=[calculator_tool()], budget=Budget(max_steps=4))
        try:
            return asyncio.run(runner.run(agent, "What is 2+3?", run_id="run_cli")).run_id
        except KeyboardInterrupt:
            return "run_cli"
    finally:
        services.close()


def test_runs_list_and_show(home):
    run_id = _seed(home)
    app = _standalone()
    listed = cli.invoke(app, ["runs", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.output)[0]["id"] == run_id
    table = cli.invoke(app, ["runs", "list"])
    assert "run_cli" in table.output and "completed" in table.output
    shown = cli.invoke(app, ["runs", "show", run_id])
    assert shown.exit_code == 0, shown.output
    assert "calculator" in shown.output and "5" in shown.output and "tool calls" in shown.output
    as_json = json.loads(cli.invoke(app, ["runs", "show", run_id, "--json"]).output)
    assert [s["kind"] for s in as_json["steps"]][:3] == ["task", "model_call", "tool_call"]
    missing = cli.invoke(app, ["runs", "show", "run_nope"])
    assert missing.exit_code == 1 and "no run" in missing.output


@pytest.mark.integration
def test_resume_an_interrupted_run_on_the_real_model(home):
    # task, model call, tool call, tool result are stored; then the process "dies"
    _seed(home, crash_after=3)
    app = _standalone()
    before = json.loads(cli.invoke(app, ["runs", "show", "run_cli", "--json"]).output)
    assert before["status"] == "running" and before["steps"][-1]["kind"] == "tool_result"
    resumed = cli.invoke(app, ["runs", "resume", "run_cli", "--budget", "steps=3,output_tokens=400"])
    assert resumed.exit_code in (0, 2), resumed.output
    after = json.loads(cli.invoke(app, ["runs", "show", "run_cli", "--json"]).output)
    kinds = [s["kind"] for s in after["steps"]]
    assert kinds.count("tool_call") == kinds.count("tool_result")
    assert after["steps"][-1]["kind"] == "final_answer" and after["status"] in ("completed", "stopped")
    calc_calls = [s for s in after["steps"] if s["kind"] == "tool_call" and s["arguments"] == '{"expression": "2+3"}']
    assert len(calc_calls) == 1  # the completed call was not repeated


@pytest.mark.integration
def test_run_command_on_the_real_model(home):
    (home / "agents.toml").write_text(
        '[[agents]]\nname = "terse"\ninstructions = "Answer with one word."\nmax_tokens = 16\n'
        "[agents.budget]\nmax_steps = 2\n"
    )
    result = cli.invoke(_standalone(), ["run", "Name the capital of France.", "--agent", "terse", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["status"] == "completed" and "paris" in summary["answer"].lower()
    assert summary["usage"]["model_calls"] == 1
