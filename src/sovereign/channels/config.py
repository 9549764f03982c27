"""Channel configuration: ``[[channels.irc]]`` tables in ``config.toml``, validated here.

    [[channels.irc]]
    name = "local"                    # a label; the agent identity is "irc-local" unless `identity` says
    host = "irc.example.org"
    port = 6697
    tls = true
    nick = "sovereign"
    channels = ["#sovereign"]
    sasl_username = "sovereign"       # SASL PLAIN, re-sent on every reconnect
    sasl_password_env = "IRC_SASL_PASSWORD"
    owner = "alice"                   # the human identity who owns the agent (default: the local admin)
    owner_hostmasks = ["alice!*@alice.example"]   # who may !approve / !deny, in a direct message
    allow = ["*!*@*"]                 # who the agent answers at all
    agent = "helper"                  # an [[agents]] entry (default: a plain chat agent, no tools)
    public = true                     # sees only what its owner exposed (governance/visibility.py)
    daily_cap_usd = 2.0               # the agent identity's own daily cap

    [[channels.irc.tool_rules]]       # the first rule matching the sender decides its tools
    hostmask = "alice!*@*"
    tools = ["calculator", "read_file"]
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from sovereign.errors import ConfigError

__all__ = ["IrcConfig", "ToolRule", "irc_configs"]


class ToolRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hostmask: str = Field(min_length=1, description="glob over nick!user@host")
    tools: list[str] = Field(default_factory=list, description="tools this sender's runs may use (of the agent's)")


class IrcConfig(BaseModel):
    """One IRC network the agent joins."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=48, pattern=r"^[A-Za-z0-9_.-]+$")
    host: str = Field(min_length=1)
    port: int = Field(default=6697, ge=1, le=65535)
    tls: bool = True
    tls_verify: bool = True
    tls_ca_file: str | None = Field(default=None, description="CA bundle for a self-signed server certificate")
    nick: str = Field(default="sovereign", min_length=1, max_length=30, pattern=r"^[A-Za-z\[\]\\`_^{|}][A-Za-z0-9\[\]\\`_^{|}-]*$")
    username: str = Field(default="sovereign", min_length=1, max_length=16, pattern=r"^[A-Za-z0-9_.-]+$")
    realname: str = "sovereign agent"
    password: SecretStr | None = Field(default=None, description="server password (PASS)")
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_password_env: str | None = Field(default=None, description="environment variable holding the SASL password")
    channels: list[str] = Field(default_factory=list)
    identity: str | None = Field(default=None, description="agent identity name (default irc-<name>)")
    owner: str | None = Field(default=None, description="human owner identity (default: the local admin)")
    owner_hostmasks: list[str] = Field(default_factory=list)
    owner_nicks: list[str] = Field(default_factory=list, description="where approval requests are sent")
    allow: list[str] = Field(default_factory=lambda: ["*!*@*"])
    agent: str | None = None
    public: bool = True
    daily_cap_usd: float | None = Field(default=2.0, ge=0)
    tool_rules: list[ToolRule] = Field(default_factory=list)
    default_tools: list[str] = Field(default_factory=list, description="tools of senders no rule matches")
    max_reply_lines: int = Field(default=20, ge=1, le=5000)
    max_concurrent_runs: int = Field(default=2, ge=1, le=64)
    approval_timeout_s: float = Field(default=600.0, gt=0)
    burst_lines: int = Field(default=4, ge=1)
    lines_per_s: float = Field(default=2.0, gt=0)
    burst_bytes: int = Field(default=1024, ge=512)
    bytes_per_s: float = Field(default=240.0, gt=0)
    reconnect_min_s: float = Field(default=0.25, gt=0)
    reconnect_fast_s: float = Field(default=2.0, gt=0, description=(
        "the back-off doubles up to this during the first reconnect_fast_window_s of an outage, so "
        "the agent is back within about this long after the server returns"))
    reconnect_fast_window_s: float = Field(default=60.0, ge=0)
    reconnect_max_s: float = Field(default=60.0, gt=0, description="the back-off cap after that window")
    ping_interval_s: float = Field(default=90.0, gt=0)

    @field_validator("channels")
    @classmethod
    def _channel_names(cls, channels: list[str]) -> list[str]:
        for channel in channels:
            if not channel or channel[0] not in "#&+!" or " " in channel or "," in channel:
                raise ValueError(f"'{channel}' is not a channel name (it starts with # and has no spaces or commas)")
        return channels

    @model_validator(mode="after")
    def _checks(self) -> IrcConfig:
        if (self.sasl_password or self.sasl_password_env) and not self.sasl_username:
            raise ValueError("a SASL password needs sasl_username")
        if self.sasl_username and not (self.sasl_password or self.sasl_password_env):
            raise ValueError("sasl_username needs sasl_password or sasl_password_env")
        return self

    @property
    def identity_name(self) -> str:
        return self.identity or f"irc-{self.name}"

    def sasl_secret(self) -> str | None:
        """The SASL password (from the environment variable when one is named)."""
        if self.sasl_password_env:
            value = os.environ.get(self.sasl_password_env)
            if not value:
                raise ConfigError(f"channels.irc '{self.name}': environment variable {self.sasl_password_env} "
                                  "(sasl_password_env) is not set")
            return value
        return self.sasl_password.get_secret_value() if self.sasl_password else None

    def tools_for(self, hostmask: str) -> list[str]:
        from sovereign.channels.irc_lines import hostmask_matches

        for rule in self.tool_rules:
            if hostmask_matches([rule.hostmask], hostmask):
                return list(rule.tools)
        return list(self.default_tools)


def irc_configs(channels: dict[str, Any]) -> list[IrcConfig]:
    """The ``[[channels.irc]]`` entries of the settings' ``channels`` table; ``ConfigError`` naming
    each bad field."""
    unknown = sorted(set(channels) - {"irc"})
    if unknown:
        raise ConfigError(f"unknown channel kind(s) {unknown} in [channels]; supported: irc")
    configs = []
    for position, entry in enumerate(channels.get("irc", [])):
        try:
            configs.append(IrcConfig.model_validate(entry))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(entry)'}: "
                                 f"{e['msg'].removeprefix('Value error, ')}" for e in exc.errors())
            raise ConfigError(f"channels.irc[{position}] is invalid: {problems}") from exc
    names = [c.name for c in configs]
    if len(names) != len(set(names)):
        raise ConfigError("channels.irc entries need distinct names")
    return configs
