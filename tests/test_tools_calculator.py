"""The calculator parses with ``ast`` and evaluates only arithmetic: no names, calls or
attributes beyond its whitelist, and no giant numbers."""

from __future__ import annotations

import asyncio
import math

import pytest

from sovereign.tools import ToolError
from sovereign.tools.calculator import calculator_tool, evaluate


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("2 ** 10", 1024),
        ("7 // 2 + 7 % 2", 4),
        ("-3 + +5", 2),
        ("10 / 4", 2.5),
        ("sqrt(16) + abs(-2)", 6.0),
        ("max(1, 5, 3) - min(4, 2)", 3),
        ("round(pi, 3)", 3.142),
        ("floor(e) + ceil(0.2)", 3),
        ("factorial(5)", 120),
        ("1.5e3", 1500.0),
    ],
)
def test_arithmetic(expression, value):
    assert evaluate(expression) == pytest.approx(value)


def test_trigonometry():
    assert evaluate("sin(pi / 2)") == pytest.approx(1.0)
    assert evaluate("log(e ** 2)") == pytest.approx(2.0)
    assert evaluate("atan2(1, 1)") == pytest.approx(math.pi / 4)


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("__import__('os').system('true')", "unsupported syntax"),
        ("__import__('os')", "unknown function"),
        ("().__class__", "unsupported syntax"),
        ("open('/etc/passwd')", "unknown function"),
        ("x + 1", "unknown name"),
        ("'a' * 3", "unsupported syntax"),
        ("[1, 2]", "unsupported syntax"),
        ("lambda: 1", "unsupported syntax"),
        ("1 if 1 else 2", "unsupported syntax"),
        ("sqrt(x=4)", "unsupported syntax"),
        ("1 +", "not a valid expression"),
        ("1 / 0", "division by zero"),
        ("9 ** 9 ** 9", "too large"),
        ("factorial(100000)", "factorial"),
        ("sqrt(-1)", "cannot compute"),
        ("1" * 2000, "longer than"),
    ],
)
def test_refusals(expression, fragment):
    with pytest.raises(ToolError, match=fragment):
        evaluate(expression)


def test_calculator_tool_returns_text_and_errors_for_the_model():
    calc = calculator_tool()
    assert calc.name == "calculator" and not calc.needs_approval
    assert asyncio.run(calc.call({"expression": "6 * 7"})) == "42"
    with pytest.raises(ToolError):
        asyncio.run(calc.call({"expression": "import os"}))
