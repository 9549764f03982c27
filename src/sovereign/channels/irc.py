"""``IrcChannel``: an asyncio IRC client implementing ``Channel``.

Our own small client rather than a library: the channel needs exact control of the byte budget
of each line (the real ``nick!user@host`` prefix the server relays, learnt from our own JOIN),
pacing in lines *and* bytes, SASL PLAIN on every reconnect and a reconnect loop with back-off;
pydle and jaraco's ``irc`` each miss some of this (``irc`` has no SASL; neither counts the relayed
prefix when splitting), and the protocol subset used here is small.

One session: connect through the egress gate (loopback always; another host only as ``[egress]``
allows), with TLS unless ``tls = false`` → ``CAP LS 302`` / ``CAP REQ sasl`` /
``AUTHENTICATE PLAIN`` when SASL is configured (a server without SASL is refused: the
credentials were asked for) → ``PASS`` / ``NICK`` / ``USER`` → on 001 join the channels. PINGs
are answered at once; a silent server is pinged, and one that stays silent is dropped. When the
session ends, the next starts after ``reconnect_min_s``, doubling up to ``reconnect_fast_s`` (2 s)
during the first minute of an outage (so the agent is back within about that of the server's
return), then up to ``reconnect_max_s`` (60 s); it starts over once registered. Replies wait in an
outbox that survives reconnects and leave through ``FloodControl``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
import time
from collections import deque
from dataclasses import dataclass, field

from sovereign.channels.base import Handler, Incoming
from sovereign.channels.config import IrcConfig
from sovereign.channels.flood import FloodControl
from sovereign.channels.irc_lines import Line, format_line, irc_lower, parse_line, split_text, text_budget
from sovereign.errors import ConfigError, EgressDeniedError
from sovereign.governance.egress import EgressGate

__all__ = ["IrcChannel", "IrcStats", "SaslError"]

log = logging.getLogger("sovereign.channels.irc")

_SASL_FAILED = {"902", "904", "905", "906", "908"}
_MAX_HOST = "x" * 63  # before our real host is known, assume the longest


class SaslError(ConfigError):
    """SASL authentication was configured and failed (or the server does not offer it)."""


@dataclass
class IrcStats:
    """What happened on the connection (tests and benchmarks read it)."""

    connects: int = 0
    registrations: int = 0
    kicks: int = 0
    lines_sent: int = 0
    last_registered: float | None = None
    last_joined: float | None = None
    errors: list[str] = field(default_factory=list)


class IrcChannel:
    """One IRC network (see the module docstring)."""

    def __init__(self, config: IrcConfig, egress: EgressGate | None = None) -> None:
        self.config = config
        self.egress = egress or EgressGate()  # default: offline, loopback only
        self.name = config.name
        self.nick = config.nick
        self.prefix: str | None = None
        self.stats = IrcStats()
        self.flood = FloodControl(config.burst_lines, config.lines_per_s, config.burst_bytes, config.bytes_per_s)
        self.registered = asyncio.Event()
        self.joined: set[str] = set()
        self._outbox: deque[tuple[str, str]] = deque()
        self._wake = asyncio.Event()
        self._writer: asyncio.StreamWriter | None = None
        self._tasks: set[asyncio.Task] = set()
        self._offered: set[str] = set()
        self._pongs: dict[str, asyncio.Future] = {}
        self._sasl_secret = config.sasl_secret()  # a missing environment variable fails at start

    # --- Channel ---------------------------------------------------------------------------------

    async def run(self, handler: Handler) -> None:
        config = self.config
        delay = config.reconnect_min_s
        down_since = time.monotonic()
        while True:
            registrations = self.stats.registrations
            try:
                await self._session(handler)
            except (SaslError, EgressDeniedError):
                raise  # retrying cannot help: the credentials or the egress policy must change
            except (OSError, ConnectionError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
                # ValueError: a line longer than the reader's limit (a broken or hostile server)
                self.stats.errors.append(f"{type(exc).__name__}: {exc}")
                log.warning("irc %s: connection lost (%s)", self.name, exc)
            finally:
                self.registered.clear()
                self.joined.clear()
            if self.stats.registrations > registrations:  # that session got in: the back-off starts over
                delay, down_since = config.reconnect_min_s, time.monotonic()
            await asyncio.sleep(delay)
            fast = time.monotonic() - down_since < config.reconnect_fast_window_s
            delay = min(delay * 2, config.reconnect_fast_s if fast else config.reconnect_max_s)

    async def reply(self, message: Incoming, text: str, *, max_lines: int | None = None) -> int:
        return self.say(message.reply_to, text, max_lines=max_lines)

    async def notify(self, person: str, text: str) -> None:
        self.say(person, text)

    def say(self, target: str, text: str, *, max_lines: int | None = None) -> int:
        """Queue ``text`` for ``target``, split to fit the relayed line; returns the lines queued."""
        prefix = self.prefix or f"{self.nick}!~{self.config.username}@{_MAX_HOST}"
        pieces = split_text(text, text_budget(prefix, "PRIVMSG", target))
        if max_lines is not None and len(pieces) > max_lines:
            cut = len(pieces) - max_lines + 1
            pieces = [*pieces[:max_lines - 1], f"... ({cut} more lines not sent)"]
        self._outbox.extend((target, piece) for piece in pieces)
        self._wake.set()
        return len(pieces)

    async def lag(self, timeout: float = 120.0) -> float:
        """Seconds from a PING to its PONG: how far behind the server is in reading us."""
        token = f"lag{time.monotonic_ns()}"
        waiter = asyncio.get_running_loop().create_future()
        self._pongs[token] = waiter
        started = time.monotonic()
        self._send("PING", token)
        try:
            async with asyncio.timeout(timeout):
                await waiter
        finally:
            self._pongs.pop(token, None)
        return time.monotonic() - started

    @property
    def pending(self) -> int:
        """Lines waiting in the outbox."""
        return len(self._outbox)

    # --- one session -----------------------------------------------------------------------------

    def _ssl(self) -> ssl.SSLContext | None:
        if not self.config.tls:
            return None
        if not self.config.tls_verify:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        return ssl.create_default_context(cafile=self.config.tls_ca_file)

    async def _session(self, handler: Handler) -> None:
        config = self.config
        context = self._ssl()
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation that arrives
        # as its awaitable finishes, and a stopped channel then ran on, holding its nick
        async with asyncio.timeout(15):
            reader, writer = await self.egress.open_connection(
                config.host, config.port, purpose=f"irc channel '{self.name}'", ssl=context,
                server_hostname=config.host if context else None)
        self.stats.connects += 1
        log.info("irc %s: connected to %s:%s%s", self.name, config.host, config.port, " (TLS)" if context else "")
        self._writer = writer
        self.nick = config.nick
        sender = asyncio.ensure_future(self._send_outbox(writer))
        try:
            self._register()
            await self._read(reader, handler)
        finally:
            sender.cancel()
            self._writer = None
            writer.close()
            closed = False
            try:
                async with asyncio.timeout(2):
                    await writer.wait_closed()
                closed = True
            except (OSError, TimeoutError, ssl.SSLError):
                pass
            finally:
                if not closed:  # a TLS goodbye that did not finish (or a cancelled wait) must not leave
                    writer.transport.abort()  # the socket open: the server would keep our nick for minutes

    def _register(self) -> None:
        if self._sasl_secret is not None:
            self._send("CAP", "LS", "302")
        if self.config.password is not None:
            self._send("PASS", self.config.password.get_secret_value())
        self._send("NICK", self.nick)
        self._send("USER", self.config.username, "0", "*", self.config.realname)

    async def _read(self, reader: asyncio.StreamReader, handler: Handler) -> None:
        pinged = False
        while True:
            try:
                async with asyncio.timeout(self.config.ping_interval_s):
                    raw = await reader.readline()
            except TimeoutError:
                if pinged:
                    raise TimeoutError(f"no answer from the server in {2 * self.config.ping_interval_s:g}s") from None
                self._send("PING", "sovereign")
                pinged = True
                continue
            if not raw:
                raise ConnectionError("the server closed the connection")
            pinged = False
            self._dispatch(parse_line(raw), handler)

    def _send(self, *parts: str) -> None:
        """A protocol line, now (not paced: registration, PONG, JOIN); it still uses up tokens."""
        if self._writer is None:
            return
        data = format_line(*parts)
        self.flood.lines.take(1)
        self.flood.bytes.take(len(data))
        self._writer.write(data)

    async def _send_outbox(self, writer: asyncio.StreamWriter) -> None:
        await self.registered.wait()
        while True:
            while not self._outbox:
                self._wake.clear()
                await self._wake.wait()
            target, text = self._outbox[0]
            data = format_line("PRIVMSG", target, text)
            await self.flood.pace(len(data))
            if writer.is_closing():
                return
            writer.write(data)
            await writer.drain()
            self._outbox.popleft()  # only once written: a lost connection resends it
            self.stats.lines_sent += 1

    # --- what the server says ----------------------------------------------------------------------

    def _dispatch(self, line: Line, handler: Handler) -> None:
        command = line.command
        if command == "PING":
            self._send("PONG", line.last)
        elif command == "PONG":
            waiter = self._pongs.get(line.last)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        elif command == "CAP":
            self._cap(line)
        elif command == "AUTHENTICATE" and line.last == "+":
            self._authenticate()
        elif command == "903":
            self._send("CAP", "END")
        elif command in _SASL_FAILED:
            raise SaslError(f"irc {self.name}: SASL authentication failed: {line.last}")
        elif command == "001":
            self._welcome(line)
        elif command in ("432", "433", "436") and not self.registered.is_set():
            log.warning("irc %s: the nick %s was refused (%s: %s); trying %s_", self.name, self.nick, command,
                        line.last, self.nick)
            self.nick = (self.nick + "_")[:30]
            self._send("NICK", self.nick)
        elif command == "JOIN" and self._is_me(line.nick):
            self.prefix = line.prefix  # as the server relays us: the exact byte budget of a reply
            self.joined.add(irc_lower(line.params[0]))
            self.stats.last_joined = time.monotonic()
            log.info("irc %s: joined %s as %s", self.name, line.params[0], line.prefix)
        elif command == "NICK" and self._is_me(line.nick):
            self.nick = line.last
            self.prefix = f"{self.nick}!{line.prefix.split('!', 1)[1]}" if line.prefix and "!" in line.prefix else None
        elif command == "KICK" and len(line.params) >= 2 and self._is_me(line.params[1]):
            self._kicked(line)
        elif command == "PRIVMSG" and len(line.params) >= 2:
            self._privmsg(line, handler)
        elif command == "ERROR":
            raise ConnectionError(f"the server ended the session: {line.last}")

    def _is_me(self, nick: str | None) -> bool:
        return nick is not None and irc_lower(nick) == irc_lower(self.nick)

    def _cap(self, line: Line) -> None:
        sub = line.params[1].upper() if len(line.params) > 1 else ""
        if sub == "LS":
            self._offered.update(cap.split("=", 1)[0] for cap in line.last.split())
        if sub == "LS" and (len(line.params) < 4 or line.params[2] != "*"):  # the last LS line
            offered = self._offered
            if "sasl" not in offered:
                raise SaslError(f"irc {self.name}: SASL is configured but the server does not offer it "
                                f"(it offers: {', '.join(sorted(offered)) or 'nothing'})")
            self._send("CAP", "REQ", "sasl")
        elif sub == "ACK" and "sasl" in line.last.split():
            self._send("AUTHENTICATE", "PLAIN")
        elif sub == "NAK":
            raise SaslError(f"irc {self.name}: the server refused the SASL capability")

    def _authenticate(self) -> None:
        user = self.config.sasl_username or ""
        token = base64.b64encode(f"{user}\0{user}\0{self._sasl_secret}".encode()).decode("ascii")
        chunks = [token[i:i + 400] for i in range(0, len(token), 400)]
        for chunk in chunks:
            self._send("AUTHENTICATE", chunk)
        if len(chunks[-1]) == 400:
            self._send("AUTHENTICATE", "+")

    def _welcome(self, line: Line) -> None:
        self.nick = line.params[0]
        words = line.last.split()
        if words and "!" in words[-1] and "@" in words[-1]:
            self.prefix = words[-1]
        self.stats.registrations += 1
        self.stats.last_registered = time.monotonic()
        log.info("irc %s: registered as %s", self.name, self.nick)
        self.registered.set()
        self._wake.set()
        if self.config.channels:
            self._send("JOIN", ",".join(self.config.channels))

    def _kicked(self, line: Line) -> None:
        self.stats.kicks += 1
        channel = line.params[0]
        self.joined.discard(irc_lower(channel))
        log.warning("irc %s: kicked from %s: %s", self.name, channel, line.last)
        self._spawn(self._rejoin(channel))

    async def _rejoin(self, channel: str) -> None:
        await asyncio.sleep(2)
        self._send("JOIN", channel)

    def _privmsg(self, line: Line, handler: Handler) -> None:
        target, text = line.params[0], line.last
        if line.prefix is None or self._is_me(line.nick) or text.startswith("\x01"):  # ours, or CTCP
            return
        sender = line.nick or ""
        if self._is_me(target):
            message = Incoming(self.name, sender, line.prefix, None, text.strip())
        else:
            stripped = _addressed(text, self.nick)
            if stripped is None:
                return
            message = Incoming(self.name, sender, line.prefix, target, stripped)
        self._spawn(handler(message))

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("irc %s: a message handler failed", self.name, exc_info=task.exception())


def _addressed(text: str, nick: str) -> str | None:
    """The text of a room message that mentions ``nick`` (``nick: question`` or the nick anywhere
    as a word), without a leading address; None when it does not mention it."""
    lowered, me = irc_lower(text), irc_lower(nick)
    for separator in (":", ",", " "):
        if lowered.startswith(me + separator):
            return text[len(nick) + 1:].strip()
    words = [w.strip(".,:;!?()") for w in lowered.split()]
    return text.strip() if me in words else None
