"""Build ``benchmarks/data/router_questions.jsonl``: the labelled set of ``bench_router.py``.

320 questions, 64 in each of five kinds, every one with an answer that can be checked exactly:

- ``factoid``: capitals and chemical symbols (a table written for this file; common knowledge).
- ``retrieval``: a short passage about an invented place, then a question answered in it.
- ``arithmetic``: word problems from templates with random numbers; the answer is computed.
- ``logic``: orderings of invented people by a comparative (taller, older, ...) and syllogisms;
  the answer follows from the premises.
- ``code``: short Python snippets from templates; the answer is what the snippet prints, found
  by running it here.

Source: written and generated for sovereign (seeded, so rebuilding gives the same file);
licence: Apache-2.0, like the repository. Run ``python benchmarks/make_router_set.py``.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parent / "data" / "router_questions.jsonl"
PER_KIND = 64

CAPITALS = [("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Japan", "Tokyo"),
            ("Egypt", "Cairo"), ("Kenya", "Nairobi"), ("Peru", "Lima"), ("Canada", "Ottawa"), ("Norway", "Oslo"),
            ("Sweden", "Stockholm"), ("Finland", "Helsinki"), ("Greece", "Athens"), ("Poland", "Warsaw"),
            ("Austria", "Vienna"), ("Portugal", "Lisbon"), ("Ireland", "Dublin"), ("Russia", "Moscow"),
            ("China", "Beijing"), ("India", "New Delhi"), ("Thailand", "Bangkok"), ("Vietnam", "Hanoi"),
            ("Argentina", "Buenos Aires"), ("Chile", "Santiago"), ("Cuba", "Havana"), ("Mexico", "Mexico City"),
            ("Denmark", "Copenhagen"), ("Hungary", "Budapest"), ("Belgium", "Brussels"), ("Turkey", "Ankara"),
            ("Iran", "Tehran"), ("Iraq", "Baghdad")]
SYMBOLS = [("gold", "Au"), ("silver", "Ag"), ("iron", "Fe"), ("sodium", "Na"), ("potassium", "K"), ("lead", "Pb"),
           ("copper", "Cu"), ("tin", "Sn"), ("mercury", "Hg"), ("oxygen", "O"), ("hydrogen", "H"), ("carbon", "C"),
           ("nitrogen", "N"), ("helium", "He"), ("neon", "Ne"), ("calcium", "Ca"), ("zinc", "Zn"), ("sulfur", "S"),
           ("chlorine", "Cl"), ("magnesium", "Mg"), ("aluminium", "Al"), ("silicon", "Si"), ("uranium", "U"),
           ("tungsten", "W"), ("platinum", "Pt"), ("nickel", "Ni"), ("lithium", "Li"), ("argon", "Ar"),
           ("fluorine", "F"), ("phosphorus", "P"), ("iodine", "I"), ("cobalt", "Co")]
NAMES = ["Ana", "Ben", "Cleo", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lea", "Max", "Noor", "Otto",
         "Pia", "Quin", "Rosa", "Sam", "Tess"]
PLACES = ["Marlow Creek", "Ostbury", "Fenwick Hollow", "Calder Bay", "Ruskin Vale", "Thornby", "Elmstead", "Brackwater"]
ITEMS = ["apples", "pencils", "stamps", "marbles", "books", "cards", "shells", "coins"]
COMPARATIVES = [("taller", "tallest", "shortest"), ("older", "oldest", "youngest"), ("faster", "fastest", "slowest"),
                ("heavier", "heaviest", "lightest")]


def factoid(rng: random.Random, i: int) -> dict:
    if i % 2 == 0:
        country, capital = CAPITALS[(i // 2) % len(CAPITALS)]
        return {"question": f"What is the capital of {country}? Answer with the city name.", "answer": capital}
    element, symbol = SYMBOLS[(i // 2) % len(SYMBOLS)]
    return {"question": f"What is the chemical symbol for {element}? Answer with the symbol.", "answer": symbol}


def retrieval(rng: random.Random, i: int) -> dict:
    place, mayor, river = rng.choice(PLACES), rng.choice(NAMES), rng.choice(["Alder", "Wren", "Sable", "Mott"])
    people, founded = rng.randint(200, 9000), rng.randint(1700, 1950)
    sport = rng.choice(["rowing", "chess", "cycling", "archery"])
    passage = (f"Passage: {place} is a small town on the river {river}. It was founded in {founded} and today has "
               f"{people} residents. The mayor of {place} is {mayor}, who was elected last spring. Every summer the "
               f"town holds a {sport} festival that draws visitors from the whole region.")
    questions = [(f"Who is the mayor of {place}?", mayor), (f"In what year was {place} founded?", str(founded)),
                 (f"How many residents does {place} have?", str(people)),
                 (f"On which river is {place}?", river), (f"What kind of festival does {place} hold?", sport)]
    question, answer = questions[i % len(questions)]
    return {"question": f"{passage}\n\nAccording to the passage, answer briefly: {question}", "answer": answer}


def arithmetic(rng: random.Random, i: int) -> dict:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    a, b, c, d = rng.randint(3, 20), rng.randint(2, 6), rng.randint(2, 9), rng.randint(1, 5)
    kind = i % 4
    if kind == 0:
        text, answer = (f"{name} has {a} {item}. {name} buys {b} boxes with {c} {item} in each box. How many {item} "
                        f"does {name} have in total?"), a + b * c
    elif kind == 1:
        text, answer = (f"{name} has {a + b * c} {item} and gives {c} {item} to each of {b} friends. How many {item} "
                        f"are left?"), a
    elif kind == 2:
        price, count = rng.randint(2, 12), rng.randint(3, 9)
        text, answer = (f"A notebook costs {price} dollars. {name} buys {count} notebooks and pays with a "
                        f"{price * count + d * 5} dollar bill. How much change does {name} get, in dollars?"), d * 5
    else:
        text, answer = (f"{name} reads {b} pages every day for {c} days, then {d} more pages on the last day. How many "
                        f"pages did {name} read in total?"), b * c + d
    return {"question": text + " Give the final number.", "answer": str(answer)}


def logic(rng: random.Random, i: int) -> dict:
    if i % 2 == 0:
        people = rng.sample(NAMES, 3 + (i // 2) % 2)
        word, most, least = rng.choice(COMPARATIVES)
        facts = [f"{people[k]} is {word} than {people[k + 1]}." for k in range(len(people) - 1)]
        rng.shuffle(facts)
        if rng.random() < 0.5:
            return {"question": " ".join(facts) + f" Who is the {most}? Answer with a name.", "answer": people[0]}
        return {"question": " ".join(facts) + f" Who is the {least}? Answer with a name.", "answer": people[-1]}
    a, b, c = rng.sample(["birds", "fish", "robots", "painters", "doctors", "cats", "teachers"], 3)
    name = rng.choice(NAMES)
    if rng.random() < 0.5:
        return {"question": f"All {a} are {b}. All {b} are {c}. {name} is one of the {a}. Is {name} one of the {c}? "
                            f"Answer yes or no.", "answer": "yes"}
    return {"question": f"All {a} are {b}. No {b} are {c}. {name} is one of the {a}. Is {name} one of the {c}? "
                        f"Answer yes or no.", "answer": "no"}


def code(rng: random.Random, i: int) -> dict:
    x, y, n = rng.randint(2, 9), rng.randint(2, 9), rng.randint(3, 6)
    templates = [
        f"values = [{x}, {y}, {x + y}]\nprint(sum(values) * 2)",
        f"total = 0\nfor k in range({n}):\n    total += k * {x}\nprint(total)",
        f"def f(a, b):\n    return a * b - a\n\nprint(f({x}, {y}))",
        f"word = 'router'\nprint(len(word) + {x})",
        f"items = [k for k in range({n + 4}) if k % 2 == 0]\nprint(len(items))",
        f"a = {x}\nb = {y}\na, b = b, a + b\nprint(a * 10 + b)",
        f"text = 'a-b-c-d'\nparts = text.split('-')\nprint(len(parts) * {x})",
        f"d = {{'x': {x}, 'y': {y}}}\nprint(d['x'] + d['y'] * 2)",
    ]
    snippet = templates[i % len(templates)]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(snippet, {})  # our own template: the answer is what it prints
    return {"question": f"What does this Python code print?\n```python\n{snippet}\n```\nAnswer with the output only.",
            "answer": out.getvalue().strip()}


def build() -> list[dict]:
    rng = random.Random(11)
    rows = []
    for kind, make in (("factoid", factoid), ("retrieval", retrieval), ("arithmetic", arithmetic), ("logic", logic),
                       ("code", code)):
        for i in range(PER_KIND):
            rows.append({"id": f"{kind}-{i:02d}", "kind": kind, **make(rng, i)})
    return rows


if __name__ == "__main__":
    rows = build()
    OUT.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    print(f"wrote {len(rows)} questions to {OUT}")
