"""Memory: persistence, encryption at rest, dedup and contradictions, scoping, tools, flushing.

Uses the real local embedder (all-MiniLM-L6-v2, int8 ONNX) and, for fact distillation, the
deterministic ``ScriptedModel`` from ``sovereign.testing`` (no real model calls here).
"""

from __future__ import annotations

import asyncio
import json
import os
import stat

import pytest

from sovereign.errors import ConfigError, InvalidRequestError, NotFoundError, UserError
from sovereign.kernel.messages import Message
from sovereign.memory import Embedder, MemoryStore, flush_before_compaction, flush_facts, memory_tools, recall_prefix
from sovereign.store import Database
from sovereign.testing import ScriptedModel, text_response
from sovereign.tools.base import ToolContext, ToolError


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    model = Embedder()
    model.load()
    return model


@pytest.fixture
def store(tmp_path, embedder, monkeypatch):
    monkeypatch.delenv("SOVEREIGN_MEMORY_KEY", raising=False)
    db = Database(tmp_path / "sovereign.db")
    yield MemoryStore.open(db, tmp_path, embedder)
    db.close()


def test_embeddings_are_sane(embedder):
    a, b, c = embedder.encode(["The cat sits on the mat.", "A kitten rests on a rug.", "Interest rates rose."])
    assert abs(float(a @ a) - 1.0) < 1e-4
    assert float(a @ b) > float(a @ c) + 0.3


def test_restart_persistence(tmp_path, embedder, monkeypatch):
    monkeypatch.delenv("SOVEREIGN_MEMORY_KEY", raising=False)
    db = Database(tmp_path / "sovereign.db")
    first = MemoryStore.open(db, tmp_path, embedder).add("ann", "The project codename is Bluebird.")
    db.close()
    db = Database(tmp_path / "sovereign.db")
    hits = MemoryStore.open(db, tmp_path, embedder).search("ann", "what is the codename of the project?")
    assert hits and hits[0].item.id == first.item.id and hits[0].item.content == "The project codename is Bluebird."
    db.close()


def test_raw_database_reveals_no_memory_text(tmp_path, store):
    secrets = ["Zanzibarite tangerine protocol", "Wolfgang keeps the ledger in a quokka-shaped safe"]
    for text in secrets:
        store.add("ann", text)
    store.add("ann", "summary of session one: discussed quokka", kind="summary", session="s1")
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("sovereign.db*"))
    for word in ("Zanzibarite", "tangerine", "Wolfgang", "quokka", "ledger", "zanzibarit"):
        assert word.encode() not in raw and word.lower().encode() not in raw
    assert stat.S_IMODE(os.stat(tmp_path / "memory.key").st_mode) == 0o600
    assert store.search("ann", "tangerine protocol")[0].item.content == secrets[0]


def test_search_terms_are_keyed_per_owner_and_agent(tmp_path, store, embedder):
    store.add("ann", "The quarterly audit uses the blue binder.", agent="helper")
    store.add("bob", "The quarterly audit uses the red binder.", agent="helper")
    docs = [r[0].split() for r in store.db.query("SELECT terms FROM memory_terms ORDER BY rowid")]
    assert not set(docs[0]) & set(docs[1])  # the same words hash differently in each scope
    assert [h.item.owner for h in store.search("bob", "quarterly audit binder")] == ["bob"]
    assert store.search("ann", "quarterly audit binder", agent="other") == []
    store.db.execute("DELETE FROM memory_state WHERE key = 'terms'")  # as a database from before scoped terms
    store.db.execute("DELETE FROM memory_terms")
    reopened = MemoryStore.open(store.db, tmp_path, embedder)
    assert reopened._keyword("quarterly audit", [("ann", "helper")])


def test_wrong_key_is_refused(tmp_path, store, embedder, monkeypatch):
    store.add("ann", "something private")
    monkeypatch.setenv("SOVEREIGN_MEMORY_KEY", "A" * 43)
    with pytest.raises(UserError, match="does not match"):
        MemoryStore.open(store.db, tmp_path, embedder)
    monkeypatch.setenv("SOVEREIGN_MEMORY_KEY", "short")
    with pytest.raises(ConfigError):
        MemoryStore.open(store.db, tmp_path, embedder)


