"""The calculator parses with ``ast`` and evaluates only arithmetic: no names, calls or
attributes beyond its whitelist, and no giant numbers. It covers what people ask (sums, means,
percentages) and its errors say what it supports and point at Python."""

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
        ("sum([120, 80, 45, 57])", 302),
        ("sum(1, 2, 3.5)", 6.5),
        ("mean([2, 4, 9])", 5),
        ("avg([1, 2])", 1.5),
        ("average([10, 20, 30, 40])", 25),
        ("median([5, 1, 3])", 3),
        ("max([3, 9, 4]) - min([3, 9, 4])", 6),
        ("count([3, 9, 4])", 3),
        ("round(sum([0.1, 0.2]), 2)", 0.3),
        ("pow(2, 8)", 256),
        ("2^10", 1024),
        ("15% of 80", 12),
        ("80 * 15%", 12),
        ("12.5 % of 200", 25),
        ("(45 / 60) * 100", 75),
        ("10 % 3", 1),
        ("7 × 6 =", 42),
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
        ("x + 1", "unknown name 'x'.*write Python"),
        ("what percent is 20 of 80", "not a valid expression.*write Python"),
        ("'a' * 3", "unsupported syntax"),
        ("[1, 2]", "result is a list"),
        ("sqrt([4])", "list can only go into"),
        ("sum([])", "no numbers"),
        ("foo(3)", "unknown function 'foo'; the calculator has: .*mean"),
        ("lambda: 1", "unsupported syntax"),
        ("1 if 1 else 2", "unsupported syntax"),
        ("sqrt(x=4)", "unsupported syntax"),
        ("1 +", "not a valid expression"),
        ("1 / 0", "division by zero"),
        ("9 ** 9 ** 9", "too large"),
        ("pow(9, 99999)", "too large"),
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
    assert asyncio.run(calc.call({"expression": "sum([0.1, 0.2])"})) == "0.3"
    assert asyncio.run(calc.call({"expression": "mean([1, 2, 3, 4])"})) == "2.5"
    assert "sum" in calc.description and "15% of 80" in calc.description
    with pytest.raises(ToolError):
        asyncio.run(calc.call({"expression": "import os"}))
