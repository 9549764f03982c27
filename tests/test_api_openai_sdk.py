"""The official ``openai`` SDK against a real ``sovereign serve`` running the embedded model."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

pytestmark = pytest.mark.integration

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}


@pytest.fixture(scope="module")
def client(live_server):
    return openai.OpenAI(base_url=live_server.base_url, api_key=live_server.api_key, max_retries=0)


def ask(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_plain_completion(client):
    reply = client.chat.completions.create(
        model="qwen2.5-coder-0.5b-instruct", messages=ask("What is the capital of France? One word."),
        temperature=0, max_tokens=10,
    )
    assert "paris" in reply.choices[0].message.content.lower()
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_logprobs_through_the_sdk(client):
    reply = client.chat.completions.create(
        model="qwen2.5-coder-0.5b-instruct", messages=ask("What is the capital of France? One word."),
        temperature=0, max_tokens=8, logprobs=True, top_logprobs=2,
    )
    tokens = reply.choices[0].logprobs.content
    assert tokens and "".join(t.token for t in tokens).strip().lower().startswith("paris")
    assert all(t.logprob <= 0 and len(t.top_logprobs) == 2 for t in tokens)
    stream = client.chat.completions.create(
        model="qwen2.5-coder-0.5b-instruct", messages=ask("What is the capital of France? One word."),
        temperature=0, max_tokens=8, logprobs=True, stream=True,
    )
    streamed = [t.token for chunk in stream for choice in chunk.choices if choice.logprobs
                for t in choice.logprobs.content or []]
    assert streamed == [t.token for t in tokens]


def test_streaming_completion(client):
    stream = client.chat.completions.create(
        model="qwen2.5-coder-0.5b-instruct", messages=ask("Count from 1 to 5, separated by commas."),
        temperature=0, max_tokens=30, stream=True, stream_options={"include_usage": True},
    )
    pieces, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    text = "".join(pieces)
    assert "1" in text and "5" in text
    assert len([p for p in pieces if p]) > 1, "answer should arrive in several chunks"
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens > 0


def test_tool_call_auto(client):
    reply = client.chat.completions.create(
        model="qwen2.5-coder-0.5b-instruct", messages=ask("What's the weather in Paris in celsius?"),
        tools=[WEATHER_TOOL], temperature=0, max_tokens=80,
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content in (None, "")
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    args = json.loads(call.function.arguments)
    assert args["city"].lower() == "paris" and args["unit"] in ("celsius", "fahrenheit")


def test_tool_call_required_always_validates(client):
    # A prompt with nothing to do with the tool: constrained decoding still yields valid arguments.
    reply = client.chat.completions.create(
        model="qwen2.5-coder-0.5b-instruct", messages=ask("Tell me a joke."),
        tools=[WEATHER_TOOL], tool_choice="required", temperature=0, max_tokens=80,
    )
    call = reply.choices[0].message.tool_calls[0]
    args = json.loads(call.function.arguments)
    assert set(args) == {"city", "unit"} and args["unit"] in ("celsius", "fahrenheit")


def test_tool_choice_none_answers_in_text(client):
    reply = client.chat.completions.create(
        model="qwen2.5-coder-0.5b-instruct", messages=ask("Say hello."),
        tools=[WEATHER_TOOL], tool_choice="none", temperature=0, max_tokens=20,
    )
    assert reply.choices[0].message.tool_calls in (None, [])
    assert reply.choices[0].message.content


def test_tool_choice_none_never_opens_a_call_even_when_the_task_wants_one(client):
    # The tools leave the prompt and the call opener is banned, so the reply is prose.
    reply = client.chat.completions.create(
        model="qwen2.5-coder-0.5b-instruct", messages=ask("What is the weather in Berlin, in celsius?"),
        tools=[WEATHER_TOOL], tool_choice="none", temperature=0, max_tokens=40,
    )
    message = reply.choices[0].message
    assert message.tool_calls in (None, [])
    assert message.content and "<tool_call>" not in message.content and '"name"' not in message.content


def test_streamed_tool_call(client):
    stream = client.chat.completions.create(
        model="qwen2.5-coder-0.5b-instruct", messages=ask("Weather in Berlin, fahrenheit?"),
        tools=[WEATHER_TOOL], tool_choice={"type": "function", "function": {"name": "get_weather"}},
        temperature=0, max_tokens=80, stream=True,
    )
    calls, finish = [], None
    for chunk in stream:
        for choice in chunk.choices:
            calls.extend(choice.delta.tool_calls or [])
            finish = choice.finish_reason or finish
    assert finish == "tool_calls"
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments)["city"]


def test_json_schema_response(client):
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    reply = client.chat.completions.create(
        model="qwen2.5-coder-0.5b-instruct", messages=ask("Ann is 30 years old. Give her as JSON."),
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}},
        temperature=0, max_tokens=60,
    )
    data = json.loads(reply.choices[0].message.content)
    assert set(data) == {"name", "age"} and isinstance(data["age"], int)


def test_thinking_mode_returns_reasoning_separately(client):
    reply = client.chat.completions.create(
        model="qwen2.5-coder-0.5b-instruct", messages=ask("What is 12 * 4?"),
        reasoning_effort="low", temperature=0, max_tokens=40,
    )
    message = reply.choices[0].message
    reasoning = message.model_extra.get("reasoning_content")
    assert reasoning, "thinking mode must return reasoning_content"
    assert "<think>" not in (message.content or "") and "</think>" not in (message.content or "")
    assert "48" in message.content
    assert reply.usage.completion_tokens_details.reasoning_tokens > 0


def test_thinking_disabled_is_instant(client):
    reply = client.chat.completions.create(
        model="qwen2.5-coder-0.5b-instruct", messages=ask("What is 12 * 4? Just the number."),
        extra_body={"thinking": {"type": "disabled"}}, temperature=0, max_tokens=10,
    )
    assert reply.choices[0].message.model_extra.get("reasoning_content") is None
    assert reply.usage.completion_tokens_details.reasoning_tokens == 0
    assert "48" in reply.choices[0].message.content


def test_streaming_thinking_keeps_channels_apart(client):
    stream = client.chat.completions.create(
        model="qwen2.5-coder-0.5b-instruct", messages=ask("Is 7 prime? Answer yes or no."),
        reasoning_effort="low", temperature=0, max_tokens=20, stream=True,
    )
    reasoning, content = [], []
    for chunk in stream:
        for choice in chunk.choices:
            reasoning.append((choice.delta.model_extra or {}).get("reasoning_content") or "")
            content.append(choice.delta.content or "")
    assert "".join(reasoning).strip()
    assert "think>" not in "".join(content)


def test_prefix_cache_reports_cached_tokens(client):
    system = "You are a meticulous assistant. " + " ".join(f"Rule {i}: answer precisely and briefly." for i in range(60))
    first = client.chat.completions.create(
        model="qwen2.5-coder-0.5b-instruct", temperature=0, max_tokens=5,
        messages=[{"role": "system", "content": system}, {"role": "user", "content": "Say A."}],
    )
    second = client.chat.completions.create(
        model="qwen2.5-coder-0.5b-instruct", temperature=0, max_tokens=5,
        messages=[{"role": "system", "content": system}, {"role": "user", "content": "Say B."}],
    )
    assert first.usage.prompt_tokens > 400
    assert second.usage.prompt_tokens_details.cached_tokens >= first.usage.prompt_tokens - 20


def test_missing_and_wrong_key_get_401(live_server):
    no_key = httpx.post(f"{live_server.base_url}/chat/completions", json={"messages": ask("hi")})
    assert no_key.status_code == 401
    assert "missing API key" in no_key.json()["error"]["message"]
    wrong = openai.OpenAI(base_url=live_server.base_url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        wrong.chat.completions.create(model="qwen2.5-coder-0.5b-instruct", messages=ask("hi"))
    assert info.value.status_code == 401


def test_malformed_json_is_400(live_server):
    response = httpx.post(
        f"{live_server.base_url}/chat/completions", content=b'{"messages": [',
        headers={"Authorization": f"Bearer {live_server.api_key}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "malformed_json" and "JSON" in error["message"]


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no-such-model", messages=ask("hi"))
    assert "no-such-model" in info.value.body["message"]
    assert info.value.body["code"] == "model_not_found"


def test_context_overflow_says_tokens_vs_limit(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="qwen2.5-coder-0.5b-instruct", messages=ask("word " * 5000), max_tokens=10,
        )
    body = info.value.body
    assert body["code"] == "context_length_exceeded"
    assert "4096" in body["message"] and "in the messages" in body["message"]


def test_invalid_tool_schema_is_400(client):
    bad_tool = {"type": "function", "function": {"name": "bad tool!", "parameters": {"type": "object"}}}
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="qwen2.5-coder-0.5b-instruct", messages=ask("hi"), tools=[bad_tool])
    assert info.value.body["code"] == "invalid_tool_schema"
    bad_schema = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "nonsense"}}}}}
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="qwen2.5-coder-0.5b-instruct", messages=ask("hi"), tools=[bad_schema])
    assert "not a valid JSON Schema" in info.value.body["message"]


def test_bad_parameters_are_400(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="qwen2.5-coder-0.5b-instruct", messages=ask("hi"), temperature=7)
    assert "temperature" in info.value.body["message"]
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="qwen2.5-coder-0.5b-instruct", messages=[])
    assert "messages" in info.value.body["message"]
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="qwen2.5-coder-0.5b-instruct", messages=ask("hi"), tool_choice="required")
    assert "tool_choice" in info.value.body["message"]


def test_concurrent_requests_queue_safely(client, live_server):
    def one(i: int) -> str:
        reply = client.chat.completions.create(
            model="qwen2.5-coder-0.5b-instruct", messages=ask(f"Repeat the number {i}."), temperature=0, max_tokens=8,
        )
        return reply.choices[0].message.content

    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(one, range(6)))
    assert all(answers)
    assert httpx.get(f"http://127.0.0.1:{live_server.port}/health").status_code == 200


def test_models_health_and_metrics(client, live_server):
    names = [m.id for m in client.models.list().data]
    assert "qwen2.5-coder-0.5b-instruct" in names and "deepseek-v4-flash" in names
    assert httpx.get(f"http://127.0.0.1:{live_server.port}/health").json()["status"] == "ok"
    assert httpx.get(f"http://127.0.0.1:{live_server.port}/metrics").status_code == 401  # a key is needed
    metrics = httpx.get(f"http://127.0.0.1:{live_server.port}/metrics",
                        headers={"Authorization": f"Bearer {live_server.api_key}"}).text
    assert 'sovereign_requests_total{model="qwen2.5-coder-0.5b-instruct",status="ok"}' in metrics
    assert "sovereign_tokens_total" in metrics


def test_embeddings_create(client):
    reply = client.embeddings.create(model="all-MiniLM-L6-v2", input=["a cat on a mat", "a kitten on a rug", "tax law"])
    vectors = [d.embedding for d in reply.data]
    assert len(vectors) == 3 and len(vectors[0]) == 384
    dot = lambda a, b: sum(x * y for x, y in zip(a, b))  # noqa: E731
    assert dot(vectors[0], vectors[1]) > dot(vectors[0], vectors[2])
    assert reply.usage.prompt_tokens > 0


def test_responses_create_plain_streaming_tools_and_previous_id(client):
    model = "qwen2.5-coder-0.5b-instruct"
    reply = client.responses.create(model=model, input="What is the capital of France? One word.",
                                    instructions="Answer briefly.", temperature=0, max_output_tokens=10)
    assert "paris" in reply.output_text.lower() and reply.usage.input_tokens > 0
    events = list(client.responses.create(model=model, input="Count from 1 to 5, separated by commas.",
                                          temperature=0, max_output_tokens=30, stream=True))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 1 and "5" in "".join(deltas) and events[-1].type == "response.completed"
    tool = {"type": "function", "name": WEATHER_TOOL["function"]["name"],
            "description": WEATHER_TOOL["function"]["description"], "parameters": WEATHER_TOOL["function"]["parameters"]}
    called = client.responses.create(model=model, input="What's the weather in Paris in celsius?", tools=[tool],
                                     tool_choice="required", temperature=0, max_output_tokens=80)
    call = called.output[0]
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments)["city"].lower() == "paris"
    answer = client.responses.create(model=model, previous_response_id=called.id, tools=[tool], tool_choice="none",
                                     temperature=0,
                                     max_output_tokens=40, input=[{"type": "function_call_output",
                                                                   "call_id": call.call_id, "output": "22 C, sunny"}])
    assert answer.output_text.strip() and answer.previous_response_id == called.id
