"""The IRC channel against a real IRC server (Debian's ngircd on loopback, TLS listener with a
self-signed certificate) and a real second client (a person in the channel). The agent's model
is a deterministic double (``sovereign.testing.FunctionModel``); the real-model test is in
test_channels_integration.py."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from conftest import open_api_services
from servers.ngircd import NGIRCD, IrcClient, Ngircd
from sovereign.channels.bridge import ChannelAgent
from sovereign.channels.config import IrcConfig
from sovereign.channels.irc import IrcChannel, SaslError
from sovereign.kernel.registry import ModelSpec, PriceSheet
from sovereign.testing import FunctionModel, serve_every_tier, text_response, tool_response

pytestmark = pytest.mark.skipif(NGIRCD is None, reason="ngircd is not installed (make install installs it)")


@pytest.fixture
def ircd(tmp_path_factory):
    """A server per test: a stopped bot whose connection the server has not dropped yet would
    otherwise keep the nick, and the next test's bot would become "sovbot_"."""
    server = Ngircd(tmp_path_factory.mktemp("ngircd")).start()
    yield server
    server.close()


class Bot:
    """The channel and its agent, on an event loop of their own (the test thread stays blocking)."""

    def __init__(self, services, config: IrcConfig, workspace=None) -> None:
        self.loop = asyncio.new_event_loop()
        self.channel = IrcChannel(config, services.egress)
        self.agent = ChannelAgent(services, self.channel, config, workspace=workspace)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.task = self.loop.create_task(self.channel.run(self.agent.handle))
        try:
            self.loop.run_until_complete(self.task)
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            self.error = exc

    def wait_joined(self, channel: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while channel.lower() not in self.channel.joined:
            assert self.error is None, self.error
            assert time.monotonic() < deadline, "the bot did not join"
            time.sleep(0.02)

    def stop(self) -> None:
        if not self.task.done():
            self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(timeout=10)


@pytest.fixture
def env(tmp_path, ircd):
    """Services with a FunctionModel double; ``make(**config)`` starts a bot; people are clients."""
    services = open_api_services(tmp_path / "home")
    reply = {"fn": lambda request: text_response("ok")}
    model = FunctionModel(lambda request: reply["fn"](request), name="double")
    serve_every_tier(services, model)
    bots, people = [], []

    def make(**overrides) -> Bot:
        workspace = overrides.pop("workspace", None)
        config = IrcConfig(**{"name": "test", "host": "127.0.0.1", "port": ircd.tls_port, "tls": True,
                              "tls_ca_file": str(ircd.cert), "nick": "sovbot", "channels": ["#room"],
                              "owner_hostmasks": ["alice!*@127.0.0.1"], "owner_nicks": ["alice"], **overrides})
        bot = Bot(services, config, workspace=workspace)
        bots.append(bot)
        for channel in config.channels:
            bot.wait_joined(channel)
        return bot

    def person(nick: str, join: str | None = "#room") -> IrcClient:
        client = IrcClient(ircd.port, nick)
        people.append(client)
        if join:
            client.send(f"JOIN {join}")
            client.expect(lambda line: b" JOIN " in line and line.startswith(f":{nick}!".encode()))
        return client

    yield services, model, reply, make, person
    for bot in bots:
        bot.stop()
    for client in people:
        client.close()
    services.close()


def _from_bot(target: str):
    return lambda line: line.startswith(b":sovbot!") and f" PRIVMSG {target} :".encode() in line


def _text(line: bytes) -> str:
    return line.split(b" :", 1)[1].decode("utf-8")


def test_mention_and_direct_message_get_answers_on_the_governed_path(env):
    services, model, reply, make, person = env
    reply["fn"] = lambda request: text_response("echo: " + request.messages[-1].content)
    bot = make()
    alice = person("alice")
    alice.send("PRIVMSG #room :just chatting, no mention")
    alice.send("PRIVMSG #room :sovbot: what is up?")
    assert _text(alice.expect(_from_bot("#room"))) == "echo: what is up?"
    alice.send("PRIVMSG sovbot :hello in private")
    assert _text(alice.expect(_from_bot("alice"))) == "echo: hello in private"
    assert [r.messages[-1].content for r in model.requests] == ["what is up?", "hello in private"]
    identity = services.keys.identity("irc-test")
    assert identity["kind"] == "agent" and identity["public"] == 1
    rows = services.db.query("SELECT principal FROM usage_ledger")
    assert [r["principal"] for r in rows] == [identity["id"], identity["id"]]
    caps = [c for c in services.spend.caps() if c.scope == "agent" and c.subject == identity["id"]]
    assert caps and caps[0].period == "day" and caps[0].max_usd == 2.0
    assert bot.channel.prefix == "sovbot!~sovereign@127.0.0.1"  # learnt from its own JOIN


def test_long_reply_is_split_within_512_bytes_on_utf8_boundaries(env):
    services, model, reply, make, person = env
    long_text = ("Ünïcödé " * 60 + "日本語の文章です。" * 30 + "🎉" * 150 + " end").strip()
    reply["fn"] = lambda request: text_response(long_text)
    make(max_reply_lines=50)
    alice = person("alice")
    alice.send("PRIVMSG #room :sovbot: tell me everything")
    lines = [alice.expect(_from_bot("#room"))]
    while not _text(lines[-1]).endswith("end"):
        lines.append(alice.expect(_from_bot("#room")))
    assert len(lines) >= 4
    for line in lines:
        assert len(line) + 2 <= 512  # as relayed, with the real sender prefix
        line.decode("utf-8")  # every line decodes on its own: no character was cut
    assert max(len(line) + 2 for line in lines) >= 500  # the budget is the real one, not a guess
    assert "".join(_text(line) for line in lines).replace(" ", "") == long_text.replace(" ", "")


def test_hostmask_allowlist_refuses_others(env):
    services, model, reply, make, person = env
    reply["fn"] = lambda request: text_response("answer for " + request.messages[-1].content)
    make(allow=["alice!*@*"])
    mallory, alice = person("mallory"), person("alice")
    mallory.send("PRIVMSG #room :sovbot: mallory asks")
    mallory.send("PRIVMSG sovbot :mallory in private")
    alice.send("PRIVMSG #room :sovbot: alice asks")
    assert _text(alice.expect(_from_bot("#room"))) == "answer for alice asks"
    assert [r.messages[-1].content for r in model.requests] == ["alice asks"]
    assert not [line for line in mallory.raw if line.startswith(b":sovbot!") and b"PRIVMSG mallory" in line]


def test_tool_rules_per_sender_and_visibility(env, tmp_path):
    services, model, reply, make, person = env
    services.settings.config_path.write_text(
        '[[agents]]\nname = "helper"\nmode = "tools"\ntools = ["calculator", "list_files"]\n')
    reply["fn"] = lambda request: text_response("tools: " + (",".join(sorted(t.name for t in request.tools)) or "none"))
    make(agent="helper", tool_rules=[{"hostmask": "alice!*@*", "tools": ["calculator", "list_files"]}])
    alice, bob = person("alice"), person("bob")
    alice.send("PRIVMSG #room :sovbot: which tools?")
    assert _text(alice.expect(_from_bot("#room"))) == "tools: none"  # public: nothing exposed yet
    services.visibility.expose("irc-test", "tool", "calculator")
    alice.send("PRIVMSG #room :sovbot: which tools now?")
    assert _text(alice.expect(_from_bot("#room"))) == "tools: calculator"  # list_files is not exposed
    bob.send("PRIVMSG #room :sovbot: and mine?")
    assert _text(bob.expect(_from_bot("#room"))) == "tools: none"  # no rule for bob: default_tools (none)


def test_owner_approves_in_a_direct_message(env, tmp_path):
    services, model, reply, make, person = env
    workspace = tmp_path / "ws"
    workspace.mkdir()
    services.settings.config_path.write_text('[[agents]]\nname = "writer"\nmode = "tools"\ntools = ["write_file"]\n')
    script = iter([tool_response(("write_file", '{"path": "note.txt", "content": "from irc"}')),
                   text_response("written")])
    reply["fn"] = lambda request: next(script)
    make(agent="writer", public=False, tool_rules=[{"hostmask": "alice!*@*", "tools": ["write_file"]}],
         workspace=workspace)
    alice, mallory = person("alice"), person("mallory")
    alice.send("PRIVMSG #room :sovbot: write a note")
    ask = _text(alice.expect(_from_bot("alice")))
    approval_id = ask.split()[1].rstrip(":")
    assert approval_id.startswith("apr_") and "write_file" in ask
    mallory.send(f"PRIVMSG sovbot :!approve {approval_id}")
    assert "only this agent's owner" in _text(mallory.expect(_from_bot("mallory")))
    alice.send("PRIVMSG sovbot :!approve apr_doesnotexist")
    assert "no approval apr_doesnotexist" in _text(alice.expect(_from_bot("alice")))
    alice.send(f"PRIVMSG sovbot :!approve {approval_id}")
    assert _text(alice.expect(_from_bot("alice"))) == f"approved {approval_id} (write_file)"
    assert _text(alice.expect(lambda line: _from_bot("#room")(line) and b"written" in line)) == "written"
    assert (workspace / "note.txt").read_text() == "from irc"
    # an approval of another owner's run cannot be decided from here
    from sovereign.tools.approvals import ApprovalQueue

    services.keys.create_identity("carol", role="operator")
    foreign = ApprovalQueue(services.db).request("run_x", "write_file", {}, owner=services.keys.identity("carol")["id"])
    alice.send(f"PRIVMSG sovbot :!deny {foreign.id}")
    assert f"no approval {foreign.id}" in _text(alice.expect(_from_bot("alice")))
    assert ApprovalQueue(services.db).get(foreign.id).status == "pending"


def test_the_daily_cap_stops_a_public_agent(env):
    services, model, reply, make, person = env
    priced = ModelSpec(name="priced", backend="in_process", prices=PriceSheet(input=10.0, output=20.0))
    services.register(priced, FunctionModel(lambda request: text_response("never"), name="priced"))
    services.settings.config_path.write_text('[[agents]]\nname = "spender"\nmodel = "priced"\nmode = "tools"\n')
    make(agent="spender", daily_cap_usd=0.000001)
    alice = person("alice")
    alice.send("PRIVMSG #room :sovbot: spend money")
    answer = _text(alice.expect(_from_bot("#room")))
    assert "cap" in answer.lower(), answer
    assert services.db.query_one("SELECT COUNT(*) AS n FROM usage_ledger WHERE model = 'priced'")["n"] == 0


def test_a_burst_is_paced_and_nothing_is_lost(env):
    """30 lines at the default rates: all arrive in order, no kick, and the server keeps up with
    us (a PING mid-burst comes back at once; unpaced, it would wait behind the unread lines)."""
    services, model, reply, make, person = env
    text = "\n".join(f"line {i:03d} of the burst" for i in range(30))
    reply["fn"] = lambda request: text_response(text)
    bot = make(max_reply_lines=1000)
    alice = person("alice")
    alice.send("PRIVMSG #room :sovbot: burst")
    got = [_text(alice.expect(_from_bot("#room"))) for _ in range(8)]
    assert bot.channel.pending > 10  # still draining: the bucket holds the rest back
    lag = asyncio.run_coroutine_threadsafe(bot.channel.lag(), bot.loop).result(timeout=60)
    assert lag < 1.5, lag
    got += [_text(alice.expect(_from_bot("#room"))) for _ in range(22)]
    assert got == text.split("\n")
    assert bot.channel.stats.kicks == 0 and bot.channel.stats.connects == 1


def test_reconnects_within_5_seconds_of_a_server_restart(tmp_path):
    server = Ngircd(tmp_path / "ircd").start()
    services = open_api_services(tmp_path / "home")
    serve_every_tier(services, FunctionModel(lambda request: text_response("back"), name="double"))
    config = IrcConfig(name="restart", host="127.0.0.1", port=server.port, tls=False, nick="sovbot", channels=["#room"])
    bot = Bot(services, config)
    try:
        bot.wait_joined("#room")
        for outage in (0.0, 8.0):  # a quick restart, and an outage long enough to grow the back-off
            server.stop()
            time.sleep(outage)
            restarted = server.restart()
            deadline = time.monotonic() + 20
            while (bot.channel.stats.last_joined or 0) < restarted and time.monotonic() < deadline:
                time.sleep(0.02)
            took = bot.channel.stats.last_joined - restarted
            assert 0 < took < 5, (outage, took)
        assert bot.channel.stats.registrations == 3
        alice = IrcClient(server.port, "alice")
        alice.send("JOIN #room")
        alice.send("PRIVMSG #room :sovbot: are you back?")
        assert _text(alice.expect(_from_bot("#room"))) == "back"
        alice.close()
    finally:
        bot.stop()
        server.close()
        services.close()


def test_sasl_configured_but_not_offered_is_refused(env, ircd, monkeypatch):
    services, model, reply, make, person = env
    monkeypatch.setenv("TEST_SASL_PASSWORD", "secret")
    config = IrcConfig(name="sasl", host="127.0.0.1", port=ircd.port, tls=False, nick="saslbot",
                       sasl_username="saslbot", sasl_password_env="TEST_SASL_PASSWORD")
    bot = Bot(services, config)
    bot.thread.join(timeout=15)
    assert isinstance(bot.error, SaslError) and "does not offer it" in str(bot.error)


def test_cli_lists_and_runs_the_configured_channels(tmp_path, ircd):
    import os
    import subprocess
    import sys

    from typer.testing import CliRunner

    from sovereign.cli.main import app

    home = tmp_path / "cli-home"
    home.mkdir()
    (home / "config.toml").write_text(f'[[channels.irc]]\nname = "cli"\nhost = "127.0.0.1"\nport = {ircd.port}\n'
                                      f'tls = false\nnick = "clibot"\nchannels = ["#clitest"]\n')
    env = {**os.environ, "SOVEREIGN_HOME": str(home)}
    listed = CliRunner().invoke(app, ["channels", "list"], env=env)
    assert listed.exit_code == 0 and "cli" in listed.output and "#clitest" in listed.output
    watcher = IrcClient(ircd.port, "watcher")
    watcher.send("JOIN #clitest")
    process = subprocess.Popen([sys.executable, "-m", "sovereign.cli.main", "channels", "run"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        watcher.expect(lambda line: line.startswith(b":clibot!") and b" JOIN " in line, timeout=30)
    finally:
        process.terminate()
        process.wait(timeout=20)
        watcher.close()
    (home / "config.toml").write_text('[[channels.irc]]\nname = "bad"\nhost = "h"\nchannels = ["nohash"]\n')
    broken = CliRunner().invoke(app, ["channels", "list"], env=env)
    assert broken.exit_code == 1 and "channels: 'nohash' is not a channel name" in " ".join(broken.output.split())


def test_a_remote_server_needs_egress(env):
    services, model, reply, make, person = env
    config = IrcConfig(name="remote", host="irc.example.org", port=6697, nick="sovbot", channels=["#room"])
    bot = Bot(services, config)
    bot.thread.join(timeout=15)
    assert "offline" in str(bot.error) and "irc.example.org" in str(bot.error)
    decisions = [e.data for e in services.audit.entries() if e.kind.startswith("egress")]
    assert decisions and decisions[-1]["host"] == "irc.example.org" and decisions[-1]["allowed"] is False
