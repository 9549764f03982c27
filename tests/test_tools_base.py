"""Tools from typed functions: schema from signature and docstring, validation before the call,
bad arguments and tool errors as messages for the model, our own bugs propagating."""

from __future__ import annotations

import asyncio
import threading
from typing import Literal

import pytest

from sovereign.tools import Tool, ToolArgumentError, ToolContext, ToolError, tool


@tool
def area(width: float, height: float = 1.0, unit: Literal["m", "cm"] = "m") -> str:
    """Area of a rectangle.

    Longer text that is not part of the description.
    """
    return f"{width * height} {unit}^2"


def test_schema_comes_from_signature_and_docstring():
    assert isinstance(area, Tool)
    assert area.name == "area"
    assert area.description == "Area of a rectangle."
    schema = area.parameters
    assert schema["type"] == "object"
    assert schema["required"] == ["width"]
    assert schema["properties"]["width"] == {"type": "number"}
    assert schema["properties"]["height"]["default"] == 1.0
    assert schema["properties"]["unit"]["enum"] == ["m", "cm"]
    spec = area.spec()
    assert spec.name == "area" and spec.parameters is schema


def test_valid_arguments_are_coerced_and_defaults_filled():
    assert asyncio.run(area.call('{"width": 2, "height": 3}')) == "6.0 m^2"
    assert asyncio.run(area.call({"width": "2.5"})) == "2.5 m^2"


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ("{}", "width: Field required"),
        ('{"width": "wide"}', "width:"),
        ('{"width": 1, "unit": "km"}', "unit:"),
    ],
)
def test_bad_arguments_raise_argument_error_naming_the_problem(arguments, fragment):
    with pytest.raises(ToolArgumentError) as caught:
        asyncio.run(area.call(arguments))
    assert fragment in caught.value.message
    assert "area" in caught.value.message


def test_context_parameter_is_hidden_from_schema_and_passed_in(tmp_path):
    @tool(name="where", risky=True, needs_approval=True)
    def where_am_i(ctx: ToolContext, suffix: str = "") -> str:
        """Say the run id."""
        return f"{ctx.run_id}{suffix}"

    assert "ctx" not in where_am_i.parameters["properties"]
    assert where_am_i.name == "where" and where_am_i.risky and where_am_i.needs_approval
    assert asyncio.run(where_am_i.call({"suffix": "!"}, ToolContext(run_id="r1"))) == "r1!"


def test_async_tools_and_timeouts():
    @tool(timeout=0.2)
    async def slow(seconds: float) -> str:
        """Sleep."""
        await asyncio.sleep(seconds)
        return "done"

    assert asyncio.run(slow.call({"seconds": 0})) == "done"
    with pytest.raises(ToolError, match="timed out"):
        asyncio.run(slow.call({"seconds": 5}))


def test_tool_errors_are_for_the_model_and_bugs_propagate():
    @tool
    def picky(n: int) -> int:
        """Fail on purpose or by accident."""
        if n == 0:
            raise ToolError("n must not be zero")
        return 10 // (n - 1)

    with pytest.raises(ToolError, match="must not be zero"):
        asyncio.run(picky.call({"n": 0}))
    with pytest.raises(ZeroDivisionError):
        asyncio.run(picky.call({"n": 1}))


def test_inline_tools_run_on_the_event_loop_and_others_in_a_worker_thread():
    @tool(inline=True)
    def where_inline() -> int:
        """Report the thread."""
        return threading.get_ident()

    @tool
    def where_threaded() -> int:
        """Report the thread."""
        return threading.get_ident()

    async def main() -> tuple[int, int, int]:
        loop_thread = threading.get_ident()
        return loop_thread, await where_inline.call("{}"), await where_threaded.call("{}")

    loop_thread, inline_thread, threaded_thread = asyncio.run(main())
    assert inline_thread == loop_thread
    assert threaded_thread != loop_thread
