"""Difficulty, the router's second step: a local, feature-based classifier (no network, no
model; a handful of compiled regular expressions and set lookups over the request, well under a
millisecond — measured in ``benchmarks/bench_router.py``) that sorts a request into a kind and
picks the reasoning effort and the tier for it.

Reasoning is skipped where it does not pay (EcoThink, 2026: factoid and retrieval questions gain
nothing from a chain of thought) and kept for arithmetic, multi-step logic and code reading:

    kind        effort   tier      why
    factoid     none     small     a fact is recalled, not derived
    retrieval   none     small     the answer is in the text given
    chat        none     small     conversation
    tools       none     medium    tool use needs the stronger model, not reasoning (Nullclaw)
    code        low      small     reading code: a short trace helps
    arithmetic  low/med  small     numbers to combine; more of them, more budget
    logic       medium   medium    several premises to chain

The features are about the shape of a request, not about any one set's wording: the last
user message is split into the question (the last sentence that asks) and the material before
it; then code syntax (calls, indexing, assignments, language names), quantities (digits and
number words) with a question that asks for a quantity or an operation to do, logical structure
(conditionals, quantifiers, comparatives, orderings, kinship, truth-tellers) and given material
(quoted text, a label such as "Passage:" or "the note says", or a few sentences the question
refers back to). The held-out sets in ``benchmarks/data`` measure how far that generalises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sovereign.kernel.messages import REASONING_EFFORT_BUDGET, ChatRequest

__all__ = ["Difficulty", "EFFORT_BUDGET", "Features", "classify", "features"]

EFFORT_BUDGET = {"none": 0, "low": REASONING_EFFORT_BUDGET["low"], "medium": 512, "high": REASONING_EFFORT_BUDGET["medium"]}
"""Reasoning tokens per effort on the router's path (small local models: a long chain of thought
mostly repeats itself, so the budgets are tighter than a frontier model's)."""

_CLIP = 6000
_WORD = re.compile(r"[a-z]+")
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:[.,:]\d+)*")
_NUMBER_WORDS = frozenset("one two three four five six seven eight nine ten eleven twelve twenty thirty forty fifty "
                          "hundred thousand dozen half quarter third double twice triple".split())
_ARITH_WORDS = frozenset(
    "total sum each per remain remains remaining altogether cost costs spend spent earn earns earned save saves "
    "saved buy buys bought sell sells sold pay pays paid split share shares price priced bill wage".split())
# Code: syntax that prose rarely has. Each hit counts once.
_CODE_WORDS = re.compile(r"\b(?:def|return|lambda|import|elif|println!?|printf|console\.log|puts|echo|let|const|val|var"
                   r"|fn|func|int|bool|str|len|range|sizeof|typeof|select|print)\b"
                         r"|\b(?:python|javascript|typescript|rust|java|kotlin|swift|ruby|php|lua|bash|shell|sql|c\+\+|"
                         r"golang)\b|\bgo:|\bc program\b|\bin c\b")
_CODE_SYNTAX = re.compile(r"```|\b\w+\([^()\n]{0,40}\)|\w\[[^\]\s]*\]"
                   r"|\.\w+\(|\d\s*(?://|\*\*|%|==|!=)\s*\d|\w\s*[-+*/%]?=\s*[\w\[\('\"{]|;\s*\w|=>|\{\s*\|?\w|::|\$\(\(|#include|'\w*'(?=\s*[\[.])")
# Arithmetic: the question asks for a quantity, or an operation is asked for.
_QUANTITY_ASK = re.compile(
    r"\bhow (?:many|much|far|long|old|fast|heavy|tall)\b|\b(?:total|sum|average|area|perimeter|percent|speed|"
    r"remain\w*|left|altogether|in all|each pay|new price|the result)\b|%|"
    r"\b(?:what|how much) (?:do|does|did|will) .{0,40}\b(?:cost|pay|earn|weigh|have)\b|\bcost\b")
_OPERATION = re.compile(r"\b(?:subtract|add|multiply|multiplied|divide|divided|double|halve|convert|calculate|compute|"
                        r"plus|minus|times|percent of|of the result|(?:rose|fell|increased|decreased|dropped|grew|"
                        r"raised|cut|reduced|discounted) by)\b|\d\s*[-+*/x×÷^]\s*\d")
