"""Audit anchors: the chain head checkpointed outside the database, signed with a key the
database does not hold. A consistent rewrite of the whole chain, a truncation below an anchor
and a forged or removed anchor line are all detected; normal operation verifies."""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sovereign.governance.audit import GENESIS, AuditLog, canonical_json, entry_hash
from sovereign.governance.audit_anchor import Anchor, AuditAnchor, key_id
from sovereign.store import Database


@pytest.fixture
def paths(tmp_path) -> tuple[Path, Path, Path]:
    return tmp_path / "audit.db", tmp_path / "keys" / "audit-anchor.key", tmp_path / "audit-anchors.jsonl"


def open_log(paths, every: int = 5) -> AuditLog:
    db_path, key, anchors = paths
    return AuditLog(Database(db_path), anchor=AuditAnchor(key, anchors, every=every))


@pytest.fixture
def audit(paths):
    log = open_log(paths)
    for i in range(1, 24):
        log.append("model.call", f"user{i % 3}", {"n": i, "cost_usd": 0.001 * i})
    yield log
    log.db.close()


def anchor_lines(paths) -> list[dict]:
    return [json.loads(line) for line in paths[2].read_text().splitlines()]


def raw(db: Database) -> sqlite3.Connection:
    """What an attacker with write access to the database would use: the triggers dropped."""
    conn = sqlite3.connect(db.path, isolation_level=None)
    conn.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
    conn.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
    return conn


