"""Tool calls from the kernel: no markup in content, every closed call kept, duplicates collapsed,
the number of calls bounded, ``required`` always a valid call — on the parser, the guard and the
grammar alone, then on the real embedded model and through ``POST /v1/chat/completions``."""

from __future__ import annotations

import asyncio
import json

import pytest

from sovereign.kernel.messages import ChatRequest, Message, ToolCall, ToolChoice, ToolSpec, Usage
from sovereign.kernel.tool_calls import argument_errors, smallest_call, tool_call_grammar
from sovereign.kernel.tool_markup import CallCollector, MarkupGuard, dedupe_calls, has_tool_markup, parse_tool_calls
from sovereign.kernel.tool_pass import ToolPlan

WEATHER = ToolSpec(
    name="get_weather",
    description="Get the current weather for a city",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"],
        "additionalProperties": False,
    },
)
FILE_TOOLS = [
    ToolSpec("calculator", "Evaluate an arithmetic expression",
             {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]}),
    ToolSpec("read_file", "Read a file in the workspace",
             {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}),
    ToolSpec("list_files", "List the files in a workspace directory",
             {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}),
]


def call_text(city: str, unit: str = "celsius") -> str:
    return json.dumps({"name": "get_weather", "arguments": {"city": city, "unit": unit}})


def assert_no_markup(text: str | None, tools: list[ToolSpec]) -> None:
    assert "<tool_call" not in (text or "") and "</tool_call" not in (text or ""), text
    assert not has_tool_markup(text, tools), text


# --- parser, guard, collector, grammar (no model) ---------------------------------------------

def test_complete_calls_survive_a_cut_off_call_and_duplicates_collapse():
    text = (f"<tool_call>\n{call_text('Paris')}\n</tool_call>\n<tool_call>\n{call_text('Paris')}\n</tool_call>\n"
            f"<tool_call>\n{call_text('Rome')}\n</tool_call>\n<tool_call>\n" + call_text("Oslo")[:30])
    content, calls = parse_tool_calls(text, [WEATHER])
    assert content is None
    assert [json.loads(c.arguments)["city"] for c in calls] == ["Paris", "Rome"]


def test_a_fenced_call_after_prose_is_a_call_and_leaves_only_the_prose():
    content, calls = parse_tool_calls(f"Let me check.\n```json\n{call_text('Rome')}\n```\n", [WEATHER])
    assert content == "Let me check."
    assert calls[0].name == "get_weather" and json.loads(calls[0].arguments)["city"] == "Rome"


def test_a_cut_off_call_after_prose_is_stripped_and_other_json_stays():
    content, calls = parse_tool_calls('The answer is 4. {"name": "get_weather", "argu', [WEATHER])
    assert (content, calls) == ("The answer is 4.", [])
    plain = 'As JSON: {"name": "Ann", "age": 30}'
    assert parse_tool_calls(plain, [WEATHER]) == (plain, [])


def test_dedupe_compares_canonical_arguments():
    calls = [ToolCall("get_weather", '{"city": "Paris", "unit": "celsius"}'),
             ToolCall("get_weather", '{"unit":"celsius","city":"Paris"}'),
             ToolCall("get_weather", '{"city": "Paris", "unit": "fahrenheit"}')]
    assert [c.arguments for c in dedupe_calls(calls)] == [calls[0].arguments, calls[2].arguments]


def test_collector_keeps_each_call_as_it_closes_and_notices_a_repeat():
    collector = CallCollector([WEATHER])
    stream = f"{call_text('Paris')}\n</tool_call>\n<tool_call>\n{call_text('Paris')}"
    seen = []
    for char in stream:
        collector.feed(char)
        seen.append(len(collector.calls))
    assert seen[len(call_text("Paris")) - 2] == 0 and seen[len(call_text("Paris")) - 1] == 1
    assert len(collector.calls) == 1 and collector.repeated and collector.stopped


def feed_chars(guard: MarkupGuard, text: str) -> str:
    out = "".join(guard.feed(char) for char in text)
    return out + guard.flush()


