"""A safe calculator: arithmetic parsed with ``ast`` and evaluated node by node (never ``eval``).

It covers what people ask a calculator: the operators, ``sum``/``mean``/``median``/``min``/
``max`` of a list, ``round``, ``abs``, ``sqrt``, ``pow``, and percentages (``15% of 80``,
``80 * 15%``). Anything else gets an error that says what is supported and points at Python.
"""

from __future__ import annotations

import ast
import math
import operator
import re
import statistics
from collections.abc import Callable
from typing import Any

from sovereign.tools.base import PURE, Tool, ToolError, tool

__all__ = ["evaluate", "calculator_tool"]

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.BitXor: operator.pow,  # people write 2^10 for a power; no one asks a calculator for XOR
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def _numbers(args: list[Any]) -> list[Any]:
    """``f([1, 2, 3])`` and ``f(1, 2, 3)`` alike."""
    values = args[0] if len(args) == 1 and isinstance(args[0], list) else args
    if not values:
        raise ToolError("no numbers given")
    if any(isinstance(v, list) for v in values):
        raise ToolError("nested lists are not supported")
    return values


_AGGREGATES: dict[str, Callable[[list[Any]], Any]] = {
    "sum": lambda v: math.fsum(v) if any(isinstance(x, float) for x in v) else sum(v),
    "mean": statistics.fmean, "avg": statistics.fmean, "average": statistics.fmean,
    "median": statistics.median, "min": min, "max": max,
    "stdev": statistics.stdev, "pstdev": statistics.pstdev, "count": len, "len": len,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs, "round": round, "pow": pow,
    "sqrt": math.sqrt, "exp": math.exp, "log": math.log, "ln": math.log, "log10": math.log10, "log2": math.log2,
    "sin": math.sin, "cos": math.cos, "tan": math.tan, "asin": math.asin, "acos": math.acos,
    "atan": math.atan, "atan2": math.atan2, "floor": math.floor, "ceil": math.ceil,
    "factorial": math.factorial, "hypot": math.hypot, "gcd": math.gcd,
}
_CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau, "inf": math.inf}
_MAX_EXPRESSION = 1000
_MAX_INT_BITS = 4096
_MAX_FACTORIAL = 1000
_MAX_LIST = 10_000
_KNOWN = ", ".join(sorted({*_AGGREGATES, *_FUNCTIONS}))
_PYTHON_HINT = "for anything else (text, files, dates, loops) write Python instead"

# "15% of 80" → "(15/100)*80"; "80 * 15%" → "80 * (15/100)"; "10 % 3" stays a remainder.
_PERCENT_OF = re.compile(r"(\d+(?:\.\d+)?)\s*%\s*of\b", re.IGNORECASE)
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*%(?=\s*(?:$|[)+\-*/,\]]))")


def _rewrite(expression: str) -> str:
    text = expression.strip().rstrip("=").strip()
    text = _PERCENT_OF.sub(r"(\1/100)*", text)
    text = _PERCENT.sub(r"(\1/100)", text)
    return text.replace("×", "*").replace("÷", "/")


def evaluate(expression: str) -> int | float:
    """The value of an arithmetic expression; raises ``ToolError`` on anything else."""
    if len(expression) > _MAX_EXPRESSION:
        raise ToolError(f"expression is longer than {_MAX_EXPRESSION} characters")
    try:
        tree = ast.parse(_rewrite(expression), mode="eval")
    except SyntaxError as exc:
        raise ToolError(f"not a valid expression ({exc.msg}): give one arithmetic expression with numbers, "
                        f"e.g. \"(120 + 80) * 15% \" or \"mean([3, 5, 10])\"; {_PYTHON_HINT}") from exc
    try:
        value = _eval(tree.body)
    except ZeroDivisionError as exc:
        raise ToolError("division by zero") from exc
    except (ValueError, OverflowError, TypeError, statistics.StatisticsError) as exc:
        raise ToolError(f"cannot compute: {exc}") from exc
    if isinstance(value, list):
        raise ToolError("the result is a list, not a number: wrap it in sum(), mean(), min() or max()")
    return value


def _eval(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        raise ToolError(f"unknown name '{node.id}': the calculator takes numbers, not variables — put the "
                        f"values in, e.g. sum([12, 30, 7]); {_PYTHON_HINT}")
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_scalar(_eval(node.operand)))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _scalar(_eval(node.left)), _scalar(_eval(node.right))
        if isinstance(node.op, (ast.Pow, ast.BitXor)):
            _check_power(left, right)
        return _check_size(_BINARY[type(node.op)](left, right))
    if isinstance(node, (ast.List, ast.Tuple)):
        if len(node.elts) > _MAX_LIST:
            raise ToolError(f"lists are limited to {_MAX_LIST} numbers")
        return [_eval(item) for item in node.elts]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        if node.func.id not in _AGGREGATES and node.func.id not in _FUNCTIONS:
            raise ToolError(f"unknown function '{node.func.id}'; the calculator has: {_KNOWN}; {_PYTHON_HINT}")
        return _call(node.func.id, [_eval(arg) for arg in node.args])
    raise ToolError(f"unsupported syntax: {type(node).__name__} (only numbers, + - * / // % ** and the "
                    f"functions {_KNOWN}); {_PYTHON_HINT}")


def _call(name: str, args: list[Any]) -> Any:
    aggregate = _AGGREGATES.get(name)
    if aggregate is not None:
        return _check_size(aggregate(_numbers(args)))
    function = _FUNCTIONS[name]
    args = [_scalar(a) for a in args]
    if function is math.factorial and args and isinstance(args[0], int) and args[0] > _MAX_FACTORIAL:
        raise ToolError(f"factorial argument above {_MAX_FACTORIAL}")
    if function is pow and len(args) >= 2:
        _check_power(args[0], args[1])
    return _check_size(function(*args))


def _scalar(value: Any) -> Any:
    if isinstance(value, list):
        raise ToolError("a list can only go into sum, mean, median, min, max, stdev or count")
    return value


def _check_power(base: Any, exponent: Any) -> None:
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0:
        if abs(base) > 1 and exponent * max(abs(base).bit_length(), 1) > _MAX_INT_BITS:
            raise ToolError("result too large")


def _check_size(value: Any) -> Any:
    if isinstance(value, int) and value.bit_length() > _MAX_INT_BITS:
        raise ToolError("result too large")
    return value


def _format(value: int | float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(round(value, 10)) if isinstance(value, float) else repr(value)


def calculator_tool() -> Tool:
    @tool(effects=PURE, inline=True)  # bounded work (size limits above): no thread hop needed
    def calculator(expression: str) -> str:
        """Evaluate one arithmetic expression with numbers, e.g. "2 * (3 + 4)", "15% of 80", "sum([120, 80, 45])", "mean([3, 5, 10])" or "round(2 / 3, 2)".

        Supports + - * / // % ** (and ^ for power), parentheses, percentages ("15% of 80",
        "80 * 15%"), pi, e, and the functions sum, mean (avg), median, min, max, stdev, count
        (of a list like [1, 2, 3]), abs, round, pow, sqrt, exp, log, log10, log2, sin, cos, tan,
        asin, acos, atan, atan2, floor, ceil, factorial, hypot, gcd.
        """
        return _format(evaluate(expression))

    return calculator