def rewrite_chain(db: Database, edit_seq: int) -> None:
    """Edit one entry and recompute every hash after it and the head: the chain is consistent."""
    conn = raw(db)
    rows = conn.execute("SELECT seq, ts, kind, actor, data FROM audit_log ORDER BY seq").fetchall()
    prev = GENESIS
    for seq, ts, kind, actor, data in rows:
        body = json.loads(data)
        if seq == edit_seq:
            body["rewritten"] = True
        digest = entry_hash(prev, seq, ts, kind, actor, body)
        conn.execute("UPDATE audit_log SET data = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                     (canonical_json(body), prev, digest, seq))
        prev = digest
    conn.execute("UPDATE audit_head SET seq = ?, hash = ?", (len(rows), prev))
    conn.close()


def test_anchors_are_written_every_n_entries_and_verify(audit, paths):
    lines = anchor_lines(paths)
    assert [line["seq"] for line in lines] == [0, 5, 10, 15, 20]  # 0: the empty chain, at creation
    assert all(line["count"] == line["seq"] for line in lines)
    heads = {e.seq: e.hash for e in audit.entries()}
    assert all(line["head"] == heads[line["seq"]] for line in lines[1:]) and lines[0]["head"] == GENESIS
    verdict = audit.verify()
    assert verdict.ok, verdict.reason
    assert verdict.anchors == 5 and verdict.anchored_seq == 23  # verification anchors the head
    assert [line["seq"] for line in anchor_lines(paths)] == [0, 5, 10, 15, 20, 23]
    again = audit.verify()
    assert again.ok and again.anchors == 6
    assert len(anchor_lines(paths)) == 6  # an unchanged head is not anchored twice


def test_key_is_private_and_not_in_the_database(audit, paths):
    db_path, key, anchors = paths
    assert key.stat().st_mode & 0o777 == 0o600 and anchors.stat().st_mode & 0o777 == 0o600
    pem = key.read_bytes()
    audit.db.execute("PRAGMA wal_checkpoint(FULL)")
    stored = b"".join(p.read_bytes() for p in db_path.parent.glob("audit.db*"))
    body = b"".join(pem.splitlines()[1:-1])
    assert body not in stored and b"PRIVATE KEY" not in stored


def test_consistent_rewrite_of_the_whole_chain_is_detected(audit, paths):
    rewrite_chain(audit.db, edit_seq=7)
    bare = AuditLog(audit.db)  # the chain alone cannot tell
    assert bare.verify().ok
    verdict = audit.verify()
    assert not verdict.ok
    assert verdict.first_bad_seq == 10 and "rewritten" in verdict.reason
    assert "entries 6..10" in verdict.reason and "anchor line 3" in verdict.reason
    assert verdict.anchors == 2 and verdict.anchored_seq == 5
    assert [line["seq"] for line in anchor_lines(paths)] == [0, 5, 10, 15, 20]  # a tampered head is not anchored


def test_rewritten_chain_is_not_anchored_by_later_appends(audit, paths):
    rewrite_chain(audit.db, edit_seq=3)
    for i in range(12):
        audit.append("model.call", "x", {"i": i})  # anchors are due, but the chain no longer extends entry 20
    audit.checkpoint()
    assert [line["seq"] for line in anchor_lines(paths)] == [0, 5, 10, 15, 20]
    verdict = audit.verify()
    assert not verdict.ok and verdict.first_bad_seq == 5 and "entries 1..5" in verdict.reason


def test_truncation_below_an_anchor_is_detected(audit):
    conn = raw(audit.db)
    conn.execute("DELETE FROM audit_log WHERE seq > 12")
    head = conn.execute("SELECT hash FROM audit_log WHERE seq = 12").fetchone()[0]
    conn.execute("UPDATE audit_head SET seq = 12, hash = ?", (head,))
    conn.close()
    assert AuditLog(audit.db).verify().ok  # consistent as far as the database goes
    verdict = audit.verify()
    assert not verdict.ok and verdict.first_bad_seq == 13
    assert "truncated" in verdict.reason and "entry 15" in verdict.reason


def test_forged_anchor_line_is_detected(audit, paths):
    """The attacker rewrites the chain and adds an anchor for it, without the key."""
    rewrite_chain(audit.db, edit_seq=22)
    lines = paths[2].read_text().splitlines()
    forger = Ed25519PrivateKey.generate()
    last = Anchor.parse(lines[-1])
    head = audit.db.query_one("SELECT seq, hash FROM audit_head")
    import hashlib

    fake = Anchor(seq=head["seq"], head=head["hash"], count=head["seq"], ts=last.ts, key=last.key,
                  prev=hashlib.sha256(lines[-1].encode()).hexdigest())
    body = json.dumps(fake.body(), sort_keys=True, separators=(",", ":")).encode()
    forged = Anchor(**{**fake.body(), "sig": forger.sign(body).hex()})
    with paths[2].open("a") as out:
        out.write(forged.line() + "\n")
    verdict = audit.verify()
    assert not verdict.ok and "anchor line 6" in verdict.reason and "bad signature" in verdict.reason


def test_edited_anchor_line_is_detected(audit, paths):
    lines = paths[2].read_text().splitlines()
    edited = json.loads(lines[1])
    edited["head"] = "f" * 64
    lines[1] = json.dumps(edited, sort_keys=True, separators=(",", ":"))
    paths[2].write_text("\n".join(lines) + "\n")
    verdict = audit.verify()
    assert not verdict.ok and "anchor line 2" in verdict.reason and "bad signature" in verdict.reason


def test_removed_anchor_lines_are_detected(audit, paths):
    lines = paths[2].read_text().splitlines()
    paths[2].write_text("\n".join(lines[:1] + lines[2:]) + "\n")
    verdict = audit.verify()
    assert not verdict.ok and "removed or reordered" in verdict.reason

    paths[2].write_text("")  # even a new installation has the line anchoring the empty chain
    assert "empty" in audit.verify().reason
    paths[2].unlink()
    verdict = audit.verify()
    assert not verdict.ok and "missing" in verdict.reason


def test_anchors_signed_by_another_key_are_refused(audit, paths):
    paths[1].unlink()
    db_path, key, anchors = paths
    # A fresh process finds the anchors but no key: it cannot vouch for anything.
    reopened = AuditLog(Database(db_path), anchor=AuditAnchor(key, anchors, every=5))
    verdict = reopened.verify()
    assert not verdict.ok and "key" in verdict.reason and "missing" in verdict.reason
    assert not key.exists()  # never silently replaced
    reopened.db.close()


def test_anchor_key_readable_by_others_is_refused(paths):
    log = open_log(paths)
    log.db.close()
    os.chmod(paths[1], 0o644)
    from sovereign.errors import ConfigError

    with pytest.raises(ConfigError, match="chmod 600"):
        open_log(paths)


def test_rolled_back_entries_are_never_anchored(paths):
    log = open_log(paths, every=2)
    log.append("a", None, {})
    with pytest.raises(RuntimeError):
        with log.db.transaction() as conn:
            log.append_in(conn, "b", None, {})  # due, but the transaction fails
            raise RuntimeError("boom")
    assert [line["seq"] for line in anchor_lines(paths)] == [0]
    with log.db.transaction() as conn:
        log.append_in(conn, "b", None, {})
        assert [line["seq"] for line in anchor_lines(paths)] == [0]  # not before the commit
    assert [line["seq"] for line in anchor_lines(paths)] == [0, 2]
    assert log.verify().ok
    log.db.close()


def _writer(db_path: str, key: str, anchors: str, n: int) -> None:
    log = AuditLog(Database(db_path), anchor=AuditAnchor(Path(key), Path(anchors), every=3))
    for i in range(30):
        log.append("tool.call", f"p{n}", {"i": i})
    log.checkpoint()
    log.db.close()


def test_processes_anchor_the_same_file_safely(paths):
    db_path, key, anchors = paths
    open_log(paths).db.close()  # one process creates the key and the file
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_writer, args=(str(db_path), str(key), str(anchors), n)) for n in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    log = open_log(paths)
    verdict = log.verify()
    assert verdict.ok and verdict.entries == 90 and verdict.anchors >= 10, verdict
    seqs = [line["seq"] for line in anchor_lines(paths)]
    assert seqs == sorted(seqs) and seqs[-1] == 90
    assert {line["key"] for line in anchor_lines(paths)} == {key_id(log.anchor._key.public_key())}
    log.db.close()


