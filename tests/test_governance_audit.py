"""The hash-chained audit log: append, verify, tamper detection (edit, delete, insert, reorder,
truncate), redaction of secrets, JSONL export, egress decisions and concurrent writers."""

from __future__ import annotations

import json
import multiprocessing
import random
import sqlite3
import threading

import pytest

from sovereign.errors import EgressDeniedError
from sovereign.governance.audit import AuditLog, audit_egress, canonical_json, entry_hash, redact, redacted_json
from sovereign.governance.egress import EgressGate
from sovereign.store import Database


@pytest.fixture
def db(tmp_path):
    database = Database(tmp_path / "audit.db")
    yield database
    database.close()


@pytest.fixture
def audit(db):
    log = AuditLog(db)
    for i in range(1, 11):
        log.append("model.call", f"user{i % 3}", {"n": i, "model": "m", "cost_usd": 0.001 * i})
    return log


def raw(db) -> sqlite3.Connection:
    """What an attacker with write access to the file would use: the triggers dropped."""
    conn = sqlite3.connect(db.path, isolation_level=None)
    conn.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
    conn.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
    return conn


def test_intact_chain_verifies(audit):
    verdict = audit.verify()
    assert verdict.ok and verdict.entries == 10 and verdict.first_bad_seq is None
    entries = audit.entries()
    assert [e.seq for e in entries] == list(range(1, 11))
    assert entries[0].prev_hash == "0" * 64
    for before, after in zip(entries, entries[1:]):
        assert after.prev_hash == before.hash


def test_empty_log_verifies(db):
    assert AuditLog(db).verify().ok


def test_log_is_append_only_through_sqlite(audit, db):
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE audit_log SET kind = 'x' WHERE seq = 3")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("DELETE FROM audit_log WHERE seq = 3")


def test_edited_entry_is_named(audit, db):
    conn = raw(db)
    data = json.loads(conn.execute("SELECT data FROM audit_log WHERE seq = 4").fetchone()[0])
    data["cost_usd"] = 0.0
    conn.execute("UPDATE audit_log SET data = ? WHERE seq = 4", (canonical_json(data),))
    verdict = audit.verify()
    assert not verdict.ok and verdict.first_bad_seq == 4 and "edited" in verdict.reason
    assert verdict.entries == 3


def test_edited_actor_or_kind_is_named(audit, db):
    raw(db).execute("UPDATE audit_log SET actor = 'someone-else' WHERE seq = 7")
    assert audit.verify().first_bad_seq == 7


def test_edited_entry_with_recomputed_hash_is_named(audit, db):
    conn = raw(db)
    row = conn.execute("SELECT seq, ts, kind, actor, prev_hash FROM audit_log WHERE seq = 5").fetchone()
    forged = {"n": 5, "model": "m", "cost_usd": 0.0}
    digest = entry_hash(row[4], row[0], row[1], row[2], row[3], forged)
    conn.execute("UPDATE audit_log SET data = ?, hash = ? WHERE seq = 5", (canonical_json(forged), digest))
    verdict = audit.verify()
    assert not verdict.ok and verdict.first_bad_seq == 5 and "rewritten" in verdict.reason


def test_deleted_entry_is_named(audit, db):
    raw(db).execute("DELETE FROM audit_log WHERE seq = 6")
    verdict = audit.verify()
    assert not verdict.ok and verdict.first_bad_seq == 6 and "missing" in verdict.reason


def test_deleted_and_renumbered_is_named(audit, db):
    conn = raw(db)
    conn.execute("DELETE FROM audit_log WHERE seq = 6")
    conn.execute("UPDATE audit_log SET seq = seq - 1 WHERE seq > 6")
    conn.execute("UPDATE audit_head SET seq = seq - 1")
    assert audit.verify().first_bad_seq == 6


def test_truncated_tail_is_detected(audit, db):
    raw(db).execute("DELETE FROM audit_log WHERE seq >= 9")
    verdict = audit.verify()
    assert not verdict.ok and verdict.first_bad_seq == 9 and "truncated" in verdict.reason


def test_inserted_entry_is_named(audit, db):
    conn = raw(db)
    # Make room at seq 5 (shift 5..10 up, highest first) and forge a well-formed entry there.
    for seq in range(10, 4, -1):
        conn.execute("UPDATE audit_log SET seq = ? WHERE seq = ?", (seq + 1, seq))
    prev = conn.execute("SELECT hash FROM audit_log WHERE seq = 4").fetchone()[0]
    ts, data = "2025-01-01T00:00:00.000000Z", {"n": 99, "note": "forged"}
    digest = entry_hash(prev, 5, ts, "approval", "attacker", data)
    conn.execute("INSERT INTO audit_log (seq, ts, kind, actor, data, prev_hash, hash) VALUES (5, ?, ?, ?, ?, ?, ?)",
                 (ts, "approval", "attacker", canonical_json(data), prev, digest))
    conn.execute("UPDATE audit_head SET seq = 11")
    verdict = audit.verify()
    assert not verdict.ok and verdict.first_bad_seq == 5 and "inserted" in verdict.reason


