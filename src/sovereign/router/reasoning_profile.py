"""Whether reasoning pays on a given model for a kind of request, as measured, not assumed.

The classifier (``classifier.py``) says where a chain of thought usually pays: arithmetic,
multi-step logic, code reading. Whether it pays on one model is a property of that model. A small
instruct model with no native reasoning, given the thinking scaffold, may gain nothing from it:
on 24 code-reading questions the 0.5B was right 0 times with and without 512 reasoning tokens,
while on logic the same scaffold took it from 12 to 21 of 24. So
``benchmarks/bench_router.py --calibrate`` asks each kind of question plainly and with reasoning
on questions apart from the benchmark's own, and writes ``data/reasoning_profiles.json``,
shipped with the package (``[router] reasoning_profile`` names a file of the same shape whose
entries replace the shipped ones; ``[router] use_reasoning_profiles = false`` turns the profiles
off). The router skips reasoning for a (model, kind) whose accuracy with reasoning was not above
its accuracy without; a model or kind never measured keeps the classifier's effort.

Where a kind was measured on more than one allowed model, with the time each answer took, the
profiles also choose the model (``measured_choice``): of every (model, with or without
reasoning) cell, the quickest whose measured accuracy is not significantly below the best
cell's — below it by at most ``[router] profile_z`` standard errors of the difference of the two
proportions (1.96: not significantly worse at 95%; 0: only the most accurate). That is "cost
last" on measured figures, with the measurement's own noise as the tolerance: on 24 questions a
kind, 83% against 88% is noise, 0% against 25% is not. A bigger model answering plainly can be
both as accurate and quicker than a small one reasoning at length, and the classifier's guess of
the tier gives way to what was measured.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from functools import cache
from importlib.resources import files
from pathlib import Path

from sovereign.errors import ConfigError
from sovereign.kernel.messages import ChatRequest
from sovereign.router.classifier import Difficulty, classify

__all__ = ["KindMeasure", "MeasuredChoice", "load_profiles", "measured_choice", "reasoning_for"]


@dataclass(frozen=True, slots=True)
class KindMeasure:
    """Questions of one kind answered correctly without (``plain``) and with reasoning."""

    questions: int
    plain: int
    thinking: int
    plain_s: float | None = None
    """Mean seconds an answer took without reasoning (None: not measured)."""
    thinking_s: float | None = None
    plain_tokens: float | None = None
    """Mean generated tokens per answer without reasoning."""
    thinking_tokens: float | None = None

    @property
    def pays(self) -> bool:
        return self.thinking > self.plain

    @property
    def timed(self) -> bool:
        return self.plain_s is not None and self.thinking_s is not None


@dataclass(frozen=True, slots=True)
class MeasuredChoice:
    """The cell ``measured_choice`` picked: a model, whether it reasons, and why."""

    model: str
    thinking: bool
    reason: str


Profiles = dict[str, dict[str, KindMeasure]]


def _optional(value) -> float | None:
    return None if value is None else float(value)


def _parse(data: dict) -> Profiles:
    return {model: {kind: KindMeasure(int(m["questions"]), int(m["plain"]), int(m["thinking"]),
                                      *(_optional(m.get(key)) for key in ("plain_s", "thinking_s", "plain_tokens",
                                                                          "thinking_tokens")))
                    for kind, m in entry.get("kinds", {}).items()}
            for model, entry in data.items()}


@cache
def _shipped() -> Profiles:
    return _parse(json.loads(files("sovereign").joinpath("data/reasoning_profiles.json").read_text(encoding="utf-8")))


def load_profiles(extra: Path | str | None = None) -> Profiles:
    """The shipped profiles, with the models of the file ``extra`` (same shape) replacing them."""
    profiles = dict(_shipped())
    if extra:
        try:
            profiles.update(_parse(json.loads(Path(extra).expanduser().read_text(encoding="utf-8"))))
        except OSError as exc:
            raise ConfigError(f"[router] reasoning_profile {extra}: cannot be read ({exc.strerror})") from exc
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"[router] reasoning_profile {extra}: not a profiles file: each model needs "
                              f"'kinds' of {{questions, plain, thinking}} counts ({exc})") from exc
    return profiles


def reasoning_for(request: ChatRequest, model: str, difficulty: Difficulty | None = None,
                  profiles: Profiles | None = None) -> Difficulty:
    """The classifier's decision for ``request``, with reasoning dropped where the profile of
    ``model`` measured that it does not pay for the request's kind."""
    difficulty = difficulty or classify(request)
    if difficulty.budget_tokens == 0:
        return difficulty
    measure = (_shipped() if profiles is None else profiles).get(model, {}).get(difficulty.kind)
    if measure is None or measure.pays:
        return difficulty
    return replace(difficulty, effort="none", budget_tokens=0, reason=(
        f"{difficulty.reason}; reasoning skipped: on {model} it did not pay for {difficulty.kind} "
        f"({measure.thinking}/{measure.questions} right with it, {measure.plain}/{measure.questions} without)"))


def _standard_error(right_a: int, n_a: int, right_b: int, n_b: int) -> float:
    """Standard error, in percentage points, of the difference of two measured accuracies."""
    p_a, p_b = right_a / n_a, right_b / n_b
    return 100 * math.sqrt(p_a * (1 - p_a) / n_a + p_b * (1 - p_b) / n_b)


def measured_choice(kind: str, models: list[str], profiles: Profiles, z: float = 1.96,
                    may_reason: bool = True) -> MeasuredChoice | None:
    """The quickest measured (model, reasoning) cell for ``kind`` among ``models`` whose accuracy
    is below the best cell's by at most ``z`` standard errors; None unless at least two of
    ``models`` were measured, with times, on ``kind`` (one model is ``reasoning_for``'s case).
    ``may_reason=False`` (the classifier gives this kind no reasoning) leaves out reasoning cells."""
    measured = [(name, m) for name in models if (m := profiles.get(name, {}).get(kind)) is not None
                and m.timed and m.questions > 0]
    if len(measured) < 2:
        return None
    cells = [(name, think, m.thinking if think else m.plain, m.thinking_s if think else m.plain_s, m)
             for name, m in measured for think in ((False, True) if may_reason else (False,))]
    best = max(cells, key=lambda cell: (cell[2] / cell[4].questions, -cell[3]))
    best_right, best_n = best[2], best[4].questions

    def close_enough(cell) -> bool:
        gap = 100 * (best_right / best_n - cell[2] / cell[4].questions)
        return gap <= z * _standard_error(best_right, best_n, cell[2], cell[4].questions) + 1e-9

    name, think, right, seconds, measure = min(filter(close_enough, cells), key=lambda cell: cell[3])
    how = "with reasoning" if think else "without reasoning"
    reason = (f"measured on {kind}: {name} {how} was right {right}/{measure.questions} in {seconds:.1f} s an answer, "
              f"the quickest not significantly below the best ({best[0]} "
              f"{'with' if best[1] else 'without'} reasoning, {best_right}/{best_n})")
    return MeasuredChoice(name, think, reason)
