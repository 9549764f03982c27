"""The IRC wire format (RFC 1459 / 2812 with IRCv3 message tags skipped): parsing a line,
formatting one, hostmask matching, and splitting a reply into lines that fit.

A line the server relays is ``:nick!user@host PRIVMSG target :text\\r\\n`` and may be at most
512 bytes, prefix included; ``text_budget`` is what is left for the text once the sender's real
prefix (as the server shows it to others) is counted. ``split_text`` cuts on line breaks first,
then at spaces, and never inside a UTF-8 sequence, so every piece decodes on its own.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

__all__ = ["Line", "LINE_LIMIT", "hostmask_matches", "irc_lower", "parse_line", "split_text", "text_budget"]

LINE_LIMIT = 512
"""Bytes in one IRC line, CR LF included."""


@dataclass(frozen=True, slots=True)
class Line:
    """One parsed line: ``prefix`` (``nick!user@host`` or a server name), command, parameters."""

    command: str
    params: list[str] = field(default_factory=list)
    prefix: str | None = None

    @property
    def nick(self) -> str | None:
        return self.prefix.split("!", 1)[0] if self.prefix else None

    @property
    def last(self) -> str:
        return self.params[-1] if self.params else ""


def parse_line(raw: bytes | str) -> Line:
    """Parse one line (without CR LF); undecodable bytes are read as Latin-1."""
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
    else:
        text = raw
    text = text.rstrip("\r\n")
    if text.startswith("@"):  # IRCv3 message tags: not used here
        text = text.partition(" ")[2]
    prefix = None
    if text.startswith(":"):
        prefix, _, text = text[1:].partition(" ")
    trailing = None
    if " :" in text:
        text, _, trailing = text.partition(" :")
    elif text.startswith(":"):
        text, trailing = "", text[1:]
    words = text.split()
    command = words[0].upper() if words else ""
    params = words[1:] + ([trailing] if trailing is not None else [])
    return Line(command, params, prefix)


def format_line(command: str, *params: str) -> bytes:
    """A line ready to send: the last parameter is trailing when it needs to be; CR, LF and NUL
    are removed from every parameter (they would end the line or inject another)."""
    clean = [p.replace("\r", " ").replace("\n", " ").replace("\0", "") for p in params]
    if clean and (not clean[-1] or " " in clean[-1] or clean[-1].startswith(":")):
        clean[-1] = ":" + clean[-1]
    return (" ".join([command, *clean]) + "\r\n").encode("utf-8")


_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ[]\\~", "abcdefghijklmnopqrstuvwxyz{}|^")


def irc_lower(text: str) -> str:
    """Case-fold a nick or channel the way servers compare them (rfc1459 case mapping)."""
    return text.translate(_LOWER)


def hostmask_matches(patterns: list[str], hostmask: str) -> bool:
    """Whether ``nick!user@host`` matches any glob (``*!*@127.0.0.1``, ``alice!*@*``), case-insensitively."""
    target = irc_lower(hostmask)
    return any(fnmatch.fnmatchcase(target, irc_lower(p)) for p in patterns)


def text_budget(prefix: str, command: str, target: str) -> int:
    """Bytes left for the text of ``:prefix COMMAND target :text\\r\\n`` within the line limit."""
    overhead = len(f":{prefix} {command} {target} :".encode()) + 2
    return LINE_LIMIT - overhead


def _cut(data: bytes, budget: int) -> int:
    """Where to cut ``data`` (longer than ``budget``): after the last space that fits, else at the
    last UTF-8 character boundary that fits."""
    space = data.rfind(b" ", 0, budget + 1)
    if space > budget // 2:
        return space
    end = budget
    while end > 0 and (data[end] & 0xC0) == 0x80:  # a continuation byte: not a boundary
        end -= 1
    return end or budget


def split_text(text: str, budget: int) -> list[str]:
    """``text`` as lines of at most ``budget`` UTF-8 bytes each, cut at line breaks, then spaces,
    never inside a character; empty lines are dropped (IRC cannot send them)."""
    if budget < 8:
        raise ValueError(f"a text budget of {budget} bytes is too small for any line")
    pieces: list[str] = []
    for paragraph in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        data = paragraph.replace("\0", "").encode("utf-8")
        while len(data) > budget:
            cut = _cut(data, budget)
            pieces.append(data[:cut].decode("utf-8"))
            data = data[cut:].lstrip(b" ") if data[cut:cut + 1] == b" " else data[cut:]
        if data.strip():
            pieces.append(data.decode("utf-8"))
    return [p.rstrip() for p in pieces if p.strip()]
