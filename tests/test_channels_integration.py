"""The IRC channel end to end with the real embedded model: ``sovereign serve`` started with a
``[[channels.irc]]`` table joins a real ngircd on loopback and answers a person's mention."""

from __future__ import annotations

import pytest

from conftest import LiveServer, make_home
from servers.ngircd import NGIRCD, IrcClient, Ngircd

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(NGIRCD is None, reason="ngircd is not installed (make install installs it)")]


def test_serve_runs_the_channel_and_the_real_model_answers(tmp_path, models_dir):
    ircd = Ngircd(tmp_path / "ircd").start()
    config = f"""
[[agents]]
name = "ircchat"
model = "qwen2.5-coder-0.5b-instruct"
mode = "tools"
read_named_files = false
max_tokens = 40

[[channels.irc]]
name = "live"
host = "127.0.0.1"
port = {ircd.tls_port}
tls = true
tls_ca_file = "{ircd.cert}"
nick = "sovbot"
channels = ["#room"]
agent = "ircchat"
"""
    server = LiveServer(make_home(tmp_path / "home", models_dir, config), "sk-test-admin-key-0123456789")
    alice = None
    try:
        alice = IrcClient(ircd.port, "alice")
        alice.send("JOIN #room")
        server.start()
        try:
            alice.expect(lambda line: line.startswith(b":sovbot!") and b" JOIN " in line, timeout=120)
            alice.send("PRIVMSG #room :sovbot: What is the capital of France? Answer with one word.")
            answer = alice.expect(lambda line: line.startswith(b":sovbot!") and b"PRIVMSG #room :" in line, timeout=300)
        except AssertionError as exc:  # what the server and the IRC server said, to tell why
            seen = _tail(b"\n".join(alice.raw))
            served = _tail((server.home / "server.log").read_bytes())
            relayed = _tail((ircd.folder / "ngircd.log").read_bytes())
            raise AssertionError(f"{exc}\n--- alice saw:\n{seen}\n--- sovereign serve:\n{served}\n"
                                 f"--- ngircd:\n{relayed}") from None
        assert b"paris" in answer.lower()
    finally:
        if alice is not None:
            alice.close()
        server.stop()
        ircd.close()


def _tail(data: bytes, size: int = 3000) -> str:
    return data[-size:].decode("utf-8", "replace")
