"""Agent task success, side by side: sovereign's eval vs smolagents' CodeAgent and ToolCallingAgent
on the same task suite, the same GGUF model, in one run, with the same checkers.

Each framework gets each task in a fresh workspace (the suite's fixtures copied) and is judged by
``sovereign.evals`` (answer states the value and carries no tool-call markup, check command
passes, no hidden instruction took effect). sovereign runs its default configuration exactly as
``sovereign eval`` does. The peers get equivalent tools bound to the workspace — list_files,
read_file, write_file, search_files — and a calculator (ToolCallingAgent); CodeAgent computes in
its own Python. Their model is a small smolagents ``Model`` subclass over
``llama_cpp.Llama.create_chat_completion`` on the same GGUF file sovereign verifies and loads.

Peers are installed only for this benchmark, in a separate virtualenv (not project deps):

    python3.11 -m venv .cache/bench-venv
    .cache/bench-venv/bin/pip install --find-links ~/.cache/sovereign/wheels -r benchmarks/requirements-agent-tasks.txt
    .cache/bench-venv/bin/pip install --no-deps -e .
    .cache/bench-venv/bin/python benchmarks/bench_agent_tasks.py [--suite evals/core] [--filter RE] [--limit N]
        [--frameworks sovereign,code,toolcalling] [--model M] [--max-steps 10] [--json PATH]

Uses ``$SOVEREIGN_HOME`` (its config names the models folder; weights must be assembled).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from sovereign.evals import (
    Attempt,
    EvalOptions,
    EvalReport,
    Evaluator,
    answer_problems,
    attack_effects,
    check_command_problem,
    load_suite,
    prepare_workspace,
)
from sovereign.evals.suite import Suite, Task
from sovereign.services import Services

REPO = Path(__file__).resolve().parent.parent


# --- the peers' model: llama.cpp on the same GGUF file ------------------------------------------


def _llama_model(llm: Any):
    from smolagents import ChatMessage, Model
    from smolagents.models import MessageRole
    from smolagents.monitoring import TokenUsage

    class LlamaCppChatModel(Model):
        """A smolagents model over ``llama_cpp.Llama.create_chat_completion`` (the GGUF's own chat
        template, greedy decoding, 512-token answers — the same settings sovereign's agent uses)."""

        def __init__(self) -> None:
            super().__init__(model_id="gguf")
            self.llm = llm

        def generate(self, messages, stop_sequences=None, response_format=None, tools_to_call_from=None, **kwargs):
            prepared = self._prepare_completion_kwargs(messages=messages, stop_sequences=stop_sequences,
                                                       flatten_messages_as_text=True)
            chat = [{"role": str(m["role"].value if hasattr(m["role"], "value") else m["role"]),
                     "content": m["content"] if isinstance(m["content"], str) else _text(m["content"])}
                    for m in prepared["messages"]]
            chat = [{**m, "role": "user" if m["role"] == "tool-response" else
                     "assistant" if m["role"] == "tool-call" else m["role"]} for m in chat]
            out = self.llm.create_chat_completion(messages=chat, stop=prepared.get("stop") or None, max_tokens=512,
                                                  temperature=0.0)
            usage = out.get("usage") or {}
            return ChatMessage(role=MessageRole.ASSISTANT, content=out["choices"][0]["message"].get("content") or "",
                               raw=out, token_usage=TokenUsage(input_tokens=usage.get("prompt_tokens", 0),
                                                               output_tokens=usage.get("completion_tokens", 0)))

    return LlamaCppChatModel()


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "\n".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)


# --- the peers' tools, bound to one workspace ----------------------------------------------------


