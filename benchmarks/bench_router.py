"""Router vs always-thinking vs never-thinking on the embedded model, on the labelled set.

The set (``data/router_questions.jsonl``, built by ``make_router_set.py``: 320 questions, five
kinds) is answered three ways by the same model, question by question:

- ``never``: instant mode, no reasoning;
- ``always``: thinking on every question, with the reasoning budget ``--always-budget``;
- ``router``: the router decides per question as ``model: "auto"`` does (``choose_route``: the
  classifier's effort and budget, ``router/classifier.py``, and the measured reasoning profiles,
  ``router/reasoning_profile.py``). With ``--model`` alone tier routing is off (one model), so the
  figures show what skipping unneeded reasoning saves; with ``--router-models a,b`` the router
  also picks the model (never and always stay on ``--model``, the default chat model).

Reported per mode: generated tokens (answer + reasoning), wall time, an energy estimate (compute
time x ``--watts``; no RAPL counters on the benchmark box), accuracy; then router vs always:
token and time savings and the accuracy difference with a paired bootstrap 95% confidence
interval (same questions, resampled together). Also: the classifier's decision time over the
whole set (p50 / p99, microseconds) and how its kinds and its instant/thinking decisions match
the labels — on the 320-question set (in-sample: the classifier was built against it) and on the
held-out sets ``data/router_heldout.jsonl`` (A, 125 questions: used while the classifier was
reworked, so no longer blind) and ``data/router_heldout_b.jsonl`` (B, 100 questions: measured
once, after the classifier was frozen). Both were written by hand for sovereign (Apache-2.0), in
phrasings and formats that ``make_router_set.py``'s templates do not produce.

Fairness of the model run: the three modes run question by question, in an order that rotates
with the question (never/always/router, then always/router/never, ...), so no mode always
follows another whose prompt it could reuse from the KV cache; ``--cold`` also drops the KV
cache before every request. Each answered question is written to ``OUT.partial.json`` at once;
the same command started again resumes from it (a question cut mid-way is asked again).

    PYTHONPATH=src python benchmarks/bench_router.py --per-kind 8 --json OUT.json   # 40 questions
    PYTHONPATH=src python benchmarks/bench_router.py --decisions-only      # p99 and held-out accuracy
    PYTHONPATH=src python benchmarks/bench_router.py --summarise OUT.partial.json  # a run cut short
    PYTHONPATH=src python benchmarks/bench_router.py --calibrate src/sovereign/data/reasoning_profiles.json \
        --model MODEL --offset 8 --per-kind 24      # a model's profile, on questions the run above skips
    PYTHONPATH=src python benchmarks/bench_router.py --per-kind 8 --router-models SMALL,BIG --json OUT.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ensure_weights  # noqa: E402

from sovereign.config import DEFAULT_MODEL, load_settings  # noqa: E402
from sovereign.kernel.messages import ChatRequest, Message, Thinking  # noqa: E402
from sovereign.kernel.registry import ModelRegistry  # noqa: E402
from sovereign.router.classifier import classify  # noqa: E402
from sovereign.router.reasoning_profile import load_profiles  # noqa: E402
from sovereign.router.router import choose_route  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
SET = DATA / "router_questions.jsonl"
HELD_OUT = {"heldout-A": DATA / "router_heldout.jsonl", "heldout-B": DATA / "router_heldout_b.jsonl"}
MODES = ("never", "always", "router")
THINKING_KINDS = frozenset({"arithmetic", "logic", "code"})
"""The kinds where reasoning is expected to pay (the instant/thinking decision's label)."""


def load_set(path: Path = SET) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def accuracy(rows: list[dict]) -> dict:
    """How the classifier's kinds and its instant/thinking decisions match the labels of ``rows``."""
    confusion: dict[str, dict[str, int]] = {}
    kinds = decisions_ok = 0
    for row in rows:
        decided = classify(request_for(row["question"]))
        confusion.setdefault(row["kind"], {}).setdefault(decided.kind, 0)
        confusion[row["kind"]][decided.kind] += 1
        kinds += decided.kind == row["kind"]
        decisions_ok += (decided.budget_tokens > 0) == (row["kind"] in THINKING_KINDS)
    return {"questions": len(rows), "kind_correct": kinds, "decision_correct": decisions_ok, "kinds": confusion}


def correct(answer: str, reply: str) -> bool:
    """The expected answer appears in the reply as a whole word/number (case-insensitive)."""
    return re.search(rf"(?<![\w.]){re.escape(answer.lower())}(?![\w]|\.\d)", reply.lower()) is not None


def request_for(question: str, model: str = DEFAULT_MODEL) -> ChatRequest:
    return ChatRequest(model=model, messages=[Message(role="user", content=question)], temperature=0,
                       max_tokens=48, seed=1)


def decisions(rows: list[dict], repeats: int) -> dict:
    """Decision time of the classifier over ``rows`` (``repeats`` passes), and its accuracy on the
    in-sample set and on each held-out set."""
    requests = [request_for(r["question"]) for r in rows]
    times, cpu = [], []
    for _ in range(repeats):
        for request in requests:
            started, started_cpu = time.perf_counter_ns(), time.thread_time_ns()
            classify(request)
            cpu.append((time.thread_time_ns() - started_cpu) / 1000)
            times.append((time.perf_counter_ns() - started) / 1000)
    times.sort()
    cpu.sort()
    # Wall time includes being descheduled on a loaded box; thread CPU time is the decision's own work.
    return {"decisions": len(times), "p50_us": times[len(times) // 2], "p99_us": times[int(len(times) * 0.99)],
            "max_us": times[-1], "cpu_p50_us": cpu[len(cpu) // 2], "cpu_p99_us": cpu[int(len(cpu) * 0.99)],
            "in_sample": accuracy(load_set()), **{name: accuracy(load_set(path)) for name, path in HELD_OUT.items()}}


def thinking_for(mode: str, question: str, always_budget: int, model: str, route: Route) -> tuple[str, Thinking]:
    """The model and reasoning setting for ``question`` in ``mode``: never and always on ``model``;
    the router's own choice (``choose_route``, as ``model: "auto"`` decides) over ``route``'s models."""
    if mode == "never":
        return model, Thinking(False)
    if mode == "always":
        return model, Thinking(True, always_budget)
    ordered, difficulty = choose_route(request_for(question, model), route.specs, route.profiles, route.z)
    return ordered[0].name, Thinking(difficulty.budget_tokens > 0, difficulty.budget_tokens or None)


@dataclass
class Route:
    """What the router mode routes over: the models (specs, in the registry's terms), the
    measured profiles and ``[router] profile_z``."""

    specs: list
    profiles: dict = field(default_factory=load_profiles)
    z: float = 1.96


def write_profile(path: Path, model: str, results: dict[str, list[dict]], args) -> None:
    """Merge per-kind never/always accuracy on ``model`` into the profile file at ``path``."""
    measures: dict[str, dict] = {}
    for mode, key in (("never", "plain"), ("always", "thinking")):
        for row in results[mode]:
            cell = measures.setdefault(row["kind"], {"questions": 0, "plain": 0, "thinking": 0})
            cell[key] += row["ok"]
            cell["questions"] += mode == "never"
        for kind, cell in measures.items():  # what an answer costs: mean seconds and generated tokens
            rows = [row for row in results[mode] if row["kind"] == kind]
            cell[f"{key}_s"] = round(statistics.mean(row["wall_s"] for row in rows), 3)
            cell[f"{key}_tokens"] = round(statistics.mean(row["tokens"] for row in rows), 1)
    profiles = json.loads(path.read_text()) if path.exists() else {}
    profiles[model] = {"measured": time.strftime("%Y-%m-%d"), "set": SET.name,
                       "questions": f"{args.offset}..{args.offset + args.per_kind - 1} of each kind",
                       "reasoning_budget": args.always_budget, "kinds": measures}
    path.write_text(json.dumps(profiles, indent=1, sort_keys=True) + "\n")
    print(json.dumps(profiles[model], indent=1))


def mode_order(index: int, modes: tuple[str, ...] = MODES) -> tuple[str, ...]:
    """The modes for question ``index``, rotated so each mode runs first, second and third equally often."""
    shift = index % len(modes)
    return modes[shift:] + modes[:shift]


def resume_from(partial: Path | None, rows: list[dict], modes: tuple[str, ...] = MODES) -> dict[str, list[dict]]:
    """The per-question results already in ``partial`` for questions answered in every mode (a
    question cut mid-way is dropped, to be asked again); empty lists when there is none."""
    results: dict[str, list[dict]] = {mode: [] for mode in modes}
    if partial is None or not partial.exists():
        return results
    stored = json.loads(partial.read_text())
    done = set.intersection(*({r["id"] for r in stored.get(mode, [])} for mode in modes))
    wanted = {row["id"] for row in rows}
    for mode in modes:
        results[mode] = [r for r in stored.get(mode, []) if r["id"] in done and r["id"] in wanted]
    return results


async def answer_all(model, others: dict, route: Route, rows: list[dict], always_budget: int,
                     partial: Path | None = None, cold: bool = False,
                     modes: tuple[str, ...] = MODES) -> dict[str, list[dict]]:
    """Each question in each mode, question by question (load drift hits all modes), in a rotating
    mode order; resumes from ``partial`` and writes it after every question. ``model`` answers
    never and always; the router mode's choice among ``route``'s models is ``model`` or one of
    ``others`` (by name)."""
    results = resume_from(partial, rows, modes)
    done = {r["id"] for r in results[modes[-1]]}
    if done:
        print(f"  resuming: {len(done)} questions already answered in {partial}", flush=True)
    for index, row in enumerate(rows):
        if row["id"] in done:
            continue
        order = mode_order(index, modes)
        for mode in order:
            name, thinking = thinking_for(mode, row["question"], always_budget, model.name, route)
            serving = model if name == model.name else others[name]
            request = request_for(row["question"], name)
            request.thinking = thinking
            if cold:
                serving._llm.reset()  # no KV prefix from the previous request
            started = time.perf_counter()
            reply = await serving.complete(request)
            wall = time.perf_counter() - started
            results[mode].append({"id": row["id"], "kind": row["kind"], "ok": correct(row["answer"], reply.message.content or ""),
                                  "tokens": reply.usage.completion_tokens, "reasoning": reply.usage.reasoning_tokens,
                                  "wall_s": wall, "think": request.thinking.enabled, "position": order.index(mode),
                                  "model": name})
        print(f"  {row['id']}: " + " ".join(f"{m}={'ok' if results[m][-1]['ok'] else 'x'}/{results[m][-1]['tokens']}t/"
                                           f"{results[m][-1]['wall_s']:.1f}s" for m in modes), flush=True)
        if partial is not None:  # a run cut short still leaves every answered question
            partial.write_text(json.dumps(results))
    return results


def bootstrap_diff(a: list[bool], b: list[bool], samples: int = 10000, seed: int = 7) -> tuple[float, float, float]:
    """Accuracy of ``a`` minus ``b`` (percentage points) with a paired bootstrap 95% interval."""
    rng = random.Random(seed)
    n = len(a)
    diffs = []
    for _ in range(samples):
        idx = [rng.randrange(n) for _ in range(n)]
        diffs.append(100 * sum(a[i] - b[i] for i in idx) / n)
    diffs.sort()
    return 100 * sum(x - y for x, y in zip(a, b)) / n, diffs[int(samples * 0.025)], diffs[int(samples * 0.975)]


def summarise(results: dict[str, list[dict]], watts: float) -> dict:
    out = {}
    for mode, rows in results.items():
        wall = sum(r["wall_s"] for r in rows)
        out[mode] = {"questions": len(rows), "accuracy_pct": 100 * sum(r["ok"] for r in rows) / len(rows),
                     "generated_tokens": sum(r["tokens"] for r in rows),
                     "reasoning_tokens": sum(r["reasoning"] for r in rows), "wall_s": wall,
                     "energy_wh": wall * watts / 3600, "thought_on": sum(r["think"] for r in rows)}
    router, always = out["router"], out["always"]
    diff, low, high = bootstrap_diff([r["ok"] for r in results["router"]], [r["ok"] for r in results["always"]])
    out["router_vs_always"] = {
        "fewer_tokens_pct": 100 * (1 - router["generated_tokens"] / max(1, always["generated_tokens"])),
        "less_time_pct": 100 * (1 - router["wall_s"] / always["wall_s"]),
        "accuracy_diff_pts": diff, "ci95_pts": [low, high]}
    return out


def table(summary: dict) -> str:
    """The summary as a markdown table, with router vs always and its paired bootstrap interval."""
    lines = ["| mode | correct | accuracy | generated tokens (reasoning) | thought on | wall | energy est. |",
             "|---|---|---|---|---|---|---|"]
    for mode in MODES:
        m = summary[mode]
        lines.append(f"| {mode} | {round(m['accuracy_pct'] * m['questions'] / 100)}/{m['questions']} | "
                     f"{m['accuracy_pct']:.1f}% | {m['generated_tokens']:,} ({m['reasoning_tokens']:,}) | "
                     f"{m['thought_on']} | {m['wall_s']:.0f} s | {m['energy_wh']:.2f} Wh |")
    v = summary["router_vs_always"]
    lines.append(f"\nrouter vs always: {v['fewer_tokens_pct']:.1f}% fewer generated tokens, {v['less_time_pct']:.1f}% "
                 f"less wall time, accuracy {v['accuracy_diff_pts']:+.1f} points (paired bootstrap 95% CI "
                 f"[{v['ci95_pts'][0]:+.1f}, {v['ci95_pts'][1]:+.1f}])")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-kind", type=int, default=4, help="questions per kind for the model run")
    parser.add_argument("--always-budget", type=int, default=512, help="reasoning tokens in always-thinking mode")
    parser.add_argument("--watts", type=float, default=65.0, help="power figure for the energy estimate")
    parser.add_argument("--repeats", type=int, default=20, help="passes over the set for decision timing")
    parser.add_argument("--decisions-only", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--summarise", type=Path, help="only summarise a (partial) per-question results file")
    parser.add_argument("--limit", type=int, default=None, help="only the first N questions of the subset (a smoke run)")
    parser.add_argument("--cold", action="store_true", help="drop the KV cache before every request")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="the embedded model to run (a catalogue name)")
    parser.add_argument("--offset", type=int, default=0, help="skip this many questions of each kind")
    parser.add_argument("--router-models", default="",
                        help="comma-separated models the router mode routes over (default: --model alone; never and "
                             "always run on --model)")
    parser.add_argument("--profiles", default=None, help="a profiles file over the shipped ones (as [router] "
                                                         "reasoning_profile)")
    parser.add_argument("--z", type=float, default=1.96, help="[router] profile_z")
    parser.add_argument("--calibrate", type=Path,
                        help="measure never vs always only, per kind, and merge the result into this profile file "
                             "(the router's shipped one: src/sovereign/data/reasoning_profiles.json)")
    args = parser.parse_args()
    if args.summarise:
        results = resume_from(args.summarise, load_set())
        summary = summarise(results, args.watts)
        print(json.dumps({"questions": len(results["router"]), **summary}, indent=1))
        print(table(summary))
        return
    rows = load_set()
    every = rows + [row for path in HELD_OUT.values() for row in load_set(path)]  # timing over all 545
    report: dict = {"set_size": len(rows), "classifier": decisions(every, args.repeats)}
    print(json.dumps(report["classifier"], indent=1))
    if not args.decisions_only:
        from sovereign.kernel.llama_backend import LlamaCppModel, LlamaOptions

        kinds = ("factoid", "retrieval", "arithmetic", "logic", "code")
        by_kind = {kind: [q for q in rows if q["kind"] == kind] for kind in kinds}
        # round-robin: a cut run stays balanced
        subset = [by_kind[kind][i] for i in range(args.offset, args.offset + args.per_kind) for kind in kinds]
        subset = subset[:args.limit] if args.limit else subset
        registry = ModelRegistry.load(load_settings(Path("/nonexistent-bench-home")))

        def loaded(name: str) -> LlamaCppModel:
            model = LlamaCppModel(registry.get(name), ensure_weights(name), LlamaOptions(n_ctx=2048, n_threads=args.threads))
            model.load()
            asyncio.run(model.complete(request_for("Say OK.", name)))  # warm-up, untimed: one-off setup
            return model

        spec = registry.get(args.model)
        model = loaded(args.model)
        routed = [name for name in (args.router_models.split(",") if args.router_models else [args.model]) if name]
        others = {name: loaded(name) for name in routed if name != args.model}
        route = Route([registry.get(name) for name in routed], load_profiles(args.profiles), args.z)
        modes = ("never", "always") if args.calibrate else MODES
        try:
            partial = args.json.with_suffix(".partial.json") if args.json else None
            results = asyncio.run(answer_all(model, others, route, subset, args.always_budget, partial, args.cold, modes))
        finally:
            for each in (model, *others.values()):
                each.close()
        if args.calibrate:
            write_profile(args.calibrate, spec.name, results, args)
            return
        report["subset"] = len(subset)
        report["modes"] = summarise(results, args.watts)
        report["per_question"] = results
        print(json.dumps(report["modes"], indent=1))
        print(table(report["modes"]))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
