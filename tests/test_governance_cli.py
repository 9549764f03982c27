"""``sovereign audit|keys|identities|caps`` (the sub-apps the main CLI mounts)."""

from __future__ import annotations

import json
import sqlite3

import pytest
import typer
from typer.testing import CliRunner

from sovereign.cli.governance import audit_app, caps_app, identities_app, keys_app


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.setenv("SOVEREIGN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "250")  # rich tables wrap at the test terminal width otherwise
    app = typer.Typer()
    for name, sub in (("audit", audit_app), ("keys", keys_app), ("identities", identities_app), ("caps", caps_app)):
        app.add_typer(sub, name=name)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args))

    return invoke, tmp_path / "home"


def test_governance_commands_end_to_end(cli):
    invoke, home = cli
    assert invoke("identities", "add", "alice", "--role", "operator").exit_code == 0
    orphan = invoke("identities", "add", "bot", "--kind", "agent")
    assert orphan.exit_code == 1 and "owner" in orphan.output
    assert invoke("identities", "add", "bot", "--kind", "agent", "--owner", "alice", "--public").exit_code == 0
    assert invoke("identities", "expose", "bot", "tool", "calculator").exit_code == 0
    listed = invoke("identities", "list")
    assert "alice" in listed.output and "bot" in listed.output

    made = invoke("keys", "create", "--identity", "bot", "--models", "qwen*", "--max-spend", "5", "--expires", "30d")
    assert made.exit_code == 0, made.output
    secret = next(word for word in made.output.split() if word.startswith("sk-sov-"))
    key_id = next(word for word in made.output.split() if word.startswith("key_"))
    keys = invoke("keys", "list")
    assert key_id[:12] in keys.output and secret not in keys.output
    assert invoke("keys", "revoke", key_id).exit_code == 0
    assert invoke("keys", "revoke", key_id).exit_code == 1

    assert invoke("caps", "set", "agent", "bot", "--usd", "2.5", "--tokens", "1000").exit_code == 0
    assert invoke("caps", "set", "global", "--usd", "10").exit_code == 0
    caps = invoke("caps", "list")
    assert caps.exit_code == 0 and "bot" in caps.output and "2.5" in caps.output

    verified = invoke("audit", "verify")
    assert verified.exit_code == 0 and "chain intact" in verified.output
    out = home / "audit.jsonl"
    assert invoke("audit", "export", str(out)).exit_code == 0
    kinds = [json.loads(line)["kind"] for line in out.read_text().splitlines()]
    assert {"identity.created", "key.created", "key.revoked", "cap.set", "identity.changed"} <= set(kinds)
    assert secret not in out.read_text()

    conn = sqlite3.connect(home / "sovereign.db")
    conn.execute("DROP TRIGGER audit_log_no_delete")
    conn.execute("DELETE FROM audit_log WHERE seq = 2")
    conn.commit()
    conn.close()
    tampered = invoke("audit", "verify")
    assert tampered.exit_code == 2 and "#2" in tampered.output