def test_guard_stops_at_a_call_started_mid_text():
    guard = MarkupGuard([WEATHER])
    shown = feed_chars(guard, f"It is 4.\n<tool_call>\n{call_text('Paris')}\n</tool_call>")
    assert shown == "It is 4." and guard.stopped and guard.text == shown
    guard = MarkupGuard([WEATHER])
    shown = feed_chars(guard, f"Checking.\n```json\n{call_text('Paris')}\n```")
    assert shown == "Checking." and guard.stopped


def test_guard_passes_code_json_and_comparisons_through_whole():
    for text in ("Code:\n```js\nfunction f() { return {a: 1}; }\n```",
                 'Ann as JSON: {"name": "Ann", "age": 3} and a < b', "Closing fence\n```"):
        guard = MarkupGuard([WEATHER])
        assert feed_chars(guard, text) == text and not guard.stopped


def test_guard_drops_a_call_fragment_at_the_end():
    guard = MarkupGuard([WEATHER])
    assert feed_chars(guard, 'Sure. {"name": "get_wea') == "Sure."
    guard = MarkupGuard([WEATHER])
    assert feed_chars(guard, "Sure. <tool_") == "Sure."


def test_grammar_bounds_the_number_of_calls():
    one = tool_call_grammar([WEATHER], max_calls=1)
    three = tool_call_grammar([WEATHER], max_calls=3)
    assert one.splitlines()[0] == 'root ::= call-any "\\n</tool_call>"'
    assert three.splitlines()[0].count("call-any") == 3 and "*" not in three.splitlines()[0]
    import llama_cpp

    for text in (one, three):
        llama_cpp.LlamaGrammar.from_string(text, verbose=False)  # well-formed GBNF


def test_plan_refuses_when_no_call_fits_and_caps_strings_when_tight():
    count = lambda text: len(text) // 3 + 1  # noqa: E731  (a stand-in tokenizer: ~3 chars a token)
    smallest = smallest_call(WEATHER)
    assert json.loads(smallest) == {"name": "get_weather", "arguments": {"city": "", "unit": "celsius"}}
    needed = count(smallest + "\n</tool_call>")
    assert ToolPlan.make([WEATHER], max_tokens=needed - 1, max_calls=4, count=count) is None
    tight = ToolPlan.make([WEATHER], max_tokens=needed + 20, max_calls=4, count=count)
    assert tight is not None and tight.string_cap is not None and tight.string_cap < 20
    assert 'space ::= ""' in tight.grammar
    roomy = ToolPlan.make([WEATHER], max_tokens=4000, max_calls=4, count=count)
    assert roomy.string_cap is None and 'space ::= ""' not in roomy.grammar


def test_usage_sum_is_estimated_when_any_part_is():
    total = Usage(prompt_tokens=3, requests=1) + Usage(prompt_tokens=5, requests=1, estimated=True)
    assert total.estimated and total.prompt_tokens == 8
    assert not (Usage(requests=1) + Usage(requests=1)).estimated


# --- the real embedded model -------------------------------------------------------------------

def chat(model, text: str, tools: list[ToolSpec], **options):
    request = ChatRequest(model=model.name, messages=[Message(role="user", content=text)], tools=tools,
                          temperature=0, seed=7, **options)
    return asyncio.run(model.complete(request))


def valid_calls(reply, tools: list[ToolSpec]) -> list[ToolCall]:
    by_name = {t.name: t for t in tools}
    for call in reply.message.tool_calls:
        assert argument_errors(by_name[call.name], json.loads(call.arguments)) == []
    return reply.message.tool_calls


@pytest.mark.integration
def test_what_is_2_plus_2_with_tools_carries_no_markup(embedded_model):
    reply = chat(embedded_model, "What is 2+2?", FILE_TOOLS, max_tokens=512)
    assert_no_markup(reply.message.content, FILE_TOOLS)
    assert reply.finish_reason in ("stop", "tool_calls", "length")
    if reply.finish_reason == "tool_calls":
        assert valid_calls(reply, FILE_TOOLS)
    calls = [(c.name, json.loads(c.arguments)) for c in reply.message.tool_calls]
    assert len(calls) == len({json.dumps(c, sort_keys=True) for c in calls})


