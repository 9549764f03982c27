"""SASL PLAIN of the IRC channel, including re-authentication on every reconnect.

ngircd (the real server of test_channels_irc.py) has no SASL, so the exchange is checked against
a scripted IRCv3 peer here: a loopback TCP server that answers ``CAP LS 302`` / ``CAP REQ`` /
``AUTHENTICATE`` as SASL-capable servers do (and holds registration until ``CAP END``). It drops
the first session after the JOIN, so the second shows the credentials sent again."""

from __future__ import annotations

import asyncio
import base64

import pytest

from sovereign.channels.config import IrcConfig
from sovereign.channels.irc import IrcChannel, SaslError


async def _peer_run(password_ok: str, config_password: str, sessions_to_serve: int = 2):
    seen: list[list[str]] = []

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        lines: list[str] = []
        seen.append(lines)
        capped = False

        async def send(text: str) -> None:
            writer.write(text.encode() + b"\r\n")
            await writer.drain()

        while raw := await reader.readline():
            line = raw.decode().strip()
            lines.append(line)
            if line == "CAP LS 302":
                capped = True
                await send(":srv CAP * LS * :multi-prefix")
                await send(":srv CAP * LS :sasl=PLAIN,EXTERNAL")
            elif line == "CAP REQ sasl":
                await send(":srv CAP saslbot ACK :sasl")
            elif line == "AUTHENTICATE PLAIN":
                await send("AUTHENTICATE +")
            elif line.startswith("AUTHENTICATE "):
                good = base64.b64decode(line.split()[1]) == f"saslbot\0saslbot\0{password_ok}".encode()
                await send(":srv 903 saslbot :SASL authentication successful" if good else ":srv 904 saslbot :SASL failed")
            elif (line == "CAP END") or (line.startswith("USER") and not capped):
                await send(":srv 001 saslbot :Welcome saslbot!sasl@host")
            elif line.startswith("JOIN"):
                await send(":saslbot!sasl@host JOIN :#room")
                if len(seen) == 1:
                    writer.close()  # the first session is dropped: the client must come back
                    return
        writer.close()

    server = await asyncio.start_server(peer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    channel = IrcChannel(IrcConfig(name="sasl", host="127.0.0.1", port=port, tls=False, nick="saslbot",
                                   channels=["#room"], sasl_username="saslbot", sasl_password=config_password))
    task = asyncio.ensure_future(channel.run(lambda message: asyncio.sleep(0)))
    try:
        for _ in range(500):
            if task.done() or (channel.stats.registrations >= sessions_to_serve and "#room" in channel.joined):
                break
            await asyncio.sleep(0.01)
    finally:
        if not task.done():
            task.cancel()
        server.close()
    return channel, task, seen


def test_sasl_plain_on_every_connection():
    channel, task, seen = asyncio.run(_peer_run("s3cret", "s3cret"))
    assert channel.stats.registrations == 2 and len(seen) >= 2
    token = base64.b64encode(b"saslbot\0saslbot\0s3cret").decode()
    for lines in seen[:2]:
        order = [line for line in lines if line.split()[0] in ("CAP", "AUTHENTICATE", "JOIN")]
        assert order == ["CAP LS 302", "CAP REQ sasl", "AUTHENTICATE PLAIN", f"AUTHENTICATE {token}", "CAP END",
                         "JOIN #room"]


def test_a_refused_password_stops_the_channel():
    channel, task, seen = asyncio.run(_peer_run("right", "wrong", sessions_to_serve=1))
    assert task.done() and isinstance(task.exception(), SaslError)
    assert "SASL authentication failed" in str(task.exception())
    assert len(seen) == 1  # no reconnect loop with bad credentials
