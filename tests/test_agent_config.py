"""Agent definitions: ``[[agents]]`` in config.toml / agents.toml, validation, tool lookup; and
step records surviving a round trip through their stored form."""

from __future__ import annotations

import pytest

from sovereign.agent import Agent, AgentConfig, Budget, load_agent_configs
from sovereign.agent.agent import agent_config
from sovereign.agent.errors import AgentConfigError, UnknownAgentError
from sovereign.agent.steps import ModelCallStep, SummaryStep, TaskStep, ToolResultStep, step_from_dict, transcript
from sovereign.kernel.messages import ToolCall, Usage
from sovereign.tools import tool


def test_agents_from_toml(tmp_path, monkeypatch):
    monkeypatch.setenv("SOVEREIGN_HOME", str(tmp_path))  # the built-in tools' default workspace
    (tmp_path / "config.toml").write_text(
        '[[agents]]\nname = "analyst"\ninstructions = "Be exact."\ntools = ["calculator"]\nverify = "same"\n'
        "[agents.budget]\nmax_steps = 4\nmax_cost_usd = 0.5\n"
    )
    (tmp_path / "agents.toml").write_text('[[agents]]\nname = "writer"\nmodel = "qwen2.5-coder-0.5b-instruct"\n')
    configs = load_agent_configs(tmp_path)
    assert set(configs) == {"analyst", "writer"}
    agent = configs["analyst"].build()
    assert agent.budget == Budget(max_steps=4, max_cost_usd=0.5) and agent.verify == "same"
    assert [t.name for t in agent.tools] == ["calculator"]
    with pytest.raises(UnknownAgentError, match="analyst, writer"):
        agent_config("ghost", tmp_path)


def test_bad_agent_definitions_name_the_problem(tmp_path, monkeypatch):
    monkeypatch.setenv("SOVEREIGN_HOME", str(tmp_path))
    (tmp_path / "agents.toml").write_text('[[agents]]\nname = "x"\nmax_tokens = 0\nwhat = 1\n')
    with pytest.raises(AgentConfigError, match="agents\\[0\\].*max_tokens.*what"):
        load_agent_configs(tmp_path)
    with pytest.raises(AgentConfigError, match="unknown tool 'teleport'"):
        AgentConfig(name="y", tools=["teleport"]).build()


def test_agent_round_trips_through_its_config():
    @tool
    def ping() -> str:
        """Ping."""
        return "pong"

    agent = Agent(name="p", tools=[ping], budget=Budget(max_tool_calls=3), thinking=True)
    rebuilt = agent.to_config().build(lambda name: ping if name == "ping" else None)
    assert rebuilt.budget == agent.budget and rebuilt.thinking and rebuilt.tools == [ping]


def test_steps_round_trip_and_summaries_replace_what_they_cover():
    steps = [
        TaskStep(index=0, task="t", instructions="sys"),
        ModelCallStep(index=1, model="m", tool_calls=[ToolCall(name="f", arguments="{}", id="c1")],
                      usage=Usage(prompt_tokens=3, completion_tokens=2, requests=1)),
        ToolResultStep(index=2, call_id="c1", name="f", content="r1"),
        ModelCallStep(index=3, model="m", content="thinking aloud"),
        SummaryStep(index=4, text="f gave r1", first_index=1, last_index=2),
    ]
    again = [step_from_dict(s.to_dict()) for s in steps]
    assert again == steps
    messages = transcript(again)
    assert [m.role for m in messages] == ["system", "user", "user", "assistant"]
    assert "f gave r1" in messages[2].content and messages[3].content == "thinking aloud"