# --- through the interfaces ---------------------------------------------------------------


def _anchored_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text("[audit]\nanchor_every = 2\n")
    monkeypatch.setenv("SOVEREIGN_HOME", str(home))
    monkeypatch.delenv("SOVEREIGN_API_KEY", raising=False)
    monkeypatch.setenv("COLUMNS", "250")
    return home


def test_cli_audit_verify_and_anchor(tmp_path, monkeypatch):
    import typer
    from typer.testing import CliRunner

    from sovereign.cli.governance import audit_app, identities_app

    home = _anchored_home(tmp_path, monkeypatch)
    app = typer.Typer()
    app.add_typer(audit_app, name="audit")
    app.add_typer(identities_app, name="identities")
    runner = CliRunner()
    for name in ("alice", "bob", "carol", "dave"):
        assert runner.invoke(app, ["identities", "add", name]).exit_code == 0
    verified = runner.invoke(app, ["audit", "verify"])
    assert verified.exit_code == 0, verified.output
    assert "chain intact" in verified.output and "anchor(s)" in verified.output
    anchored = runner.invoke(app, ["audit", "anchor", "--show-key"])
    assert anchored.exit_code == 0 and "BEGIN PUBLIC KEY" in anchored.output and '"sig":' in anchored.output
    assert "PRIVATE" not in anchored.output

    rewrite_chain(Database(home / "sovereign.db"), edit_seq=1)
    tampered = runner.invoke(app, ["audit", "verify"])
    assert tampered.exit_code == 2 and "TAMPERED" in tampered.output and "rewritten" in tampered.output
    refused = runner.invoke(app, ["audit", "anchor"])
    assert refused.exit_code == 2 and "not anchored" in refused.output