def test_key_file_readable_by_others_is_refused(tmp_path, store, embedder):
    os.chmod(tmp_path / "memory.key", 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        MemoryStore.open(store.db, tmp_path, embedder)


def test_near_duplicates_merge_and_contradictions_supersede(store):
    first = store.add("ann", "The user prefers green tea.", confidence=0.6)
    again = store.add("ann", "The user likes to drink green tea.", confidence=0.9)
    assert again.action == "merged" and again.item.id == first.item.id and again.item.confidence == 0.9
    old = store.add("ann", "The user's favourite colour is blue.")
    new = store.add("ann", "The user's favourite colour is green.")
    assert new.action == "superseded" and new.replaced.id == old.item.id
    other = store.add("ann", "Bob lives in Paris.")
    assert store.add("ann", "Alice lives in Paris.").action == "added"  # different subject
    active = [i.content for i in store.list("ann")]
    assert "The user's favourite colour is blue." not in active and other.item.content in active
    assert [i.content for i in store.history("ann", new.item.id)] == [
        "The user's favourite colour is green.", "The user's favourite colour is blue."]
    hits = store.search("ann", "favourite colour")
    assert hits[0].item.content.endswith("green.")
    assert all(h.item.id != old.item.id for h in hits)


def test_session_summary_rolls(store):
    one = store.add("ann", "We set up the repo.", kind="summary", session="s1")
    two = store.add("ann", "We set up the repo and wrote the tests.", kind="summary", session="s1")
    assert two.action == "superseded" and two.replaced.id == one.item.id
    assert [i.content for i in store.list("ann", kind="summary")] == [two.item.content]


def test_owner_scoping(store):
    secret = store.add("ann", "Ann's bank PIN hint is the cat's birthday.")
    store.add("bob", "Bob likes chess.")
    assert store.search("bob", "bank PIN hint birthday") == [] or all(
        h.item.owner == "bob" for h in store.search("bob", "bank PIN hint birthday"))
    assert all(i.owner == "bob" for i in store.list("bob"))
    with pytest.raises(NotFoundError):
        store.get("bob", secret.item.id)
    with pytest.raises(NotFoundError):
        store.forget("bob", secret.item.id)
    assert store.export("bob") and all(row["owner"] == "bob" for row in store.export("bob"))
    assert store.get("ann", secret.item.id).content == secret.item.content


def test_bad_input_writes_nothing(store):
    for kwargs in ({"content": ""}, {"content": "x", "kind": "dream"}, {"content": "x", "confidence": 2.0},
                   {"content": "x", "kind": "summary"}):
        content = kwargs.pop("content")
        with pytest.raises(InvalidRequestError):
            store.add("ann", content, **kwargs)
    with pytest.raises(InvalidRequestError):
        store.add("", "fact")
    assert store.count() == 0


def test_forget_removes_item_and_history(store):
    store.add("ann", "The deploy target is staging-1.")
    new = store.add("ann", "The deploy target is staging-2.")
    assert store.forget("ann", new.item.id) == 2
    assert store.count("ann") == 0 and store.search("ann", "deploy target") == []


def test_agent_tools_are_scoped(store):
    ann_tools = {t.name: t for t in memory_tools(store, "ann", "helper")}
    bob_tools = {t.name: t for t in memory_tools(store, "bob", "helper")}
    ctx = ToolContext(run_id="r1", owner="ann", agent="helper")
    out = asyncio.run(ann_tools["remember"].call({"content": "The staging database is on port 5433."}, ctx))
    assert out.startswith("added mem_")
    memory_id = out.split()[1]
    assert store.get("ann", memory_id).source == "run:r1"
    assert "5433" in asyncio.run(ann_tools["recall"].call({"query": "staging database port"}))
    assert "5433" not in asyncio.run(bob_tools["recall"].call({"query": "staging database port"}))
    with pytest.raises(ToolError):
        asyncio.run(bob_tools["forget"].call({"memory_id": memory_id}))
    assert asyncio.run(ann_tools["forget"].call({"memory_id": memory_id})).startswith("forgot")
    with pytest.raises(ToolError):
        asyncio.run(ann_tools["remember"].call({"content": "   "}, ctx))


def test_recall_prefix_and_flush(store):
    assert recall_prefix(store, "ann", "helper", "anything") == ""
    results = flush_facts(store, "ann", "helper", ["The user's timezone is UTC+2.", "", "The user is called Ann."])
    assert [r.action for r in results] == ["added", "added"]
    prefix = recall_prefix(store, "ann", "helper", "schedule a meeting in my timezone")
    assert "UTC+2" in prefix and prefix.startswith("Relevant memories")


def test_flush_before_compaction_uses_model_facts(store):
    model = ScriptedModel([text_response(json.dumps({"facts": ["The build uses Python 3.11.", "  "]})),
                           text_response("not json")])
    transcript = [Message(role="user", content="We agreed the build uses Python 3.11."),
                  Message(role="assistant", content="Noted.")]
    stored = asyncio.run(flush_before_compaction(store, model, "ann", "helper", transcript, run_id="r9"))
    assert [r.item.content for r in stored] == ["The build uses Python 3.11."]
    assert stored[0].item.source == "compaction:r9"
    assert asyncio.run(flush_before_compaction(store, model, "ann", "helper", transcript)) == []
    model.assert_complete()
    assert model.requests[0].response_format.type == "json_schema"
