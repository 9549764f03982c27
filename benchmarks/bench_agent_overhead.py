"""Agent orchestration overhead per step: sovereign vs smolagents vs pydantic-ai, side by side.

Every framework drives the same task with the same zero-latency scripted model: ``STEPS`` turns
that each call one ``add`` tool, then a final answer. Time spent inside each scripted model (building
its reply) is measured and subtracted, as the issue asks ("excluding model time"), so the time per
step is the framework's own work: building the prompt/messages, validating and running the tool,
recording the step. Sovereign's figure includes what peers do not do: each step is
written durably to SQLite (WAL) before the next begins; ``sovereign-memory`` shows the same loop
with an in-memory database; ``sovereign-governed`` runs inside the OS with the whole governed
path on (key scopes, spend reserved against key/agent/owner/global caps and settled, ledger row
and hash-chained audit entry per model call, audit entry per tool call), as real runs do.

Peers are installed only for this benchmark, in a separate virtualenv (not project deps):

    .venv/bin/python -m venv .cache/bench-venv
    .cache/bench-venv/bin/pip install "pydantic==2.14.3" "pydantic-settings==2.16.3" "httpx==0.28.1" \
        "jsonschema==4.26.0" "jinja2==3.1.6" "orjson==3.11.4" "google-re2==1.1.20251105" "smolagents==1.26.0" \
        "pydantic-ai-slim==2.68.0" "cryptography==50.0.2"
    .cache/bench-venv/bin/pip install --no-deps -e .
    .cache/bench-venv/bin/python benchmarks/bench_agent_overhead.py [--steps 20] [--repeats 21] [--thread-tools]

Prints the median per-step overhead of each (median of ``--repeats`` runs, after a warm-up) and
the ratio sovereign / best peer (goal: <= 0.5).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

INLINE = True


class ModelClock:
    """Seconds spent inside a scripted model (subtracted from the run's time)."""

    def __init__(self) -> None:
        self.spent = 0.0

    def timed(self, function: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.spent += time.perf_counter() - start

        return wrapper


def _sovereign(steps: int, db_path: str) -> Callable[[], float]:
    from sovereign.agent import Agent, Budget, LoopPolicy, Runner, RunStore
    from sovereign.kernel.messages import ChatRequest, ChatResponse, Message, ToolCall, Usage
    from sovereign.store import Database
    from sovereign.testing import FunctionModel
    from sovereign.tools import tool

    @tool(inline=INLINE)
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    def script(request: ChatRequest) -> ChatResponse:
        turn = len(model.requests) - 1  # a counter, like the smolagents double (no rescan of the messages)
        usage = Usage(prompt_tokens=10, completion_tokens=5, requests=1)
        if turn < steps:
            call = ToolCall(name="add", arguments=json.dumps({"a": turn, "b": 1}), id=f"call_{turn}")
            return ChatResponse(model="s", message=Message(role="assistant", tool_calls=[call]),
                                finish_reason="tool_calls", usage=usage)
        return ChatResponse(model="s", message=Message(role="assistant", content="done"), usage=usage)

    clock = ModelClock()
    model = FunctionModel(clock.timed(script), name="scripted")
    event_loop = asyncio.new_event_loop()  # one loop for every run, as in a server
    store = RunStore(Database(db_path))
    runner = Runner(model=model, store=store)
    agent = Agent(name="bench", tools=[add], budget=Budget(max_steps=steps + 5, max_tool_calls=steps + 5),
                  loop=LoopPolicy(stale_steps=0))

    def run() -> float:
        model.requests.clear()
        clock.spent = 0.0
        start = time.perf_counter()
        result = event_loop.run_until_complete(runner.run(agent, "add things"))
        elapsed = time.perf_counter() - start - clock.spent
        assert result.ok and result.spent.tool_calls == steps, result.stop_reason
        return elapsed

    return run


def _sovereign_governed(steps: int, home: str) -> Callable[[], float]:
    """The same loop inside the OS (``Services``) with the full governed path on: every model call
    authorised against an API key's scopes, reserved against four caps (key, agent, owner, global
    day), settled into the ledger and the hash-chained audit log; every tool call audited."""
    from sovereign.agent import Agent, Budget, LoopPolicy, Runner
    from sovereign.config import load_settings
    from sovereign.governance.keys import Scopes
    from sovereign.kernel.messages import ChatRequest, ChatResponse, Message, ToolCall, Usage
    from sovereign.kernel.registry import ModelSpec, PriceSheet
    from sovereign.services import Services
    from sovereign.testing import FunctionModel
    from sovereign.tools import tool

    @tool(inline=INLINE)
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    def script(request: ChatRequest) -> ChatResponse:
        turn = len(model.requests) - 1
        usage = Usage(prompt_tokens=10, completion_tokens=5, requests=1)
        if turn < steps:
            call = ToolCall(name="add", arguments=json.dumps({"a": turn, "b": 1}), id=f"call_{turn}")
            return ChatResponse(model="s", message=Message(role="assistant", tool_calls=[call]),
                                finish_reason="tool_calls", usage=usage)
        return ChatResponse(model="s", message=Message(role="assistant", content="done"), usage=usage)

    clock = ModelClock()
    model = FunctionModel(clock.timed(script), name="scripted")
    services = Services.open(load_settings(Path(home)))
    services.register(ModelSpec(name="scripted", backend="in_process", prices=PriceSheet(input=0.1, output=0.2)), model)
    services.keys.create_identity("bench-user", role="operator")
    agent_id = services.keys.create_identity("bench", kind="agent", owner="bench-user")
    _, secret = services.keys.create_key("bench-user", scopes=Scopes(tools=["add"], max_spend_usd=1e6))
    principal = services.keys.authenticate(secret)
    for scope, subject in (("owner", principal.identity_id), ("agent", agent_id), ("global", None)):
        services.spend.set_cap(scope, subject, "day", max_usd=1e6, max_tokens=10**12)
    event_loop = asyncio.new_event_loop()
    runner = Runner(services, model=model)
    agent = Agent(name="bench", model="scripted", tools=[add],
                  budget=Budget(max_steps=steps + 5, max_tool_calls=steps + 5), loop=LoopPolicy(stale_steps=0))

    def run() -> float:
        model.requests.clear()
        clock.spent = 0.0
        start = time.perf_counter()
        result = event_loop.run_until_complete(runner.run(agent, "add things", principal=principal))
        elapsed = time.perf_counter() - start - clock.spent
        assert result.ok and result.spent.tool_calls == steps, result.stop_reason
        return elapsed

    return run


def _pydantic_ai(steps: int) -> Callable[[], float]:
    from pydantic_ai import Agent, UsageLimits
    from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart, ToolReturnPart
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    def script(messages, info: AgentInfo) -> ModelResponse:
        turn = sum(1 for m in messages for p in m.parts if isinstance(p, ToolReturnPart))
        if turn < steps:
            return ModelResponse(parts=[ToolCallPart("add", {"a": turn, "b": 1})])
        return ModelResponse(parts=[TextPart("done")])

    clock = ModelClock()
    agent = Agent(FunctionModel(clock.timed(script)))
    event_loop = asyncio.new_event_loop()  # one loop for every run, as in a server

    @agent.tool_plain
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    def run() -> float:
        clock.spent = 0.0
        start = time.perf_counter()
        result = event_loop.run_until_complete(agent.run("add things", usage_limits=UsageLimits(request_limit=steps + 5)))
        elapsed = time.perf_counter() - start - clock.spent
        assert result.output == "done"
        return elapsed

    return run


def _smolagents(steps: int) -> Callable[[], float]:
    from smolagents import LogLevel, Model, ToolCallingAgent
    from smolagents import tool as smol_tool
    from smolagents.models import ChatMessage, ChatMessageToolCall, ChatMessageToolCallFunction, MessageRole

    @smol_tool
    def add(a: int, b: int) -> int:
        """Add two integers.

        Args:
            a: first number
            b: second number
        """
        return a + b

    class Scripted(Model):
        def __init__(self) -> None:
            super().__init__(model_id="scripted")
            self.turn = 0

        def generate(self, messages, stop_sequences=None, response_format=None, tools_to_call_from=None, **kw):
            self.turn += 1
            if self.turn <= steps:
                name, args = "add", {"a": self.turn, "b": 1}
            else:
                name, args = "final_answer", {"answer": "done"}
            call = ChatMessageToolCall(function=ChatMessageToolCallFunction(name=name, arguments=args),
                                       id=f"call_{self.turn}", type="function")
            return ChatMessage(role=MessageRole.ASSISTANT, content="", tool_calls=[call])

    clock = ModelClock()
    model = Scripted()
    model.generate = clock.timed(model.generate)
    agent = ToolCallingAgent(tools=[add], model=model, max_steps=steps + 5, verbosity_level=LogLevel.OFF)

    def run() -> float:
        model.turn = 0
        clock.spent = 0.0
        start = time.perf_counter()
        answer = agent.run("add things")
        elapsed = time.perf_counter() - start - clock.spent
        assert answer == "done", answer
        return elapsed

    return run


def _measure(runners: dict[str, Callable[[], float]], steps: int, repeats: int) -> dict[str, float]:
    """Median µs per step of each runner; repetitions are interleaved (one run of each in turn),
    so every framework sees the same machine noise."""
    for run in runners.values():
        run()  # warm-up (imports, caches)
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            times[name].append(run())
    per_step = {}
    for name, runs in times.items():
        per_step[name] = statistics.median(runs) / (steps + 1) * 1e6
        print(f"{name:18s} median {statistics.median(runs) * 1000:8.2f} ms/run  {per_step[name]:8.1f} us/step  "
              f"(min {min(runs) * 1000:.2f}, max {max(runs) * 1000:.2f} ms)")
    return per_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--thread-tools", action="store_true",
                        help="declare sovereign's tool without inline=True (it then runs in a worker thread)")
    args = parser.parse_args()
    global INLINE
    INLINE = not args.thread_tools
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        results = _measure({
            "sovereign": _sovereign(args.steps, str(Path(tmp) / "runs.db")),
            "sovereign-governed": _sovereign_governed(args.steps, str(Path(tmp) / "home")),
            "sovereign-memory": _sovereign(args.steps, ":memory:"),
            "pydantic-ai": _pydantic_ai(args.steps),
            "smolagents": _smolagents(args.steps),
        }, args.steps, args.repeats)
    best_peer = min(results["pydantic-ai"], results["smolagents"])
    print(f"\nsteps per run: {args.steps} tool turns + 1 answer; repeats: {args.repeats} (interleaved); "
          f"sovereign tool: {'inline' if INLINE else 'worker thread'}")
    print(f"ratio sovereign / best peer          = {results['sovereign'] / best_peer:.2f}  (goal <= 0.5)")
    print(f"ratio sovereign-governed / best peer = {results['sovereign-governed'] / best_peer:.2f}  (goal <= 0.5)")
    print(f"ratio sovereign-governed / smolagents = {results['sovereign-governed'] / results['smolagents']:.2f}")
    print(f"ratio sovereign-memory / best peer   = {results['sovereign-memory'] / best_peer:.2f}")
    print(f"ratio sovereign / pydantic-ai        = {results['sovereign'] / results['pydantic-ai']:.2f}")
    print(f"ratio sovereign / smolagents         = {results['sovereign'] / results['smolagents']:.2f}")


if __name__ == "__main__":
    main()
