"""The IRC wire format, reply splitting, flood buckets and channel configuration (pure functions;
the behaviour on a real server is in test_channels_irc.py)."""

from __future__ import annotations

import pytest

from sovereign.channels.config import irc_configs
from sovereign.channels.flood import TokenBucket
from sovereign.channels.irc import _addressed
from sovereign.channels.irc_lines import format_line, hostmask_matches, parse_line, split_text, text_budget
from sovereign.errors import ConfigError


def test_parse_line_with_prefix_tags_and_trailing():
    line = parse_line(b"@time=x :alice!~a@127.0.0.1 PRIVMSG #room :hello: there :)\r\n")
    assert (line.prefix, line.command, line.params, line.nick) == (
        "alice!~a@127.0.0.1", "PRIVMSG", ["#room", "hello: there :)"], "alice")
    assert parse_line("PING :irc.test").params == ["irc.test"]
    assert parse_line(":srv 001 bot :Welcome bot!u@h").params == ["bot", "Welcome bot!u@h"]
    assert parse_line(b":n!u@h PRIVMSG #r :caf\xe9").last == "caf\xe9"  # not UTF-8: read as Latin-1


def test_format_line_cannot_inject_a_second_command():
    assert format_line("PRIVMSG", "#r", "hi\r\nQUIT :x") == b"PRIVMSG #r :hi  QUIT :x\r\n"
    assert format_line("NICK", "bot") == b"NICK bot\r\n"
    assert format_line("PRIVMSG", "#r", ":)") == b"PRIVMSG #r ::)\r\n"


def test_split_respects_the_byte_budget_and_utf8_boundaries():
    text = "é" * 700 + " " + "日本語のテキスト" * 40 + "\n\nsecond paragraph 🎉" * 3
    budget = text_budget("sovbot!~sovereign@127.0.0.1", "PRIVMSG", "#room")
    pieces = split_text(text, budget)
    for piece in pieces:
        encoded = piece.encode("utf-8")
        assert 0 < len(encoded) <= budget
        assert len(b":sovbot!~sovereign@127.0.0.1 PRIVMSG #room :" + encoded + b"\r\n") <= 512
    assert "".join(pieces).replace(" ", "") == text.replace("\n", "").replace(" ", "")
    assert max(len(p.encode()) for p in pieces) > budget - 4  # the budget is used, not guessed low


def test_split_prefers_spaces():
    pieces = split_text("word " * 100, 50)
    assert all(p == p.strip() and not p.endswith("wor") for p in pieces)
    assert " ".join(pieces).split() == ["word"] * 100


def test_hostmask_globs_are_case_insensitive():
    assert hostmask_matches(["alice!*@*"], "Alice!~a@host")
    assert hostmask_matches(["*!*@127.0.0.1"], "bob!~b@127.0.0.1")
    assert not hostmask_matches(["alice!*@*"], "mallory!~alice@host")
    assert not hostmask_matches([], "alice!a@h")


def test_addressed_mentions():
    assert _addressed("sovbot: what is 2+2?", "sovbot") == "what is 2+2?"
    assert _addressed("SovBot, hi", "sovbot") == "hi"
    assert _addressed("hey sovbot!", "sovbot") == "hey sovbot!"
    assert _addressed("sovbotty is not me", "sovbot") is None
    assert _addressed("nothing here", "sovbot") is None


def test_token_bucket_bursts_then_paces():
    bucket = TokenBucket(capacity=4, rate=2, stamp=0.0)
    assert [bucket.take(1, now=0.0) for _ in range(4)] == [0, 0, 0, 0]
    assert bucket.take(1, now=0.0) == pytest.approx(0.5)
    assert bucket.take(1, now=0.5) == pytest.approx(0.5)  # the debt is carried
    assert bucket.take(1, now=10.0) == 0


def test_channel_config_errors_name_the_field():
    good = {"name": "local", "host": "127.0.0.1", "channels": ["#room"]}
    assert irc_configs({"irc": [good]})[0].identity_name == "irc-local"
    with pytest.raises(ConfigError, match="not a channel name"):
        irc_configs({"irc": [{**good, "channels": ["room"]}]})
    with pytest.raises(ConfigError, match="sasl_username needs"):
        irc_configs({"irc": [{**good, "sasl_username": "bot"}]})
    with pytest.raises(ConfigError, match="port"):
        irc_configs({"irc": [{**good, "port": 70000}]})
    with pytest.raises(ConfigError, match="unknown channel kind"):
        irc_configs({"slack": []})
    with pytest.raises(ConfigError, match="distinct names"):
        irc_configs({"irc": [good, good]})