def test_api_audit_verify_checks_anchors(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from sovereign.config import load_settings
    from sovereign.server.app import create_app
    from sovereign.services import Services

    home = _anchored_home(tmp_path, monkeypatch)
    services = Services.open(load_settings(home))
    admin = services.keys.ensure_admin()
    secret = services.keys.create_key(admin)[1]
    for name in ("alice", "bob", "carol"):
        services.keys.create_identity(name)
    headers = {"Authorization": f"Bearer {secret}"}
    with TestClient(create_app(services, preload=False)) as client:
        body = client.get("/v1/audit/verify", headers=headers).json()
        assert body["ok"] is True and body["anchors"] >= 2 and body["anchored_seq"] == body["entries"]
        rewrite_chain(services.db, edit_seq=2)
        body = client.get("/v1/audit/verify", headers=headers).json()
    assert body["ok"] is False and "rewritten" in body["reason"] and body["first_bad_seq"] is not None
    services.close()


def test_services_anchor_the_head_at_exit(tmp_path, monkeypatch):
    from sovereign.config import load_settings
    from sovereign.services import Services

    home = _anchored_home(tmp_path, monkeypatch)
    (home / "config.toml").write_text("[audit]\nanchor_every = 0\n")  # only at exit (and verify)
    services = Services.open(load_settings(home))
    services.keys.create_identity("alice")
    seq = services.audit.entries()[-1].seq
    assert [json.loads(x)["seq"] for x in (home / "audit-anchors.jsonl").read_text().splitlines()] == [0]
    services.close()
    assert [json.loads(x)["seq"] for x in (home / "audit-anchors.jsonl").read_text().splitlines()] == [0, seq]


def test_server_anchors_on_a_timer(tmp_path, monkeypatch):
    import time

    from fastapi.testclient import TestClient

    from sovereign.config import load_settings
    from sovereign.server.app import create_app
    from sovereign.services import Services

    home = _anchored_home(tmp_path, monkeypatch)
    (home / "config.toml").write_text("[audit]\nanchor_every = 0\nanchor_interval_s = 0.05\n")
    services = Services.open(load_settings(home))
    anchors = home / "audit-anchors.jsonl"
    with TestClient(create_app(services, preload=False)):
        seq = services.audit.append("policy.decision", "test", {"n": 1})
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and json.loads(anchors.read_text().splitlines()[-1])["seq"] != seq:
            time.sleep(0.02)
        assert json.loads(anchors.read_text().splitlines()[-1])["seq"] == seq
    services.close()


@pytest.mark.integration
def test_real_server_run_anchored_at_exit_then_rewrite_detected(tmp_path, models_dir):
    """A real ``sovereign serve`` answers with the embedded model, anchors its head when it
    stops; ``sovereign audit verify`` (a real CLI process) agrees, then names a rewrite."""
    import subprocess
    import sys

    import httpx

    from conftest import LiveServer, make_home

    home = make_home(tmp_path / "home", models_dir)
    server = LiveServer(home, "sk-test-admin-key-0123456789").start()
    try:
        reply = httpx.post(f"{server.base_url}/chat/completions", timeout=120,
                           headers={"Authorization": f"Bearer {server.api_key}"},
                           json={"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8})
        assert reply.status_code == 200, reply.text
    finally:
        server.stop()
    lines = [json.loads(x) for x in (home / "audit-anchors.jsonl").read_text().splitlines()]
    db = Database(home / "sovereign.db")
    head = db.query_one("SELECT seq, hash FROM audit_head")
    assert lines[-1]["seq"] == head["seq"] and lines[-1]["head"] == head["hash"]  # anchored at exit

    def verify() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "sovereign.cli.main", "audit", "verify"], capture_output=True,
                              text=True, env={**os.environ, "SOVEREIGN_HOME": str(home)}, timeout=120)

    ok = verify()
    assert ok.returncode == 0 and "chain intact" in ok.stdout, ok.stdout + ok.stderr
    kinds = [row["kind"] for row in db.query("SELECT kind FROM audit_log")]
    assert "model.call" in kinds
    rewrite_chain(db, edit_seq=kinds.index("model.call") + 1)
    bad = verify()
    assert bad.returncode == 2 and "rewritten" in bad.stderr, bad.stdout + bad.stderr
    db.close()


def test_entries_this_log_chained_itself_are_anchored_without_reading_them_back(paths, monkeypatch):
    log = open_log(paths, every=5)
    other = AuditLog(log.db)  # another writer of the same database (a second process, say)
    reread: list[int] = []
    real = AuditAnchor._disagreement
    monkeypatch.setattr(AuditAnchor, "_disagreement",
                        lambda self, audit, last, seq: reread.append(seq) or real(self, audit, last, seq))
    for i in range(12):
        log.append("model.call", "u", {"i": i})
    assert [line["seq"] for line in anchor_lines(paths)] == [0, 5, 10]
    assert reread == [5]  # once, to start vouching; entries 6..10 were this log's own
    other.append("tool.call", "v", {"i": 99})  # entry 13, chained by someone else
    for i in range(3):
        log.append("model.call", "u", {"i": i})  # entry 14 reads the head back: no longer vouched
    assert reread == [5, 15] and [line["seq"] for line in anchor_lines(paths)] == [0, 5, 10, 15]
    # a row edited behind the log's back (head untouched) is anchored over, and still found
    conn = raw(log.db)
    conn.execute("UPDATE audit_log SET data = ? WHERE seq = 16", (canonical_json({"i": 1000}),))
    conn.close()
    for i in range(5):
        log.append("model.call", "u", {"i": i})
    assert [line["seq"] for line in anchor_lines(paths)][-1] == 20 and reread == [5, 15]
    verdict = log.verify()
    assert not verdict.ok and verdict.first_bad_seq == 16
    log.db.close()
