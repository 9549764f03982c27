"""The egress gate: the one module that decides whether an outbound connection may be opened.

Modes: ``offline`` (default; only loopback), ``allowlist`` (loopback plus named hosts) and
``open``. Every other module gets its HTTP clients from here; a refusal raises
``EgressDeniedError`` before any socket is opened and is reported to the ``on_decision`` hook
(the audit log subscribes to it).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

import httpx

from sovereign.errors import EgressDeniedError

Mode = Literal["offline", "allowlist", "open"]
Decision = Callable[[str, str, bool, str], None]  # (host, purpose, allowed, reason)


def is_loopback(host: str) -> bool:
    name = host.strip("[]").lower()
    if name in ("localhost", "localhost.localdomain") or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass
class EgressGate:
    mode: Mode = "offline"
    allow_hosts: list[str] = field(default_factory=list)
    on_decision: Decision | None = None

    def check(self, url: str, *, purpose: str) -> None:
        """Raise ``EgressDeniedError`` unless a connection to ``url`` is allowed."""
        host = urlsplit(url).hostname or ""
        if not host:
            raise EgressDeniedError(f"egress refused for {purpose}: '{url}' names no host")
        allowed, reason = self._decide(host)
        if self.on_decision is not None:
            self.on_decision(host, purpose, allowed, reason)
        if not allowed:
            raise EgressDeniedError(f"egress refused for {purpose}: {reason}")

    def _decide(self, host: str) -> tuple[bool, str]:
        if is_loopback(host):
            return True, f"{host} is loopback"
        if self.mode == "open":
            return True, "egress mode is open"
        if self.mode == "allowlist" and host.lower() in {h.lower() for h in self.allow_hosts}:
            return True, f"{host} is on the egress allowlist"
        if self.mode == "allowlist":
            return False, f"host '{host}' is not on the egress allowlist (egress.allow_hosts)"
        return False, f"sovereign is offline (egress.mode = 'offline'); connecting to '{host}' is not allowed"

    def client(self, *, purpose: str, **options) -> httpx.AsyncClient:
        """An async HTTP client whose every request passes the gate first (redirects included)."""

        async def gate(request: httpx.Request) -> None:
            self.check(str(request.url), purpose=purpose)

        hooks = options.pop("event_hooks", {})
        hooks.setdefault("request", []).insert(0, gate)
        return httpx.AsyncClient(event_hooks=hooks, trust_env=False, **options)

    async def open_connection(self, host: str, port: int, *, purpose: str, **options):
        """A TCP (or TLS, with ``ssl=``) stream to ``host:port`` once the gate allows it: the
        ``(reader, writer)`` of ``asyncio.open_connection`` (chat channels)."""
        import asyncio

        self.check(f"tcp://{'[' + host + ']' if ':' in host else host}:{port}", purpose=purpose)
        return await asyncio.open_connection(host, port, **options)