# Logic: structure that chains premises.
_LOGIC = re.compile(
    r"\bif\b|\bonly if\b|\bwhenever\b|\beither\b|\bneither\b|\bnot both\b|\bunless\b|\bimplies\b|\btherefore\b|"
    r"\bdoes it follow\b|\bmust\b|\b(?:all|every|no|none of the|some|only)\b [\w' ]{0,30}\b(?:are|is|can|may|have|has)\b|"
    r"\b\w+er than\b|\b(?:more|less|fewer) than\b|\b(?:before|after|behind|between|in front of|above|below)\b|"
    r"\b(?:left|right|north|south|east|west) of\b|\b(?:beat|beats|ranks?|outranks?)\b|"
    r"\b(?:liar|lies|knights?|knaves?|truth|guilty|always|never)\b|\bnot\b|n't\b|\bcannot\b|\byes or no\b|"
    r"\b(?:mother|father|brother|sister|sibling|son|daughter|uncle|aunt|niece|nephew|cousin|grand\w+)'?s?\b")
_LOGIC_ASK = re.compile(r"\b(?:who|which|what)\b.{0,40}\b(?:\w+est|most|least|first|last|middle|second|third)\b|"
                        r"^\s*(?:is|are|was|were|did|does|do|can|could|must|may)\b|\byes or no\b|"
                        r",\s*(?:then\s+|so\s+)?(?:is|are|was|were|does|do|can|must)\b|"
                        r"\bwhat (?:is|are) \w+ to \w+\b|\bwhat are those\b|\bwhich day\b|\bwhere is the\b|"
                        r"\bwhat (?:does|do) \w+ like\b|\bwhat colou?r\b|\bwho told\b|\bwhat is in\b")
# Retrieval: material given to read.
_PASSAGE_MARKS = ("passage", "context:", "according to", "based on the text", "based on the document",
                  "the text above", "read the following", "given the following", "use only this")
_GIVEN = re.compile(
    r"\b(?:says|said|reads|read|wrote|writes|states|mentions)\s*[:\"'\u201c]|\b(?:it|sign|note|label|card|letter|"
    r"message|email|notice|minutes|plaque|leaflet|document|manual|contract|article|record|text|booking|log)\s+"
    r"(?:says|said|reads|states|stated|mentions|wrote)\b|"
    r"\b(?:label|sign|notice|note|memo|message|email|e-mail|letter|excerpt|extract|snippet|summary|article|review|"
    r"receipt|invoice|ticket|log|minutes|manual|leaflet|plaque|timetable|transcript|document|record|booking|"
    r"contract|agreement|faq|wiki|story|novel|quote|list|card|bulletin|report|ad|thread|paragraph|entry)\b"
    r"(?:\s*[:\-\"'\u201c]|\s+(?:below|above))|\bin the (?:story|article|text|email|message|letter|minutes|"
    r"thread|document|report|book|novel)\b|\b(?:below|above)\b|\b(?:this|the following|here is|here's)\b.{0,30}:|"
    r"^\s*\w[\w ]{0,30}:\s|"
    r"[\"\u201c][^\"\u201d]{40,}[\"\u201d]|'[^']{40,}'", re.MULTILINE)
_SENTENCE = re.compile(r"[.!?](?:\s|$)|\n")
_WH = re.compile(r"\b(?:who|what|when|where|which|whom|whose|why|name|tell me|do you know|how)\b")


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
    operations: int
    logic: int
    logic_ask: bool
    passage: bool
    given: bool
    context_sentences: int
    wh_question: bool
    tools: bool


def _split(text: str) -> tuple[str, str]:
    """``(material, question)``: the question is the last sentence with a question mark (else
    the last sentence); the material is everything else."""
    mark = text.rfind("?")
    if mark < 0:
        cut = max(text.rstrip().rstrip(".!").rfind(c) for c in ".\n!")
        return (text[:cut + 1], text[cut + 1:]) if cut > 0 else ("", text)
    start = max(text.rfind(c, 0, mark) for c in ".\n!:")
    return text[:start + 1] + text[mark + 1:], text[start + 1:mark + 1]


