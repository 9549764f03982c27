"""Code mode, the runtime's side of a code run: start the model's code in the sandbox (see
``code_prelude``), answer each tool call it makes through a callback, collect what it prints,
and report how it ended (final answer, error, done, or killed by a limit)."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

from sovereign.kernel.messages import ToolSpec
from sovereign.tools.sandbox import Sandbox, python_executable

__all__ = ["CodeOutcome", "ToolCallback", "function_name", "run_code"]

ToolCallback = Callable[[str, dict], Awaitable[tuple[bool, str]]]
"""``(tool name, arguments) -> (ok, text)``: runs one call from the code on the governed path."""

_LINE_RESULTS = frozenset({"list_files", "search_files"})
_MAX_READ = 256_000


@dataclass
class CodeOutcome:
    output: str
    """What the code printed (cut at the sandbox's output cap)."""
    final: str | None = None
    """The ``final_answer`` value, when the code called it."""
    error: str | None = None
    """Why the code failed: its exception, or the limit that killed it."""
    state: dict | None = None
    """What the code left for the next block (``code_prelude``): opaque here, passed back as is."""


@cache
def _prelude() -> str:
    return files(__package__).joinpath("code_prelude.py").read_text(encoding="utf-8")


def function_name(tool_name: str) -> str:
    """The Python name of a tool inside the code (``mcp.fetch-page`` → ``mcp_fetch_page``)."""
    name = re.sub(r"\W", "_", tool_name)
    return name if name and not name[0].isdigit() else f"tool_{name}"


def _tool_table(specs: Sequence[ToolSpec]) -> list[dict]:
    table = []
    for spec in specs:
        properties = spec.parameters.get("properties", {}) if isinstance(spec.parameters, dict) else {}
        text = [name for name, schema in properties.items() if isinstance(schema, dict) and schema.get("type") == "string"]
        table.append({"name": spec.name, "function": function_name(spec.name), "params": list(properties),
                      "text": text, "lines": spec.name in _LINE_RESULTS})
    return table


async def run_code(sandbox: Sandbox, code: str, specs: Sequence[ToolSpec], callback: ToolCallback, *,
                   wall_seconds: float, state: dict | None = None) -> CodeOutcome:
    """Run ``code`` to its end. Time spent in ``callback`` (tools, approvals) does not count
    against ``wall_seconds``; output past the sandbox's cap kills the code. ``state``: what the
    previous block left (its ``CodeOutcome.state``), restored before the code runs."""
    marker = secrets.token_hex(8)
    prefix = ("\x1e" + marker + " ").encode()
    cap = sandbox.limits.max_output_bytes
    job = json.dumps({"code": code, "tools": _tool_table(specs), "max_read": _MAX_READ,
                      "state": state or {}}) + "\n"
    printed = bytearray()
    outcome = CodeOutcome(output="")
    async with sandbox.session([python_executable(), "-I", "-c", _prelude(), marker]) as process:
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        errors = asyncio.ensure_future(process.stderr.read(cap))
        process.stdin.write(job.encode())
        await process.stdin.drain()
        deadline = time.monotonic() + wall_seconds
        ended = False
        while not ended:
            try:
                async with asyncio.timeout(max(deadline - time.monotonic(), 0.01)):
                    line = await process.stdout.readline()
            except TimeoutError:
                outcome.error = f"killed: the code ran past its time limit ({wall_seconds:g} s)"
                break
            except ValueError:  # one line longer than the stream's limit
                outcome.error = f"killed: the code printed more than {cap} bytes"
                break
            if not line:
                break
            at = line.find(prefix)
            printed += line if at < 0 else line[:at]
            if len(printed) > cap:
                outcome.error = f"killed: the code printed more than {cap} bytes"
                break
            if at < 0:
                continue
            message = json.loads(line[at + len(prefix):])
            if "call" in message:
                started = time.monotonic()
                ok, text = await callback(str(message["call"]), dict(message.get("args") or {}))
                deadline += time.monotonic() - started
                process.stdin.write((json.dumps({"ok": ok, "value": text} if ok else {"ok": False, "error": text})
                                     + "\n").encode())
                await process.stdin.drain()
                continue
            if "state" in message:
                outcome.state = message["state"] if isinstance(message["state"], dict) else None
                continue
            ended = True
            if "final" in message:
                outcome.final = str(message["final"])
            elif "error" in message:
                outcome.error = str(message["error"])
        if not ended and outcome.error is None:
            await asyncio.wait([errors, asyncio.ensure_future(process.wait())], timeout=2)
            stderr = errors.result().decode("utf-8", "replace").strip() if errors.done() else ""
            outcome.error = (f"the code stopped unexpectedly (exit code {process.returncode}: killed by a "
                             "limit, or it exited)") + (f"\n{stderr[-800:]}" if stderr else "")
        errors.cancel()
    outcome.output = printed[:cap].decode("utf-8", "replace").rstrip("\n")
    return outcome