def test_appended_entry_without_head_is_named(audit, db):
    conn = raw(db)
    prev = conn.execute("SELECT hash FROM audit_log WHERE seq = 10").fetchone()[0]
    ts, data = "2030-01-01T00:00:00.000000Z", {"forged": True}
    conn.execute("INSERT INTO audit_log VALUES (11, ?, 'approval', 'x', ?, ?, ?)",
                 (ts, canonical_json(data), prev, entry_hash(prev, 11, ts, "approval", "x", data)))
    verdict = audit.verify()
    assert not verdict.ok and verdict.first_bad_seq == 11


def test_reordered_entries_are_named(audit, db):
    conn = raw(db)
    conn.execute("UPDATE audit_log SET seq = -1 WHERE seq = 3")
    conn.execute("UPDATE audit_log SET seq = 3 WHERE seq = 4")
    conn.execute("UPDATE audit_log SET seq = 4 WHERE seq = -1")
    verdict = audit.verify()
    assert not verdict.ok and verdict.first_bad_seq == 3 and "reordered" in verdict.reason


def test_secrets_are_redacted_before_writing(db):
    log = AuditLog(db)
    secret_key = "sk-sov-" + "A" * 40
    log.append("tool.call", "agent", {
        "arguments": {"url": "https://api.example.com/x?api_key=hunter22&q=1", "password": "hunter2"},
        "headers": {"Authorization": "Bearer abcdefghijklmnop", "X-Api-Key": "xyz-123-secret"},
        "note": f"the key is {secret_key} and token ghp_{'b' * 36}",
        "prompt_tokens": 12, "max_tokens": 100,
    })
    stored = db.query_one("SELECT data FROM audit_log WHERE seq = 1")["data"]
    for leaked in (secret_key, "hunter2", "hunter22", "abcdefghijklmnop", "xyz-123-secret", "b" * 36):
        assert leaked not in stored
    data = json.loads(stored)
    assert data["prompt_tokens"] == 12 and data["max_tokens"] == 100  # counts are not secrets
    assert data["arguments"]["password"] == "[REDACTED]"
    assert "q=1" in data["arguments"]["url"]
    assert log.verify().ok


def test_redact_handles_nesting_and_pem():
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIB\n-----END RSA PRIVATE KEY-----"
    out = redact({"a": [{"client_secret": "s3"}, pem], "b": ("Bearer tok_1234567890",)})
    assert out == {"a": [{"client_secret": "[REDACTED]"}, "[REDACTED]"], "b": ["Bearer [REDACTED]"]}


def test_export_writes_jsonl(audit, tmp_path):
    target = tmp_path / "out" / "audit.jsonl"
    assert audit.export(target) == 10
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert [line["seq"] for line in lines] == list(range(1, 11))
    assert lines[-1]["hash"] == audit.verify().head_hash
    # The export alone is enough to re-check the chain.
    prev = "0" * 64
    for line in lines:
        assert line["prev_hash"] == prev
        assert entry_hash(prev, line["seq"], line["ts"], line["kind"], line["actor"], line["data"]) == line["hash"]
        prev = line["hash"]


def test_egress_refusal_is_an_audit_entry(db):
    log = AuditLog(db)
    gate = EgressGate(mode="offline", on_decision=audit_egress(log))
    with pytest.raises(EgressDeniedError, match="offline"):
        gate.check("https://api.example.com/v1/chat/completions", purpose="model backend 'x'")
    gate.check("http://127.0.0.1:8088/v1", purpose="loopback")
    entries = log.entries(kind="egress")
    assert [(e.data["host"], e.data["allowed"]) for e in entries] == [("api.example.com", False), ("127.0.0.1", True)]


def test_concurrent_appends_from_threads_keep_the_chain(db):
    log = AuditLog(db)

    def writer(n: int) -> None:
        for i in range(25):
            log.append("tool.call", f"t{n}", {"i": i})

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    verdict = log.verify()
    assert verdict.ok and verdict.entries == 200


def _process_writer(path: str, n: int) -> None:
    database = Database(path)
    log = AuditLog(database)
    for i in range(20):
        log.append("model.call", f"p{n}", {"i": i})
    database.close()


