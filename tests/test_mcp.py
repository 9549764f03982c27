"""MCP in both directions, with real processes and the official SDK (mcp==2.3.0):

- our client mounts the tools of a real MCP server (``tests/mcp_fixtures/echo_server.py``)
  over stdio and over streamable HTTP on loopback; HTTP to a non-loopback host is refused by
  the egress gate in offline mode;
- the SDK's client talks to ``python -m sovereign.tools.mcp_server`` over stdio.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sovereign.errors import ConfigError
from sovereign.governance.egress import EgressGate
from sovereign.tools import ToolArgumentError, ToolError
from sovereign.tools.mcp_client import MCPMount, MCPServerConfig, load_mcp_servers, parse_mcp_servers

FIXTURE = Path(__file__).parent / "mcp_fixtures" / "echo_server.py"
REPO = Path(__file__).resolve().parent.parent


def stdio_config(**extra) -> MCPServerConfig:
    return MCPServerConfig(name="echo", command=sys.executable, args=[str(FIXTURE)], **extra)


async def _exercise(config: MCPServerConfig, gate: EgressGate | None = None) -> dict:
    async with MCPMount([config], gate or EgressGate()) as mount:
        assert mount.errors == {}
        tools = {t.name: t for t in mount.tools}
        out = {"names": sorted(tools), "approval": {n: t.needs_approval for n, t in tools.items()}}
        out["add"] = await tools["echo__add"].call({"a": 2, "b": 40})
        out["shout"] = await tools["echo__shout"].call('{"text": "quiet"}')
        with pytest.raises(ToolError, match="boom"):
            await tools["echo__fail"].call({"reason": "boom"})
        with pytest.raises(ToolArgumentError, match="'b' is a required property"):
            await tools["echo__add"].call({"a": 1})
        out["schema"] = tools["echo__add"].parameters
        return out


def test_mount_stdio_server():
    out = asyncio.run(_exercise(stdio_config()))
    assert out["names"] == ["echo__add", "echo__fail", "echo__shout"]
    assert out["add"] == "42" and out["shout"] == "QUIET"
    assert out["schema"]["required"] == ["a", "b"]
    assert all(out["approval"].values()), "tools of untrusted servers need approval"


def test_trusted_server_tools_skip_approval():
    out = asyncio.run(_exercise(stdio_config(trusted=True)))
    assert not any(out["approval"].values())


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def http_server():
    port = _free_port()
    process = subprocess.Popen([sys.executable, str(FIXTURE), "http", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        process.kill()
        pytest.fail("the MCP HTTP fixture server did not start")
    yield f"http://127.0.0.1:{port}/mcp"
    process.terminate()
    process.wait(10)


def test_mount_http_server_on_loopback_through_the_gate(http_server):
    decisions = []
    gate = EgressGate(on_decision=lambda host, purpose, allowed, reason: decisions.append((host, purpose, allowed)))
    out = asyncio.run(_exercise(MCPServerConfig(name="echo", url=http_server), gate))
    assert out["add"] == "42"
    assert decisions and all(d == ("127.0.0.1", "mcp:echo", True) for d in decisions)


def test_http_server_off_loopback_is_refused_offline():
    async def attempt():
        async with MCPMount([MCPServerConfig(name="remote", url="https://mcp.example.com/mcp")]) as mount:
            return mount.tools, mount.errors

    tools, errors = asyncio.run(attempt())
    assert tools == []
    assert "offline" in errors["remote"] and "mcp.example.com" in errors["remote"]


def test_unreachable_server_is_reported_not_fatal():
    async def attempt():
        broken = MCPServerConfig(name="broken", command=sys.executable, args=["-c", "raise SystemExit(1)"],
                                 timeout=10)
        async with MCPMount([broken, stdio_config()]) as mount:
            return [t.name for t in mount.tools], mount.errors

    names, errors = asyncio.run(attempt())
    assert "broken" in errors and "echo__add" in names


def test_config_parsing(tmp_path):
    (tmp_path / "config.toml").write_text(
        '[[mcp_servers]]\nname = "files"\ncommand = "npx"\nargs = ["-y", "server"]\n\n'
        '[[mcp_servers]]\nname = "search"\nurl = "http://127.0.0.1:9000/mcp"\ntrusted = true\n'
    )
    servers = load_mcp_servers(tmp_path)
    assert [(s.name, s.command, s.url, s.trusted) for s in servers] == [
        ("files", "npx", None, False), ("search", None, "http://127.0.0.1:9000/mcp", True)]
    assert load_mcp_servers(tmp_path / "nowhere") == []
    with pytest.raises(ConfigError, match=r"mcp_servers\[0\].*exactly one of"):
        parse_mcp_servers({"mcp_servers": [{"name": "x"}]})
    with pytest.raises(ConfigError, match="repeated: a"):
        parse_mcp_servers({"mcp_servers": [{"name": "a", "command": "x"}, {"name": "a", "command": "y"}]})
    with pytest.raises(ConfigError, match="name"):
        parse_mcp_servers({"mcp_servers": [{"name": "bad name!", "command": "x"}]})


# --- our server, the SDK's client --------------------------------------------------------------


@pytest.fixture
def sov_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("SOVEREIGN_HOME", str(home))
    return home


def test_sdk_client_against_our_server_over_stdio(sov_home):
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(
        command=sys.executable, args=["-m", "sovereign.tools.mcp_server"],
        env={"SOVEREIGN_HOME": str(sov_home), "PYTHONPATH": os.environ.get("PYTHONPATH", "")}, cwd=str(REPO),
    )

    async def talk():
        from mcp.client.stdio import stdio_client

        # errlog given now: the SDK's default is whatever sys.stderr was when it was first imported
        # (under a CLI test runner, a capture object with no file descriptor).
        async with Client(stdio_client(params, errlog=sys.__stderr__), read_timeout_seconds=60) as client:
            listed = await client.list_tools()
            models = await client.call_tool("list_models", {})
            bad = await client.call_tool("chat", {})
            return listed, models, bad

    listed, models, bad = asyncio.run(talk())
    names = {t.name for t in listed.tools}
    assert {"chat", "list_models"} <= names
    assert models.is_error is False and "qwen2.5-coder-0.5b-instruct" in models.content[0].text
    assert bad.is_error and "prompt" in bad.content[0].text


def test_chat_tool_in_process_with_a_scripted_model(sov_home):
    from mcp import Client

    from sovereign.services import Services
    from sovereign.testing import TestModel, serve_every_tier
    from sovereign.tools.mcp_server import build_server

    services = Services.open()
    try:
        serve_every_tier(services, TestModel())  # deterministic double

        async def talk():
            async with Client(build_server(services)) as client:
                return await client.call_tool("chat", {"prompt": "echo me"})

        result = asyncio.run(talk())
    finally:
        services.close()
    assert result.content[0].text == "echo me"


def test_run_agent_tool_in_process_with_a_scripted_model(sov_home):
    pytest.importorskip("sovereign.agent")
    from mcp import Client

    from sovereign.services import Services
    from sovereign.testing import ScriptedModel, serve_every_tier, text_response
    from sovereign.tools.mcp_server import build_server

    services = Services.open()
    # the default agent acts in code: it computes the answer in a block
    model = ScriptedModel([text_response("```python\nfinal_answer(6 * 7)\n```")])
    try:
        serve_every_tier(services, model)  # deterministic double

        async def talk():
            async with Client(build_server(services)) as client:
                names = {t.name for t in (await client.list_tools()).tools}
                return names, await client.call_tool("run_agent", {"task": "what is 6 * 7?"})

        names, result = asyncio.run(talk())
    finally:
        services.close()
    assert "run_agent" in names
    assert result.content[0].text == "42", result.content[0].text
