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
# One pass for words and one for numbers; every cue below is a set lookup or a substring test
# (C speed), so a decision stays in the tens of microseconds.
_WORD = re.compile(r"[a-z]+")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)?")
_SYLLOGISM = re.compile(r"\b(?:all|no|some) \w+ are\b")
_CODE_MARKS = ("```", "def ", "return ", "print(", "for ", "range(", "while ", "console.log", "function ", "=>",
               "lambda ", "import ", "len(", ".split(", "{'", "= [", "#include", "fn ", "let ")
_ARITH_WORDS = frozenset(
    "total sum each per remain remains remaining altogether cost costs spend spent earn earns earned times twice "
    "half percent average fewer buy buys bought sell sells sold pay pays paid split share divide divided multiply "
    "multiplied price priced dollar dollars cents euros minutes hours change".split())
_ARITH_PHRASES = ("how many", "how much", "more than", "less than", "gives away", "left over", "in all")
_LOGIC_WORDS = frozenset(
    "if then all some none every nobody true false implies therefore must cannot either neither nor unless "
    "taller shorter older younger faster slower heavier lighter tallest shortest oldest youngest fastest slowest "
    "heaviest lightest liar liars knight knights knave knaves".split())
_LOGIC_PHRASES = ("no one", "only if", "left of", "right of", "next to", "sits between")
_PASSAGE_MARKS = ("passage", "context:", "according to", "based on the text", "based on the document",
                  "the text above", "read the following", "given the following")
_WH = re.compile(r"^\s*(who|what|when|where|which|name|in which|how tall|how old|what year)\b")


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
    lower = clipped.lower()
    words = _WORD.findall(lower)
    question = lower.strip().rsplit("\n", 1)[-1]
    head = lower[:400]
    return Features(
        chars=context, numbers=len(_NUMBER.findall(clipped)), code=sum(mark in clipped for mark in _CODE_MARKS),
        arithmetic=sum(w in _ARITH_WORDS for w in words) + sum(p in lower for p in _ARITH_PHRASES) + ("$" in clipped),
        logic=(sum(w in _LOGIC_WORDS for w in words) + sum(p in lower for p in _LOGIC_PHRASES)
               + 2 * len(_SYLLOGISM.findall(lower))),
        passage=any(mark in head for mark in _PASSAGE_MARKS) or (len(clipped) > 600 and bool(_WH.search(question))),
        wh_question=bool(_WH.search(lower)), tools=bool(request.tools))


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
