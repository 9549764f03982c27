"""``/v1/embeddings`` through the official ``openai`` SDK against the real app on loopback: the
embedding model the memory uses (the real, small ONNX model; no double is needed), on the
governed path (ledger, audit, caps, the key's model scope)."""

from __future__ import annotations

import httpx
import numpy as np
import openai
import pytest

from conftest import ADMIN_KEY, open_api_services
from servers.thread_server import ThreadServer
from sovereign.governance.keys import Scopes
from sovereign.memory.embeddings import MODEL_ID
from sovereign.server.app import create_app


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    services = open_api_services(tmp_path_factory.mktemp("emb") / "home")
    with ThreadServer(create_app(services, preload=False)) as server:
        yield services, server
    services.close()


@pytest.fixture(scope="module")
def client(served):
    return openai.OpenAI(base_url=served[1].base_url, api_key=ADMIN_KEY, max_retries=0)


def _ledger(services) -> list[dict]:
    return [dict(r) for r in services.db.query("SELECT * FROM usage_ledger WHERE model = ? ORDER BY id", (MODEL_ID,))]


def test_one_string_with_the_sdk_defaults_is_the_memory_models_vector(client, served):
    services, _ = served
    reply = client.embeddings.create(model=MODEL_ID, input="The cat sat on the mat.")  # the SDK asks for base64
    assert reply.model == MODEL_ID and len(reply.data) == 1
    vector = np.array(reply.data[0].embedding, dtype=np.float32)
    assert vector.shape == (384,)
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-4
    expected = services.embedder.encode(["The cat sat on the mat."])[0]
    assert np.allclose(vector, expected, atol=1e-6)
    assert reply.usage.prompt_tokens == reply.usage.total_tokens == len(
        services.embedder._tokenizer.encode("The cat sat on the mat.").ids)


def test_a_list_keeps_its_order_and_floats_are_plain_json(client):
    texts = ["How do I bake bread?", "A recipe for sourdough loaves", "The stock market fell today"]
    reply = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts, encoding_format="float")
    assert [d.index for d in reply.data] == [0, 1, 2]
    vectors = np.array([d.embedding for d in reply.data])
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2  # related texts are closer


def test_token_arrays_embed_like_their_text(client, served):
    services, _ = served
    ids = services.embedder._tokenizer.encode("bread and butter").ids
    by_ids = client.embeddings.create(model=MODEL_ID, input=[ids, ids[:3]], encoding_format="float")
    by_text = client.embeddings.create(model=MODEL_ID, input="bread and butter", encoding_format="float")
    assert np.allclose(by_ids.data[0].embedding, by_text.data[0].embedding, atol=1e-5)
    assert by_ids.usage.prompt_tokens == len(ids) + 3
    single = client.embeddings.create(model=MODEL_ID, input=ids, encoding_format="float")
    assert len(single.data) == 1


def test_bad_requests_are_400_naming_the_problem(client, served):
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=MODEL_ID, input="x", dimensions=128)
    assert info.value.body["code"] == "unsupported_dimensions" and "384" in info.value.body["message"]
    assert len(client.embeddings.create(model=MODEL_ID, input="x", dimensions=384).data[0].embedding) == 384
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=MODEL_ID, input=[])
    assert "input" in info.value.body["message"]
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=MODEL_ID, input=["fine", ""])
    assert "input item 1 is empty" in info.value.body["message"]
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=MODEL_ID, input=[[101, 10_000_000, 102]])
    assert "10000000" in info.value.body["message"] and "vocabulary" in info.value.body["message"]
    raw = httpx.post(f"{served[1].base_url}/embeddings", headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                     json={"input": "x", "encoding_format": "int8"})
    assert raw.status_code == 400 and "encoding_format" in raw.json()["error"]["message"]
    with pytest.raises(openai.NotFoundError) as info:
        client.embeddings.create(model="text-embedding-3-small", input="x")
    assert info.value.body["code"] == "model_not_found"


def test_each_call_is_in_the_ledger_and_the_audit_log(client, served):
    services, _ = served
    before, audited = len(_ledger(services)), len(services.audit.entries(kind="model.call"))
    reply = client.embeddings.create(model=MODEL_ID, input=["one", "two words"])
    rows = _ledger(services)
    assert len(rows) == before + 1 and rows[-1]["prompt_tokens"] == reply.usage.prompt_tokens
    entries = services.audit.entries(kind="model.call")
    assert len(entries) == audited + 1
    assert entries[-1].data["model"] == MODEL_ID and entries[-1].data["prompt_tokens"] == reply.usage.prompt_tokens


def test_caps_and_the_key_model_scope_apply(served):
    services, server = served
    services.keys.create_identity("emb-user", role="operator")
    key_id, capped = services.keys.create_key("emb-user", name="capped")
    services.spend.set_cap("key", key_id, "day", max_tokens=20)
    client = openai.OpenAI(base_url=server.base_url, api_key=capped, max_retries=0)
    client.embeddings.create(model=MODEL_ID, input="short")
    before = len(_ledger(services))
    with pytest.raises(openai.RateLimitError) as info:
        client.embeddings.create(model=MODEL_ID, input="a much longer text " * 10)
    assert info.value.body["code"] == "spend_cap_exceeded"
    assert len(_ledger(services)) == before  # refused before anything ran
    _, scoped = services.keys.create_key("emb-user", name="chat-only", scopes=Scopes(models=["qwen*"]))
    with pytest.raises(openai.PermissionDeniedError):
        openai.OpenAI(base_url=server.base_url, api_key=scoped, max_retries=0).embeddings.create(
            model=MODEL_ID, input="x")
