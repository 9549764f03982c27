"""``/v1/responses`` through the official ``openai`` SDK against the real app on loopback, with a
scripted model double (``sovereign.testing.ScriptedModel``) as the chat model: text and message
input, instructions, function tools and their outputs, streaming events, stored conversations
(``previous_response_id``, owner-scoped, ``store: false``), usage, and the governed path."""

from __future__ import annotations

import httpx
import openai
import pytest

from conftest import ADMIN_KEY, open_api_services
from servers.thread_server import ThreadServer
from sovereign.kernel.messages import ChatResponse, Message, TokenLogprob
from sovereign.server.app import create_app
from sovereign.testing import ScriptedModel, text_response, tool_response

WEATHER = {"type": "function", "name": "get_weather", "description": "Weather of a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    services = open_api_services(tmp_path_factory.mktemp("responses") / "home")
    with ThreadServer(create_app(services, preload=False)) as server:
        yield services, server
    services.close()


@pytest.fixture(scope="module")
def client(served):
    return openai.OpenAI(base_url=served[1].base_url, api_key=ADMIN_KEY, max_retries=0)


@pytest.fixture
def script(served):
    """Install a ScriptedModel (its responses given by the test) as the chat model."""
    services, _ = served
    name = services.settings.model_for("instant")

    def install(*responses: ChatResponse) -> ScriptedModel:
        model = ScriptedModel(list(responses), name=name)
        services.models[name] = model
        return model

    yield install


def _roles(model: ScriptedModel, call: int = -1) -> list[tuple[str, str | None]]:
    return [(m.role, m.content) for m in model.requests[call].messages]


def test_text_input_with_instructions(client, script):
    model = script(text_response("Hello there."))
    reply = client.responses.create(input="Say hi", instructions="Be brief.")
    assert reply.output_text == "Hello there." and reply.status == "completed"
    assert reply.id.startswith("resp_") and reply.output[0].type == "message"
    assert _roles(model) == [("system", "Be brief."), ("user", "Say hi")]
    assert reply.usage.input_tokens > 0 and reply.usage.output_tokens > 0
    assert reply.usage.total_tokens == reply.usage.input_tokens + reply.usage.output_tokens
    model.assert_complete()


def test_message_list_input_with_parts(client, script):
    model = script(text_response("Four."))
    reply = client.responses.create(input=[
        {"role": "developer", "content": "Answer in one word."},
        {"role": "user", "content": [{"type": "input_text", "text": "2 + 2?"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Four."}]},
        {"role": "user", "content": "Again?"},
    ])
    assert reply.output_text == "Four."
    assert _roles(model) == [("system", "Answer in one word."), ("user", "2 + 2?"), ("assistant", "Four."),
                             ("user", "Again?")]


def test_function_tools_and_previous_response_id(client, script):
    model = script(tool_response(("get_weather", '{"city": "Paris"}')), text_response("It is sunny in Paris."))
    first = client.responses.create(input="Weather in Paris?", instructions="Use tools.", tools=[WEATHER])
    call = first.output[0]
    assert call.type == "function_call" and call.name == "get_weather" and call.arguments == '{"city": "Paris"}'
    assert first.output_text == "" and model.requests[0].tools[0].name == "get_weather"
    second = client.responses.create(
        previous_response_id=first.id, tools=[WEATHER],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 22 C"}])
    assert second.output_text == "It is sunny in Paris." and second.previous_response_id == first.id
    messages = model.requests[1].messages
    assert [m.role for m in messages] == ["user", "assistant", "tool"]  # instructions are not carried over
    assert messages[1].tool_calls[0].id == call.call_id and messages[2].tool_call_id == call.call_id
    assert messages[2].content == "sunny, 22 C"
    model.assert_complete()


def test_stateless_continuation_with_the_function_call_item(client, script):
    model = script(text_response("Done."))
    client.responses.create(store=False, input=[
        {"role": "user", "content": "Weather?"},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city": "Oslo"}'},
        {"type": "function_call", "call_id": "call_2", "name": "get_weather", "arguments": '{"city": "Rome"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "cold"},
        {"type": "function_call_output", "call_id": "call_2", "output": "warm"},
    ], tools=[WEATHER])
    messages = model.requests[0].messages
    assert [m.role for m in messages] == ["user", "assistant", "tool", "tool"]
    assert [c.id for c in messages[1].tool_calls] == ["call_1", "call_2"]


def test_streaming_events(client, script):
    script(ChatResponse(model="x", message=Message(role="assistant", content="Hello, streamed world.",
                                                   reasoning_content="think first")))
    events = list(client.responses.create(input="hi", stream=True))
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"] and types[-1] == "response.completed"
    for expected in ("response.output_item.added", "response.content_part.added", "response.output_text.delta",
                     "response.output_text.done", "response.content_part.done", "response.output_item.done",
                     "response.reasoning_text.delta"):
        assert expected in types
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "Hello, streamed world."
    final = events[-1].response
    assert final.output_text == text and final.usage.output_tokens > 0
    assert [item.type for item in final.output] == ["reasoning", "message"]
    stored = client.responses.retrieve(final.id)
    assert stored.output_text == text


def test_output_text_logprobs_when_included(client, script):
    entries = [TokenLogprob("Hel", -0.1, list(b"Hel"), [("Hel", -0.1)]), TokenLogprob("lo", -0.5, list(b"lo"), [("lo", -0.5)])]
    answer = ChatResponse(model="x", message=Message(role="assistant", content="Hello"), logprobs=entries)
    model = script(answer, answer, text_response("plain"))
    reply = client.responses.create(input="hi", include=["message.output_text.logprobs"], top_logprobs=1)
    assert model.requests[-1].logprobs and model.requests[-1].top_logprobs == 1
    logprobs = reply.output[0].content[0].logprobs
    assert [(t.token, t.logprob) for t in logprobs] == [("Hel", -0.1), ("lo", -0.5)]
    assert logprobs[1].top_logprobs[0].token == "lo"
    events = list(client.responses.create(input="hi", include=["message.output_text.logprobs"], stream=True))
    streamed = [t.token for e in events if e.type == "response.output_text.delta" for t in e.logprobs]
    assert streamed == ["Hel", "lo"]
    assert not client.responses.create(input="hi").output[0].content[0].logprobs
    assert not model.requests[-1].logprobs


def test_streaming_a_function_call_with_the_sdk_helper(client, script):
    model = script(tool_response(("get_weather", '{"city": "Lima"}')))
    with client.responses.stream(model=model.name, input="Weather in Lima?", tools=[WEATHER]) as stream:
        types = [event.type for event in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.done" in types
    assert final.output[0].type == "function_call" and final.output[0].arguments == '{"city": "Lima"}'


def test_stored_responses_belong_to_their_owner(client, script, served):
    services, server = served
    script(text_response("mine"), text_response("private"))
    kept = client.responses.create(input="remember this")
    unkept = client.responses.create(input="forget this", store=False)
    services.keys.create_identity("other-owner", role="operator")
    _, other_key = services.keys.create_key("other-owner")
    other = openai.OpenAI(base_url=server.base_url, api_key=other_key, max_retries=0)
    with pytest.raises(openai.NotFoundError) as info:
        other.responses.create(input="continue", previous_response_id=kept.id)
    assert info.value.body["param"] == "previous_response_id"
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(kept.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(input="continue", previous_response_id=unkept.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unkept.id)
    assert client.responses.retrieve(kept.id).output_text == "mine"
    client.responses.delete(kept.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(kept.id)


def test_length_stop_is_incomplete(client, script):
    script(ChatResponse(model="x", message=Message(role="assistant", content="cut sh"), finish_reason="length"))
    reply = client.responses.create(input="long story", max_output_tokens=3)
    assert reply.status == "incomplete" and reply.incomplete_details.reason == "max_output_tokens"


def test_each_call_takes_the_governed_path(client, script, served):
    services, server = served
    script(text_response("counted"))
    reply = client.responses.create(input="count me")
    rows = services.db.query("SELECT * FROM usage_ledger WHERE request_id = ?", (reply.id,))
    assert len(rows) == 1 and rows[0]["prompt_tokens"] == reply.usage.input_tokens
    assert any(e.data.get("request_id") == reply.id for e in services.audit.entries(kind="model.call"))
    services.keys.create_identity("capped-owner", role="operator")
    key_id, capped = services.keys.create_key("capped-owner")
    services.spend.set_cap("key", key_id, "day", max_tokens=10)
    model = script()  # nothing scripted: a call that reached the model would fail the test
    capped_client = openai.OpenAI(base_url=server.base_url, api_key=capped, max_retries=0)
    with pytest.raises(openai.RateLimitError):
        capped_client.responses.create(input="too much " * 20)
    with pytest.raises(openai.RateLimitError):  # streamed: an HTTP 429, not an event
        capped_client.responses.create(input="too much " * 20, stream=True)
    assert model.requests == []


def test_bad_requests_are_400(client, served):
    cases = [
        ({"input": "x", "tools": [{"type": "web_search"}]}, "web_search"),
        ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}, "input_image"),
        ({"input": []}, "input"),
        ({"input": "x", "tools": [WEATHER], "tool_choice": {"type": "function", "name": "nope"}}, "nope"),
        ({"input": [{"type": "function_call_output", "output": "x"}]}, "call_id"),
        ({"input": [{"role": "robot", "content": "x"}]}, "role"),
        ({"input": "x", "temperature": 9}, "temperature"),
        ({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {"a": 1}}]}, "arguments"),
    ]
    for body, needle in cases:
        reply = httpx.post(f"{served[1].base_url}/responses", json=body,
                           headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        assert reply.status_code == 400, (body, reply.text)
        assert needle in reply.json()["error"]["message"], reply.text