def _peer_tools(workspace: Path, calls: list[tuple[str, str]], *, calculator: bool) -> list[Any]:
    from smolagents import tool

    def inside(path: str) -> Path:
        target = (workspace / path).resolve()
        if not target.is_relative_to(workspace):
            raise ValueError(f"{path} is outside the workspace")
        return target

    def record(name: str, **arguments: Any) -> None:
        calls.append((name, json.dumps(arguments)))

    @tool
    def list_files(path: str = ".") -> str:
        """List the files and folders at a path in the workspace (folders end with '/').

        Args:
            path: A folder relative to the workspace root.
        """
        record("list_files", path=path)
        entries = sorted(p.name + ("/" if p.is_dir() else "") for p in inside(path).iterdir())
        return "\n".join(entries) or "(empty)"

    @tool
    def read_file(path: str) -> str:
        """Read a text file from the workspace.

        Args:
            path: The file, relative to the workspace root.
        """
        record("read_file", path=path)
        return inside(path).read_text(encoding="utf-8")[:100_000]

    @tool
    def write_file(path: str, content: str) -> str:
        """Write text to a file in the workspace (replacing it); folders are created.

        Args:
            path: The file, relative to the workspace root.
            content: The text to write.
        """
        record("write_file", path=path, content=content)
        target = inside(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
        return f"wrote {len(content)} characters to {path}"

    @tool
    def search_files(pattern: str) -> str:
        """Find the lines containing a text in the workspace's files.

        Args:
            pattern: The text to look for.
        """
        record("search_files", pattern=pattern)
        hits = []
        for file in sorted(p for p in workspace.rglob("*") if p.is_file()):
            try:
                lines = file.read_text(encoding="utf-8").splitlines()
            except UnicodeDecodeError:
                continue
            hits += [f"{file.relative_to(workspace)}:{i}: {line}" for i, line in enumerate(lines, 1) if pattern in line]
        return "\n".join(hits) or "no matches"

    @tool
    def calculate(expression: str) -> str:
        """Evaluate an arithmetic expression (+ - * / ** parentheses, sum, min, max, round, abs, sqrt).

        Args:
            expression: For example "(12 + 5) * 2.5" or "sum([1, 2, 3]) / 3".
        """
        record("calculate", expression=expression)
        allowed = {"sum": sum, "min": min, "max": max, "round": round, "abs": abs, "sqrt": math.sqrt, "len": len}
        if re.search(r"__|import|lambda|open|exec|eval", expression):
            raise ValueError("only arithmetic is allowed")
        return str(eval(expression, {"__builtins__": {}}, allowed))  # noqa: S307 - names limited above

    tools = [list_files, read_file, write_file, search_files]
    return tools + [calculate] if calculator else tools


def _peer_attempt(kind: str, model: Any, suite: Suite, task: Task, max_steps: int) -> Attempt:
    from smolagents import CodeAgent, LogLevel, ToolCallingAgent

    with tempfile.TemporaryDirectory(prefix=f"bench-{kind}-{task.id}-") as scratch:
        workspace = Path(scratch).resolve()
        before = prepare_workspace(suite, task, workspace)
        calls: list[tuple[str, str]] = []
        tools = _peer_tools(workspace, calls, calculator=kind == "toolcalling")
        if kind == "code":
            agent = CodeAgent(tools=tools, model=model, max_steps=max_steps, verbosity_level=LogLevel.OFF)
        else:
            agent = ToolCallingAgent(tools=tools, model=model, max_steps=max_steps, verbosity_level=LogLevel.OFF)
        started = time.monotonic()
        error = None
        try:
            answer = agent.run(task.prompt)
            answer = None if answer is None else str(answer)
        except Exception as exc:  # a peer crash is that task's failure, reported, not the benchmark's
            answer, error = None, f"{type(exc).__name__}: {exc}"
        seconds = time.monotonic() - started
        steps = [s for s in agent.memory.steps if type(s).__name__ == "ActionStep"]
        tokens = sum((s.token_usage.total_tokens if getattr(s, "token_usage", None) else 0) for s in steps)
        hit_limit = len(steps) >= max_steps
        problems = [f"peer error: {error}"] if error else []
        problems += ["stopped at the step limit"] if hit_limit else []
        problems += answer_problems(answer, task.expect)
        if (failed := check_command_problem(task.check, workspace, task.check_timeout_s)) is not None:
            problems.append(failed)
        effects = attack_effects(task.attack, workspace, before, answer, calls)
        problems += [f"attack succeeded: {e}" for e in effects]
    return Attempt(task_id=task.id, category=task.category, repeat=0, passed=not problems,
                   status="error" if error else "max_steps" if hit_limit else "completed", stop_reason=error or "",
                   answer=answer, problems=problems, attacked=task.attack is not None, attack_effects=effects,
                   steps=len(steps), tool_calls=len(calls), tokens=tokens, seconds=seconds)


# --- the run ------------------------------------------------------------------------------------


def _print_row(name: str, report: EvalReport) -> None:
    s = report.overall
    injection = report.injection() or {}
    print(f"{name:<22} {s.solved:>3}/{s.attempts:<3} {s.success_rate:>7.0%} {s.median_steps:>6g} "
          f"{s.median_tokens:>8g} {s.median_seconds:>7.1f}   "
          f"{injection.get('attack_success_rate', 0):.0%} / {injection.get('task_success_rate', 0):.0%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suite", default=str(REPO / "evals" / "core"))
    parser.add_argument("--filter", default=None)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--frameworks", default="sovereign,code,toolcalling")
    parser.add_argument("--model", default=None, help="A registry model for every framework (default: the tools tier).")
    parser.add_argument("--max-steps", type=int, default=10, help="Step limit of the smolagents agents.")
    parser.add_argument("--json", type=Path, default=None, help="Write every attempt of every framework here.")
    parser.add_argument("--resume", action="store_true",
                        help="Keep the peers' attempts already in --json and run only their missing tasks.")
    args = parser.parse_args()
    logging.disable(logging.WARNING)

    suite = load_suite(args.suite)
    tasks = suite.select(args.filter, args.limit)
    wanted = args.frameworks.split(",")
    services = Services.open()
    reports: dict[str, EvalReport] = {}
    try:
        evaluator = Evaluator(services, EvalOptions(model=args.model))
        spec = services.registry.get(evaluator.model_name())  # the model sovereign's default agent uses
        gguf = services.registry.weights_path(spec)
        if "sovereign" in wanted:
            attempts = asyncio.run(evaluator.run(suite, tasks))
            reports["sovereign (default)"] = EvalReport(suite.name, spec.name, "default", attempts)
            _free(services)
        peers = [k for k in ("code", "toolcalling") if k in wanted]
        if peers:
            from llama_cpp import Llama

            llm = Llama(model_path=str(gguf), n_ctx=min(services.settings.kernel.n_ctx, spec.context_size),
                        n_threads=services.settings.kernel.n_threads, verbose=False)
            model = _llama_model(llm)
            for kind in peers:
                label = {"code": "smolagents CodeAgent", "toolcalling": "smolagents ToolCallingAgent"}[kind]
                attempts = _earlier(args.json, label, tasks) if args.resume else []
                done = {a.task_id for a in attempts}
                reports[label] = EvalReport(suite.name, spec.name, kind, attempts)  # kept even if none is missing
                for task in (t for t in tasks if t.id not in done):
                    attempts.append(_peer_attempt(kind, model, suite, task, args.max_steps))
                    a = attempts[-1]
                    print(f"  {label}: {'✓' if a.passed else '✗'} {a.task_id} {a.seconds:.1f}s "
                          f"{'; '.join(a.problems)[:100]}", flush=True)
                    reports[label] = EvalReport(suite.name, spec.name, kind, attempts)
                    _save(args.json, reports)  # a long peer run keeps what it has if it is stopped
    finally:
        services.close()

    print(f"\nsuite {suite.name}: {len(tasks)} tasks, model {spec.name} ({gguf.name})")
    print(f"{'framework':<22} {'solved':>7} {'success':>7} {'steps':>6} {'tokens':>8} {'seconds':>7}   attack / task done")
    for name, report in reports.items():
        _print_row(name, report)
    if "sovereign (default)" in reports and len(reports) > 1:
        ours = reports["sovereign (default)"].overall.success_rate
        best = max(r.overall.success_rate for n, r in reports.items() if n != "sovereign (default)")
        print(f"sovereign - best peer: {100 * (ours - best):+.0f} points (goal: >= +10)")
    _save(args.json, reports)


def _earlier(path: Path | None, label: str, tasks: list[Task]) -> list[Attempt]:
    """The attempts of ``label`` that an earlier, stopped run saved in ``path`` (for --resume)."""
    if path is None or not path.exists():
        return []
    wanted = {t.id for t in tasks}
    saved = json.loads(path.read_text()).get(label, {}).get("attempts", [])
    return [Attempt(task_id=a["task"], **{k: v for k, v in a.items() if k != "task"})
            for a in saved if a["task"] in wanted]


def _save(path: Path | None, reports: dict[str, EvalReport]) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({n: r.to_dict() for n, r in reports.items()}, indent=1))


def _free(services: Services) -> None:
    """Unload sovereign's copy of the model before the peers load theirs (2 cores, one model at a time)."""
    for model in services.models.values():
        close = getattr(model, "close", None)
        if close is not None:
            close()
    services.models.clear()


if __name__ == "__main__":
    main()
