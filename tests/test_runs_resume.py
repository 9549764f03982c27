"""Durable runs: a run cut off mid-way (simulated, and a real ``kill -9`` of a process) resumes
from its stored steps and never repeats a completed tool call. Uses the deterministic scripted
model from sovereign.testing."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sovereign.agent import Agent, Budget, Runner, RunStore
from sovereign.agent.errors import RunBusyError, RunNotResumableError
from sovereign.store import Database
from sovereign.testing import ScriptedModel, text_response, tool_response
from sovereign.tools import tool

REPO = Path(__file__).resolve().parent.parent


class _Crash(BaseException):
    """Stands in for the process dying: nothing after it is written."""


class CrashingStore(RunStore):
    def __init__(self, db: Database, crash_after: int) -> None:
        super().__init__(db)
        self.left = crash_after
        self.dead = False

    def append(self, run_id, steps, spent=None, also=()) -> None:
        # the process dies at the commit that would store step number ``crash_after + 1``
        if self.dead or self.left < len(steps):
            self.dead = True
            raise _Crash()
        self.left -= len(steps)
        super().append(run_id, steps, spent, also)

    def set_status(self, *args, **kwargs) -> None:
        if self.dead:
            raise _Crash()
        super().set_status(*args, **kwargs)


def _appender(path: Path):
    @tool
    def append(text: str) -> str:
        """Append a line to the log."""
        with path.open("a") as f:
            f.write(text + "\n")
        return f"appended {text}"

    return append


def test_resume_after_a_simulated_crash_skips_completed_calls(tmp_path):
    log = tmp_path / "log.txt"
    db = Database(tmp_path / "runs.db")
    first = ScriptedModel([
        tool_response(("append", '{"text": "a"}'), ("append", '{"text": "b"}')),
        tool_response(("append", '{"text": "c"}')),
    ])
    agent = Agent(name="w", tools=[_appender(log)])
    # steps: model(1) call(2) call(3) result(4) result(5) model(6) call(7) — the crash hits the result of c
    crashing = CrashingStore(db, crash_after=7)
    with pytest.raises(_Crash):
        asyncio.run(Runner(model=first, store=crashing).run(agent, "log a b c", run_id="run_sim"))
    assert sorted(log.read_text().split()) == ["a", "b", "c"]  # c ran; its result was never stored

    store = RunStore(db)
    record = store.get("run_sim")
    assert record.status == "running"
    assert [s.kind for s in record.steps][-1] == "tool_call"

    second = ScriptedModel([text_response("logged a, b and c")])
    result = asyncio.run(Runner(model=second, store=store).resume("run_sim", agent=agent))
    second.assert_complete()
    assert result.ok and result.answer == "logged a, b and c"
    # a and b (completed) ran once; c was interrupted before its result was stored, so it ran again
    lines = log.read_text().split()
    assert sorted(lines[:2]) == ["a", "b"] and lines[2:] == ["c", "c"]
    assert result.spent.steps == 3
    with pytest.raises(RunNotResumableError):
        asyncio.run(Runner(model=second, store=store).resume("run_sim", agent=agent))


_CHILD = textwrap.dedent(
    """
    import asyncio, sys, time
    from pathlib import Path
    from sovereign.agent import Agent, Runner, RunStore
    from sovereign.store import Database
    from sovereign.testing import ScriptedModel, tool_response
    from sovereign.tools import tool

    db_path, log, marker = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])

    @tool
    def append(text: str) -> str:
        \"\"\"Append a line to the log.\"\"\"
        with log.open("a") as f:
            f.write(text + "\\n")
        return f"appended {text}"

    @tool
    def wait_for_input() -> str:
        \"\"\"Wait for a human.\"\"\"
        marker.write_text("blocked")
        time.sleep(120)
        return "never"

    script = ScriptedModel([
        tool_response(("append", '{"text": "a"}'), ("append", '{"text": "b"}')),
        tool_response(("append", '{"text": "c"}')),
        tool_response(("wait_for_input", "{}")),
    ])
    agent = Agent(name="w", tools=[append, wait_for_input])
    runner = Runner(model=script, store=RunStore(Database(db_path)))
    asyncio.run(runner.run(agent, "log a b c, then wait", run_id="run_kill"))
    """
)


def test_resume_after_a_real_kill_9_never_repeats_a_completed_tool_call(tmp_path):
    db_path, log, marker = tmp_path / "runs.db", tmp_path / "log.txt", tmp_path / "blocked"
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    child = subprocess.Popen([sys.executable, str(script), str(db_path), str(log), str(marker)], env=env)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert child.poll() is None, "the run process ended before it was killed"
            assert time.monotonic() < deadline, "the run never reached the blocking tool"
            time.sleep(0.05)
        # while the child is alive and driving the run, nobody else may resume it
        with pytest.raises(RunBusyError, match=f"process {child.pid}"):
            asyncio.run(Runner(model=ScriptedModel([]), store=RunStore(Database(db_path))).resume(
                "run_kill", agent=Agent(name="w", tools=[_appender(log)])))
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
    assert sorted(log.read_text().split()) == ["a", "b", "c"]

    store = RunStore(Database(db_path))
    record = store.get("run_kill")
    assert record.status == "running" and record.spent.tool_calls == 4

    @tool
    def wait_for_input() -> str:
        """Wait for a human."""
        return "the human said: add d"

    rest = ScriptedModel([tool_response(("append", '{"text": "d"}')), text_response("logged a, b, c, d")])
    agent = Agent(name="w", tools=[_appender(log), wait_for_input])
    result = asyncio.run(Runner(model=rest, store=store).resume("run_kill", agent=agent))
    rest.assert_complete()
    assert result.ok and result.answer == "logged a, b, c, d"
    lines = log.read_text().split()
    assert sorted(lines[:2]) == ["a", "b"] and lines[2:] == ["c", "d"]  # nothing ran twice
    # the resumed model saw the whole stored history
    seen = [m.content for m in rest.requests[0].messages if m.role == "tool"]
    assert sorted(seen[:2]) == ["appended a", "appended b"] and seen[2] == "appended c"
    assert seen[-1] == "the human said: add d"


def test_a_database_from_before_step_totals_keeps_its_run_totals(tmp_path):
    # a runs database at schema version 1 (totals only on the runs row), then upgraded
    from sovereign.agent.store import MIGRATIONS

    db = Database(tmp_path / "old.db")
    db.migrate("runs", MIGRATIONS[:1])
    db.execute("INSERT INTO runs (id, agent, task, status, agent_json, prompt_tokens, steps, tool_calls, cost_usd) "
               "VALUES ('run_old', 'w', 'task', 'stopped', '{\"name\": \"w\"}', 120, 3, 2, 0.5)")
    db.execute("INSERT INTO run_steps (run_id, idx, kind, data) VALUES ('run_old', 0, 'task', "
               "'{\"kind\": \"task\", \"index\": 0, \"task\": \"task\"}')")
    record = RunStore(db).get("run_old")
    assert (record.spent.usage.prompt_tokens, record.spent.steps, record.spent.tool_calls) == (120, 3, 2)
    assert record.spent.cost_usd == 0.5 and [s.kind for s in record.steps] == ["task"]


def test_a_run_being_driven_cannot_be_resumed_twice_in_one_process(tmp_path):
    release = asyncio.Event()
    ran: list[str] = []

    @tool
    async def slow(text: str) -> str:
        """Wait, then echo."""
        ran.append(text)
        await release.wait()
        return text

    async def main() -> None:
        store = RunStore(Database(tmp_path / "runs.db"))
        model = ScriptedModel([tool_response(("slow", '{"text": "x"}')), text_response("done")])
        runner = Runner(model=model, store=store)
        agent = Agent(name="w", tools=[slow])
        handle = runner.start(agent, "echo x", run_id="run_busy")
        while not ran:
            await asyncio.sleep(0.01)
        with pytest.raises(RunBusyError, match="already being driven"):
            await runner.resume("run_busy", agent=agent)
        with pytest.raises(RunBusyError):
            runner.start_resume("run_busy", agent=agent)
        release.set()
        result = await handle.task
        assert result.ok and ran == ["x"]  # the tool ran once
        with pytest.raises(RunNotResumableError):
            await runner.resume("run_busy", agent=agent)
        stopped = await Runner(model=ScriptedModel([tool_response(("slow", '{"text": "y"}'))]), store=store).run(
            Agent(name="w", tools=[slow], budget=Budget(max_steps=1)), "echo y", run_id="run_stopped")
        assert stopped.status == "stopped"  # the lease was given back: a stopped run resumes at once
        rest = Runner(model=ScriptedModel([text_response("done y")]), store=store)
        assert (await rest.resume("run_stopped", agent=Agent(name="w", tools=[slow], budget=Budget(max_steps=3)))).ok

    asyncio.run(main())
