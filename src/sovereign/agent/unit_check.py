"""An answer converted out of the unit the task asks for, when the data already had that unit.

Asked "What is the total size in MB of all the files listed in backup.json?" of a file whose
entries hold ``"size_mb": 120``, a small model sums the sizes and divides by 1024 twice "to convert
to MB". ``needless_conversion`` finds a unit the task names that a field of the data read also
names (``size_mb``, ``weight (kg)``, a ``Minutes`` column) while the block that answered
multiplies or divides by a conversion factor.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["NeedlessConversion", "needless_conversion"]

_UNITS = ("kb", "mb", "gb", "tb", "bytes", "ms", "seconds", "minutes", "hours", "days", "km", "kg", "cm", "mm",
          "meters", "metres", "miles", "grams", "liters", "litres", "eur", "usd", "cents")
_FACTORS = frozenset({1000, 1024, 60, 24, 3600, 86400, 1_000_000, 1_048_576, 1e3, 1e6, 1e9, 1_000_000_000})
_UNIT = "(" + "|".join(_UNITS) + ")"
_FIELD = re.compile(r"(?:^|(?<=[,;\t|{\"']))\s?([A-Za-z]\w*?(?:[_-]" + _UNIT + r"|\s?[(\[]" + _UNIT + r"[)\]])|" + _UNIT
                    + r")[\"']?\s*(?:[:,;\t|]|$)", re.IGNORECASE | re.MULTILINE)
"""A field (JSON key, CSV column) that names a unit: ``"size_mb":``, ``cost (EUR),``, ``minutes``."""


@dataclass(frozen=True, slots=True)
class NeedlessConversion:
    unit: str
    """The unit the task asks for and the data already has (as the task writes it)."""
    field: str
    """The data's field that names it (``size_mb``)."""
    factor: str
    """The conversion the answering block applied (``/ 1024``)."""


def needless_conversion(task: str, code: str, material: Iterable[str]) -> NeedlessConversion | None:
    """The unit, field and factor when ``task`` asks in a unit that a field (a JSON key, a CSV
    column) of ``material`` already names and ``code`` multiplies or divides by a conversion
    factor; else None."""
    asked = {m.group(1).lower(): m.group(1) for m in re.finditer(rf"\b{_UNIT}\b", task, re.IGNORECASE)}
    if not asked:
        return None
    factor = _conversion(code)
    if factor is None:
        return None
    for text in material:
        for match in _FIELD.finditer(text):
            unit = (match.group(2) or match.group(3) or match.group(4) or "").lower()
            if unit in asked:
                return NeedlessConversion(unit=asked[unit], field=match.group(1).strip(), factor=factor)
    return None


def _conversion(code: str) -> str | None:
    """The first ``* n`` or ``/ n`` of ``code`` whose ``n`` is a unit conversion factor (1024,
    1000, 60, ...), as written; None when there is none."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if isinstance(node, (ast.BinOp, ast.AugAssign)) and isinstance(node.op, (ast.Mult, ast.Div, ast.FloorDiv)):
            operand = node.right if isinstance(node, ast.BinOp) else node.value
            if isinstance(operand, ast.Constant) and type(operand.value) in (int, float) and operand.value in _FACTORS:
                return f"{'*' if isinstance(node.op, ast.Mult) else '/'} {ast.unparse(operand)}"
    return None
