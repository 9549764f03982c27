"""Does the mean token probability of an answer tell right from wrong? The measurement behind
``[router] min_confidence``.

Each question of ``data/router_questions.jsonl`` (``--offset``/``--per-kind`` pick a slice) is
asked plainly (no reasoning) of an embedded model with ``logprobs``; the answer's geometric mean
token probability (``router.escalation.mean_token_probability``) is set against whether it was
right. Printed: the AUROC (0.5: no signal), and for each threshold how many answers would be
escalated and how many of those were wrong (precision) and how many of all wrong answers they
catch (recall) — per kind and overall.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_confidence.py --offset 8 --per-kind 24 --json OUT.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ensure_weights  # noqa: E402
from bench_router import correct, load_set, request_for  # noqa: E402

from sovereign.config import DEFAULT_MODEL, load_settings  # noqa: E402
from sovereign.kernel.registry import ModelRegistry  # noqa: E402
from sovereign.router.escalation import mean_token_probability  # noqa: E402

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def auroc(scored: list[tuple[float, bool]]) -> float | None:
    """The chance a right answer scores above a wrong one (ties count half)."""
    right = [s for s, ok in scored if ok]
    wrong = [s for s, ok in scored if not ok]
    if not right or not wrong:
        return None
    wins = sum((r > w) + 0.5 * (r == w) for r in right for w in wrong)
    return wins / (len(right) * len(wrong))


def thresholds(scored: list[tuple[float, bool]]) -> list[dict]:
    wrong_total = sum(not ok for _, ok in scored)
    rows = []
    for limit in THRESHOLDS:
        flagged = [ok for score, ok in scored if score < limit]
        caught = sum(not ok for ok in flagged)
        rows.append({"threshold": limit, "escalated": len(flagged), "of": len(scored),
                     "wrong_among_escalated": caught, "wrong_caught_of": wrong_total})
    return rows


async def measure(model, rows: list[dict]) -> list[dict]:
    out = []
    for row in rows:
        request = request_for(row["question"], model.name)
        request.logprobs = True
        reply = await model.complete(request)
        confidence = mean_token_probability(reply)
        ok = correct(row["answer"], reply.message.content or "")
        out.append({"id": row["id"], "kind": row["kind"], "ok": ok, "confidence": confidence,
                    "tokens": reply.usage.completion_tokens})
        print(f"  {row['id']}: {'ok' if ok else 'x '} p={confidence if confidence is not None else float('nan'):.3f}",
              flush=True)
    return out


def report(results: list[dict]) -> dict:
    kinds = sorted({r["kind"] for r in results})
    summary = {}
    for kind in [*kinds, "all"]:
        scored = [(r["confidence"] or 0.0, r["ok"]) for r in results if kind == "all" or r["kind"] == kind]
        summary[kind] = {"questions": len(scored), "right": sum(ok for _, ok in scored), "auroc": auroc(scored),
                         "thresholds": thresholds(scored)}
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--offset", type=int, default=8, help="skip this many questions of each kind")
    parser.add_argument("--per-kind", type=int, default=24)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from sovereign.kernel.llama_backend import LlamaCppModel, LlamaOptions

    by_kind: dict[str, list[dict]] = {}
    for row in load_set():
        by_kind.setdefault(row["kind"], []).append(row)
    rows = [row for kind_rows in by_kind.values() for row in kind_rows[args.offset:args.offset + args.per_kind]]
    spec = ModelRegistry.load(load_settings(Path("/nonexistent-bench-home"))).get(args.model)
    model = LlamaCppModel(spec, ensure_weights(args.model if args.model != DEFAULT_MODEL else None),
                          LlamaOptions(n_ctx=2048))
    model.load()
    try:
        results = asyncio.run(measure(model, rows))
    finally:
        model.close()
    summary = report(results)
    for kind, figures in summary.items():
        auc = figures["auroc"]
        print(f"{kind:<11} right {figures['right']}/{figures['questions']}  AUROC "
              f"{auc:.2f}" if auc is not None else f"{kind:<11} right {figures['right']}/{figures['questions']}  AUROC -")
    print("threshold  escalated  wrong among them  wrong caught")
    for row in summary["all"]["thresholds"]:
        print(f"  < {row['threshold']:.1f}   {row['escalated']:>3}/{row['of']}     {row['wrong_among_escalated']:>3}"
              f"              {row['wrong_among_escalated']}/{row['wrong_caught_of']}")
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "offset": args.offset, "per_kind": args.per_kind,
                                         "summary": summary, "per_question": results}, indent=1))


if __name__ == "__main__":
    main()