def _message(request: ChatRequest) -> tuple[str, str, int]:
    """The last user message (clipped), its lower-case form, and the size of the whole context."""
    text = next((m.content or "" for m in reversed(request.messages) if m.role == "user"), "")
    context = sum(len(m.content or "") for m in request.messages if m.role != "assistant")
    clipped = text[:_CLIP]
    return clipped, clipped.lower(), context


def _code(lower: str) -> int:
    return len(_CODE_WORDS.findall(lower)) + len(_CODE_SYNTAX.findall(lower))


def _quantities(lower: str, question: str) -> tuple[int, int, int]:
    """``(numbers, operations, arithmetic score)``."""
    words = _WORD.findall(lower)
    numbers = len(_NUMBER.findall(lower)) + sum(w in _NUMBER_WORDS for w in words)
    operations = len(_OPERATION.findall(lower))
    arithmetic = 2 * bool(_QUANTITY_ASK.search(question)) + 2 * operations + min(2, sum(w in _ARITH_WORDS for w in words))
    return numbers, operations, arithmetic


def _given(lower: str, material: str) -> bool:
    return len(material.strip()) >= 60 and bool(_GIVEN.search(lower))


def features(request: ChatRequest) -> Features:
    """Everything the classifier can look at (``classify`` computes only what its decision needs)."""
    clipped, lower, context = _message(request)
    material, question = _split(lower)
    numbers, operations, arithmetic = _quantities(lower, question)
    return Features(
        chars=context, numbers=numbers, code=_code(lower), arithmetic=arithmetic, operations=operations,
        logic=len(_LOGIC.findall(lower)), logic_ask=bool(_LOGIC_ASK.search(question.strip())),
        passage=any(mark in lower[:400] for mark in _PASSAGE_MARKS), given=_given(lower, material),
        context_sentences=len(_SENTENCE.findall(material.strip())), wh_question=bool(_WH.search(question)),
        tools=bool(request.tools))


def classify(request: ChatRequest) -> Difficulty:
    """The kind of ``request`` and the effort and tier for it (see the module docstring). The
    features are computed in the order of the checks, each only when the decision gets to it."""
    if request.tools:
        return _pick("tools", "none", "medium", "tools offered: the tool-use tier answers without reasoning")
    _, lower, context = _message(request)
    if any(mark in lower[:400] for mark in _PASSAGE_MARKS):
        return _pick("retrieval", "none", "small", "a passage is given: the answer is read, not derived")
    code = _code(lower)
    if code >= 3:
        return _pick("code", "low", "small", f"code to read ({code} code features): a short trace")
    material, question = _split(lower)
    numbers, operations, arithmetic = _quantities(lower, question)
    given: bool | None = None
    if numbers >= 2 and arithmetic >= 2 or numbers >= 1 and arithmetic >= 3:
        given = _given(lower, material)
        if operations or not given:  # figures in given material are read, unless worked on
            effort = "medium" if numbers >= 4 else "low"
            return _pick("arithmetic", effort, "small", f"{numbers} quantities and a calculation asked for")
    sentences = len(_SENTENCE.findall(material.strip()))
    logic = len(_LOGIC.findall(lower))
    if logic >= 2 and (sentences >= 2 or _LOGIC_ASK.search(question.strip())):
        given = _given(lower, material) if given is None else given
        if logic >= 3 or not given:
            return _pick("logic", "medium", "medium", f"{logic} logical relations between premises: a chain to follow")
    given = _given(lower, material) if given is None else given
    wh_question = bool(_WH.search(question))
    if given or sentences >= 3 and wh_question:
        return _pick("retrieval", "none", "small", "material is given: the answer is read, not derived")
    if wh_question or context < 200:
        return _pick("factoid", "none", "small", "a short question of fact: no reasoning needed")
    return _pick("chat", "none", "small", "conversation: no reasoning needed")


def _pick(kind: str, effort: str, tier: str, reason: str) -> Difficulty:
    return Difficulty(kind, effort, EFFORT_BUDGET[effort], tier, reason)
