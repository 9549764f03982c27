"""Difficulty, the router's second step: a local, feature-based classifier (no network, no
model; a few regular expressions over the request, well under a millisecond — measured in
``benchmarks/bench_router.py``) that sorts a request into a kind and picks the reasoning effort
and the tier for it.

Reasoning is skipped where it does not pay (EcoThink, 2026: factoid and retrieval questions gain
nothing from a chain of thought) and kept for arithmetic, multi-step logic and code reading:

    kind        effort   tier      why
    factoid     none     small     a fact is recalled, not derived
    retrieval   none     small     the answer is in the passage given
    chat        none     small     conversation
    tools       none     medium    tool use needs the stronger model, not reasoning (Nullclaw)
    code        low      small     reading code: a short trace helps
    arithmetic  low/med  small     numbers to combine; more of them, more budget
    logic       medium   medium    several premises to chain
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sovereign.kernel.messages import REASONING_EFFORT_BUDGET, ChatRequest

__all__ = ["Difficulty", "EFFORT_BUDGET", "classify", "features"]

EFFORT_BUDGET = {"none": 0, "low": REASONING_EFFORT_BUDGET["low"], "medium": 512, "high": REASONING_EFFORT_BUDGET["medium"]}
"""Reasoning tokens per effort on the router's path (small local models: a long chain of thought
mostly repeats itself, so the budgets are tighter than a frontier model's)."""

_CLIP = 6000
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)?")
_CODE = re.compile(r"```|\bdef \w+\(|\breturn\b|\bprint\(|\bfor \w+ in \b|\bwhile \b|\bconsole\.log|\bfunction\b"
                   r"|=>|\bint main\b|\blambda\b|\[\s*\w+\s+for\b|\w+\[\d+\]|\w+\(\w*\)\s*$", re.M)
_ARITH = re.compile(r"\b(how many|how much|total|sum|each|per|remain\w*|left over|altogether|cost\w*|spen[dt]|earn\w*"
                    r"|times|twice|half|percent|average|more than|fewer|less than|buys?|sells?|pays?|gives? away"
                    r"|split|share|divid\w*|multipl\w*|price|dollars?|minutes|hours)\b|[%$€£]", re.I)
_LOGIC = re.compile(r"\b(if|then|all|some|none|every|no one|nobody|true|false|implies|therefore|must|cannot"
                    r"|either|neither|nor|unless|only if|taller|shorter|older|younger|faster|slower|heavier"
                    r"|lighter|left of|right of|sits? (?:next|between)|before|after|liars?|knights?|knaves?)\b", re.I)
_PASSAGE = re.compile(r"\b(passage|context|according to|based on the (?:text|passage|document)|the text above"
                      r"|read the following|given the following)\b", re.I)
_WH = re.compile(r"^\s*(who|what|when|where|which|name|in which|how tall|how old|what year)\b", re.I)


@dataclass(frozen=True, slots=True)
class Difficulty:
    kind: str
    effort: str
    budget_tokens: int
    tier: str
    reason: str


@dataclass(frozen=True, slots=True)
class Features:
    chars: int
    numbers: int
    code: int
    arithmetic: int
    logic: int
    passage: bool
    wh_question: bool
    tools: bool


def features(request: ChatRequest) -> Features:
    """What the classifier looks at: the last user message (clipped) and whether tools are offered."""
    text = next((m.content or "" for m in reversed(request.messages) if m.role == "user"), "")
    context = sum(len(m.content or "") for m in request.messages if m.role != "assistant")
    clipped = text[:_CLIP]
    question = clipped.rsplit("\n", 1)[-1] if "\n" in clipped.strip() else clipped
    return Features(chars=context, numbers=len(_NUMBER.findall(clipped)), code=len(_CODE.findall(clipped)),
                    arithmetic=len(_ARITH.findall(clipped)), logic=len(_LOGIC.findall(clipped)),
                    passage=bool(_PASSAGE.search(clipped[:400])) or (len(clipped) > 600 and bool(_WH.search(question))),
                    wh_question=bool(_WH.search(clipped)), tools=bool(request.tools))


def classify(request: ChatRequest) -> Difficulty:
    """The kind of ``request`` and the effort and tier for it (see the module docstring)."""
    f = features(request)
    if f.tools:
        return _pick("tools", "none", "medium", "tools offered: the tool-use tier answers without reasoning")
    if f.passage:
        return _pick("retrieval", "none", "small", "a passage is given: the answer is read, not derived")
    if f.code >= 2:
        return _pick("code", "low", "small", f"code to read ({f.code} code features): a short trace")
    if f.numbers >= 2 and f.arithmetic >= 1:
        effort = "medium" if f.numbers >= 4 else "low"
        return _pick("arithmetic", effort, "small", f"{f.numbers} numbers to combine")
    if f.logic >= 3 or (f.logic >= 2 and f.chars > 160):
        return _pick("logic", "medium", "medium", f"{f.logic} logical connectives/comparisons: premises to chain")
    if f.wh_question or f.chars < 200:
        return _pick("factoid", "none", "small", "a short question of fact: no reasoning needed")
    return _pick("chat", "none", "small", "conversation: no reasoning needed")


def _pick(kind: str, effort: str, tier: str, reason: str) -> Difficulty:
    return Difficulty(kind, effort, EFFORT_BUDGET[effort], tier, reason)
