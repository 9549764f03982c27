"""Budgets of agent runs, with the deterministic scripted model (sovereign.testing): every limit
stops the run before the call that could break it, concurrent tool calls included."""

from __future__ import annotations

import asyncio
import json

import pytest

from sovereign.agent import Agent, Budget, Runner, RunStore, parse_budget
from sovereign.errors import InvalidRequestError
from sovereign.finops.ledger import UsageLedger
from sovereign.governance.audit import AuditLog
from sovereign.governance.governor import Governor
from sovereign.governance.keys import Principal
from sovereign.governance.spend import SpendGuard
from sovereign.kernel.messages import ChatRequest, ChatResponse, Message, ToolCall, Usage
from sovereign.kernel.registry import PriceSheet
from sovereign.store import Database
from sovereign.testing import FunctionModel, ScriptedModel, text_response, tool_response
from sovereign.tools import tool


def _runner(model, **kwargs) -> Runner:
    return Runner(model=model, store=RunStore(Database(":memory:")), **kwargs)


def _counting_tool(calls: list):
    @tool
    def probe(n: int) -> str:
        """Return a fresh observation for n."""
        calls.append(n)
        return f"observation {n}"

    return probe


def _greedy_model(*, prompt_tokens: int | None = None) -> FunctionModel:
    """Calls ``probe`` with a new argument every turn and uses its whole ``max_tokens``."""
    turn = {"n": 0}

    def answer(request: ChatRequest) -> ChatResponse:
        turn["n"] += 1
        usage = Usage(prompt_tokens=prompt_tokens or 10, completion_tokens=request.max_tokens or 0, requests=1)
        call = ToolCall(name="probe", arguments=json.dumps({"n": turn["n"]}))
        return ChatResponse(model="greedy", message=Message(role="assistant", tool_calls=[call]),
                            finish_reason="tool_calls", usage=usage)

    return FunctionModel(answer, name="greedy")


def test_step_limit_stops_before_the_next_model_call():
    calls: list = []
    model = _greedy_model()
    agent = Agent(name="a", tools=[_counting_tool(calls)], budget=Budget(max_steps=3))
    result = asyncio.run(_runner(model).run(agent, "probe forever"))
    assert result.status == "stopped"
    assert "max_steps" in result.stop_reason
    assert len(model.requests) == 3 and result.spent.steps == 3
    assert calls == [1, 2, 3]
    assert result.partial and "observation 3" in result.answer


def test_tool_call_limit_holds_for_concurrent_calls():
    calls: list = []
    script = ScriptedModel([
        tool_response(("probe", '{"n": 1}')),
        tool_response(("probe", '{"n": 2}'), ("probe", '{"n": 3}'), ("probe", '{"n": 4}')),
    ])
    agent = Agent(name="a", tools=[_counting_tool(calls)], budget=Budget(max_tool_calls=3))
    result = asyncio.run(_runner(script).run(agent, "probe"))
    script.assert_complete()
    assert sorted(calls) == [1, 2, 3]  # the fourth call of the turn never ran
    assert result.spent.tool_calls == 3
    assert result.status == "stopped" and "max_tool_calls" in result.stop_reason
    refused = [s for s in result.steps if s.kind == "tool_result" and not s.executed]
    assert len(refused) == 1 and "budget" in refused[0].content


def test_output_tokens_never_exceed_the_limit_even_at_worst_case():
    calls: list = []
    model = _greedy_model()
    agent = Agent(name="a", tools=[_counting_tool(calls)], max_tokens=100, budget=Budget(max_output_tokens=250))
    result = asyncio.run(_runner(model).run(agent, "go"))
    assert result.status == "stopped" and "max_output_tokens" in result.stop_reason
    assert [r.max_tokens for r in model.requests] == [100, 100, 50]  # the last call shrank to fit
    assert result.spent.usage.completion_tokens == 250


def test_input_tokens_checked_with_the_prompt_estimate():
    calls: list = []
    model = _greedy_model(prompt_tokens=400)
    agent = Agent(name="a", tools=[_counting_tool(calls)], budget=Budget(max_input_tokens=1000))
    result = asyncio.run(_runner(model).run(agent, "go"))
    assert result.status == "stopped" and "max_input_tokens" in result.stop_reason
    assert result.spent.usage.prompt_tokens <= 1000
    assert len(model.requests) == 2


def test_cost_limit_uses_prices_and_records_every_call_in_the_ledger():
    calls: list = []
    db = Database(":memory:")
    ledger = UsageLedger(db)
    model = _greedy_model()
    prices = PriceSheet(input=0.0, output=1_000_000.0)  # one dollar per output token
    governor = Governor(spend=SpendGuard(db), ledger=ledger, audit=AuditLog(db), prices=lambda _name: prices)
    alice = Principal(identity_id="alice", identity_name="alice", role="operator", key_id="k1")
    agent = Agent(name="a", tools=[_counting_tool(calls)], max_tokens=10, budget=Budget(max_cost_usd=25.0))
    runner = Runner(model=model, store=RunStore(db), prices=prices, governor=governor)
    result = asyncio.run(runner.run(agent, "go", principal=alice))
    assert result.status == "stopped" and "max_cost_usd" in result.stop_reason
    assert result.spent.cost_usd == pytest.approx(20.0)
    totals = ledger.totals(principal="alice")
    assert totals.calls == 2 and totals.cost_usd == pytest.approx(20.0)


def test_wall_clock_limit_cuts_a_slow_tool_short():
    @tool
    def slow(n: int) -> str:
        """Take a long time."""
        import time

        time.sleep(0.2 * n)
        return "done"

    script = ScriptedModel([tool_response(("slow", '{"n": 10}'))])
    agent = Agent(name="a", tools=[slow], budget=Budget(max_wall_s=0.5))
    started = asyncio.run(_timed(_runner(script).run(agent, "go")))
    result, elapsed = started
    assert elapsed < 1.9
    assert result.status == "stopped" and "max_wall_s" in result.stop_reason


async def _timed(coro):
    import time

    start = time.monotonic()
    result = await coro
    return result, time.monotonic() - start


def test_partial_answer_and_usage_add_up():
    script = ScriptedModel([text_response("the answer")])
    result = asyncio.run(_runner(script).run(Agent(name="a"), "q"))
    assert result.ok and result.answer == "the answer"
    total = result.spent + result.spent
    assert total.usage.requests == 2 and total.steps == 2


def test_parse_budget():
    budget = parse_budget("steps=5, tool_calls=2,output_tokens=900,cost=0.5,time=30,input_tokens=none")
    assert budget == Budget(max_steps=5, max_tool_calls=2, max_output_tokens=900, max_cost_usd=0.5,
                            max_wall_s=30.0, max_input_tokens=None)
    with pytest.raises(InvalidRequestError, match="bad budget item"):
        parse_budget("potatoes=3")
    with pytest.raises(InvalidRequestError, match="must be a number"):
        parse_budget("steps=many")
    with pytest.raises(InvalidRequestError, match=">= 0"):
        Budget(max_steps=-1)