@pytest.mark.integration
def test_required_with_64_tokens_returns_one_valid_call_and_stops_repeating(embedded_model):
    reply = chat(embedded_model, "Tell me a joke.", [WEATHER], tool_choice=ToolChoice("required"), max_tokens=64)
    assert reply.finish_reason == "tool_calls"
    calls = valid_calls(reply, [WEATHER])
    assert len(calls) >= 1
    assert_no_markup(reply.message.content, [WEATHER])
    assert len({(c.name, json.dumps(json.loads(c.arguments), sort_keys=True)) for c in calls}) == len(calls)


@pytest.mark.integration
def test_a_call_cut_off_by_max_tokens_is_length_with_nothing_in_content(embedded_model):
    # A date argument has no size the plan can bound, so a tiny budget cuts the call open.
    events = ToolSpec("find_events", "Events in a city on a date", {
        "type": "object", "required": ["city", "date"],
        "properties": {"city": {"type": "string"}, "date": {"type": "string", "format": "date"}}})
    cut = chat(embedded_model, "Concerts in Paris on 2026-05-01?", [events], tool_choice=ToolChoice("required"),
               max_tokens=10)
    assert cut.finish_reason == "length" and cut.usage.completion_tokens == 10
    assert cut.message.tool_calls == [] and not cut.message.content


@pytest.mark.integration
def test_the_grammar_bounds_calls_per_turn(embedded_model):
    ask = "Get the weather in celsius for Paris, London, Tokyo, Rome and Oslo."
    two = chat(embedded_model, ask, [WEATHER], tool_choice=ToolChoice("required"), max_tokens=300, max_tool_calls=2)
    assert 1 <= len(two.message.tool_calls) <= 2
    one = chat(embedded_model, ask, [WEATHER], tool_choice=ToolChoice("required"), max_tokens=300,
               parallel_tool_calls=False)
    assert len(one.message.tool_calls) == 1 and one.finish_reason == "tool_calls"


@pytest.mark.integration
def test_required_fits_a_tight_budget_or_says_length(embedded_model):
    smallest = embedded_model._count_plain(smallest_call(WEATHER) + "\n</tool_call>")
    ask = "Weather in Llanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogoch, Wales, in great detail?"
    tight = chat(embedded_model, ask, [WEATHER], tool_choice=ToolChoice("required"), max_tokens=smallest + 10)
    assert tight.finish_reason == "tool_calls" and valid_calls(tight, [WEATHER])
    assert tight.usage.completion_tokens <= smallest + 10
    impossible = chat(embedded_model, ask, [WEATHER], tool_choice=ToolChoice("required"), max_tokens=smallest - 1)
    assert impossible.finish_reason == "length"
    assert impossible.message.tool_calls == [] and not impossible.message.content
    assert impossible.usage.completion_tokens == 0


# --- through the HTTP API (real server, official SDK) -----------------------------------------

OPENAI_TOOLS = [{"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
                for t in FILE_TOOLS]


@pytest.fixture(scope="module")
def client(live_server):
    import openai

    return openai.OpenAI(base_url=live_server.base_url, api_key=live_server.api_key, max_retries=0)


@pytest.mark.integration
def test_api_required_with_64_tokens_returns_tool_calls(client):
    weather = {"type": "function", "function": {"name": WEATHER.name, "parameters": WEATHER.parameters}}
    reply = client.chat.completions.create(
        model="qwen2.5-coder-0.5b-instruct", messages=[{"role": "user", "content": "What is 2+2?"}],
        tools=[weather], tool_choice="required", max_tokens=64, temperature=0,
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls and choice.message.tool_calls[0].function.name == "get_weather"
    assert_no_markup(choice.message.content, [WEATHER])


@pytest.mark.integration
def test_api_stream_never_sends_markup_deltas(client):
    stream = client.chat.completions.create(
        model="qwen2.5-coder-0.5b-instruct", messages=[{"role": "user", "content": "What is 2+2?"}],
        tools=OPENAI_TOOLS, max_tokens=512, temperature=0, stream=True,
    )
    pieces, calls, finish = [], [], None
    for chunk in stream:
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
                assert_no_markup(choice.delta.content, FILE_TOOLS)
            calls.extend(choice.delta.tool_calls or [])
            finish = choice.finish_reason or finish
    assert_no_markup("".join(pieces), FILE_TOOLS)
    assert finish in ("stop", "tool_calls", "length")
    assert (finish == "tool_calls") == bool(calls)
