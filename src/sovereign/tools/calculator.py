"""A safe calculator: arithmetic parsed with ``ast`` and evaluated node by node (never ``eval``)."""

from __future__ import annotations

import ast
import math
import operator
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
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs, "round": round, "min": min, "max": max,
    "sqrt": math.sqrt, "exp": math.exp, "log": math.log, "log10": math.log10, "log2": math.log2,
    "sin": math.sin, "cos": math.cos, "tan": math.tan, "asin": math.asin, "acos": math.acos,
    "atan": math.atan, "atan2": math.atan2, "floor": math.floor, "ceil": math.ceil,
    "factorial": math.factorial, "hypot": math.hypot, "gcd": math.gcd,
}
_CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau, "inf": math.inf}
_MAX_EXPRESSION = 1000
_MAX_INT_BITS = 4096
_MAX_FACTORIAL = 1000


def evaluate(expression: str) -> int | float:
    """The value of an arithmetic expression; raises ``ToolError`` on anything else."""
    if len(expression) > _MAX_EXPRESSION:
        raise ToolError(f"expression is longer than {_MAX_EXPRESSION} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise ToolError(f"not a valid expression: {exc.msg}") from exc
    try:
        return _eval(tree.body)
    except ZeroDivisionError as exc:
        raise ToolError("division by zero") from exc
    except (ValueError, OverflowError, TypeError) as exc:
        raise ToolError(f"cannot compute: {exc}") from exc


def _eval(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        raise ToolError(f"unknown name '{node.id}'")
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        return _check_size(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        function = _FUNCTIONS.get(node.func.id)
        if function is None:
            raise ToolError(f"unknown function '{node.func.id}'")
        args = [_eval(arg) for arg in node.args]
        if function is math.factorial and args and isinstance(args[0], int) and args[0] > _MAX_FACTORIAL:
            raise ToolError(f"factorial argument above {_MAX_FACTORIAL}")
        return _check_size(function(*args))
    raise ToolError(f"unsupported syntax: {type(node).__name__}")


def _check_power(base: Any, exponent: Any) -> None:
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0:
        if abs(base) > 1 and exponent * max(abs(base).bit_length(), 1) > _MAX_INT_BITS:
            raise ToolError("result too large")


def _check_size(value: Any) -> Any:
    if isinstance(value, int) and value.bit_length() > _MAX_INT_BITS:
        raise ToolError("result too large")
    return value


def calculator_tool() -> Tool:
    @tool(effects=PURE, inline=True)  # bounded work (size limits above): no thread hop needed
    def calculator(expression: str) -> str:
        """Evaluate an arithmetic expression, e.g. "2 * (3 + 4) ** 2" or "sqrt(2) * pi".

        Supports + - * / // % **, parentheses, pi, e, tau and the functions abs, round, min,
        max, sqrt, exp, log, log10, log2, sin, cos, tan, asin, acos, atan, atan2, floor, ceil,
        factorial, hypot, gcd.
        """
        return repr(evaluate(expression))

    return calculator