def test_concurrent_appends_from_processes_keep_the_chain(tmp_path):
    path = str(tmp_path / "shared.db")
    AuditLog(Database(path))
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_process_writer, args=(path, n)) for n in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    verdict = AuditLog(Database(path)).verify()
    assert verdict.ok and verdict.entries == 60


def test_an_entry_is_stored_and_hashed_as_entry_hash_says(db):
    """Appends encode the data once and build the hash around it: the stored bytes and the hash
    are exactly what ``verify`` recomputes with ``entry_hash``."""
    log = AuditLog(db)
    datas = [{"b": 1, "a": [1, (2, 3)], "é": "ü", "none": None, "f": 1.5e-7, "t": True, 3: "int key",
              "api_key": "sk-abcdefghijklmnop", "nested": {"z": [{"q": 'a"b'}], "password": 7}}, {}, {"x": "y"}]
    for data, actor in zip(datas, ["bob", None, 'a\\"b']):
        seq = log.append("kind.x", actor, data)
        row = db.query_one("SELECT * FROM audit_log WHERE seq = ?", (seq,))
        clean = json.loads(row["data"])
        assert row["data"] == canonical_json(clean) == canonical_json(redact(data))
        assert row["hash"] == entry_hash(row["prev_hash"], seq, row["ts"], row["kind"], row["actor"], clean)
    assert log.verify().ok


def test_redacted_json_writes_exactly_what_canonical_json_of_redact_writes():
    """The fast encoder of entries gives the same text as the general path, for every kind of
    value, secret-looking keys and strings, repeated (cached) strings and odd keys; it raises
    where the general path raises (a non-finite float)."""
    rng = random.Random(7)
    keys = ["model", "api_key", "token", "prompt_tokens", "run_id", "password", "x-token", "é", "a\"b", "n"]
    strings = ["", "plain", "sk-abcdefghijklmnop", "Bearer abcdefghijk", "ü\n\"q", "u?token=abc&x=1",
               "AKIAABCDEFGHIJKLMNOP", "x" * 300, "ghp_" + "a" * 24]

    class Tag(str):
        pass

    values = [None, True, False, 0, -5, 2**70, 1.5e-7, 0.1, -0.0, 1e16, 4.2e-05, [1, "sk-abcdefghijkl"],
              {"password": 1, "z": [None]}, {"a": {1: "x", "b": "sk-abcdefghijklmnop"}}, {}, (2, 3),
              Tag("sk-abcdefghijklmnop"), 3.5, "plain"]
    for _ in range(3000):
        data = {}
        for _ in range(rng.randrange(0, 8)):
            value = rng.choice(values + strings)
            data[rng.choice(keys)] = value
        if rng.random() < 0.05:
            data[3] = "int key"
        assert redacted_json(data) == canonical_json(redact(data)), data
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError):
            redacted_json({"x": bad})
        with pytest.raises(ValueError):
            canonical_json(redact({"x": bad}))


def test_the_encoders_caches_keep_no_secret(db):
    """Strings (values and actors) are remembered by the fast encoder only when redaction found
    nothing in them; a value that is not a dict takes the general path."""
    from sovereign.governance import audit

    secret = "sk-" + "q" * 20
    AuditLog(db).append("x", f"bot {secret}", {"result": f"key {secret}", "api_key": "plain-looking", "model": "m1"})
    AuditLog(db).append("x", "alice", {})
    kept = {value for _, value in audit._FRAGMENTS} | set(audit._NAMES)
    assert {"m1", "alice"} <= kept
    assert not {f"key {secret}", "plain-looking", f"bot {secret}"} & kept
    assert redacted_json([1, {"token": "t"}]) == canonical_json(redact([1, {"token": "t"}]))  # type: ignore[arg-type]


def test_the_head_a_log_remembers_is_checked_before_it_is_used(db):
    """Two logs on one database, and an append rolled back: each append still chains to the
    real head (the remembered one is only used while the database still has it)."""
    first, second = AuditLog(db), AuditLog(db)
    first.append("a", None, {})
    second.append("b", None, {})  # first's remembered head is now stale
    first.append("c", None, {})
    with pytest.raises(RuntimeError):
        with db.transaction() as conn:
            first.append_in(conn, "rolled.back", None, {})
            raise RuntimeError("abort")
    first.append("d", None, {})
    second.append("e", None, {})
    verdict = first.verify()
    assert verdict.ok and verdict.entries == 5
    assert [e.kind for e in first.entries()] == ["a", "b", "c", "d", "e"]
