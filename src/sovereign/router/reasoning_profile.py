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
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import cache
from importlib.resources import files
from pathlib import Path

from sovereign.errors import ConfigError
from sovereign.kernel.messages import ChatRequest
from sovereign.router.classifier import Difficulty, classify

__all__ = ["KindMeasure", "load_profiles", "reasoning_for"]


@dataclass(frozen=True, slots=True)
class KindMeasure:
    """Questions of one kind answered correctly without (``plain``) and with reasoning."""

    questions: int
    plain: int
    thinking: int

    @property
    def pays(self) -> bool:
        return self.thinking > self.plain


Profiles = dict[str, dict[str, KindMeasure]]


def _parse(data: dict) -> Profiles:
    return {model: {kind: KindMeasure(int(m["questions"]), int(m["plain"]), int(m["thinking"]))
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
