"""Memory and knowledge benchmark: search latency at scale, recall@5, ingest throughput, write-back.

Peer: plain BM25 (FTS5 over the same keyed terms, no vectors) is run side by side with the hybrid
search on the labelled set, and the ratio printed.

    .venv/bin/python benchmarks/bench_memory.py --items 100000 [--real-model]

Latency: ``--reps`` repetitions over the labelled queries, each giving a p50 and p95; the medians
over repetitions are reported, for search including the query embedding (embedding cache cleared
before each search), search excluding it (the query's vector already cached), the embedding
alone, BM25 alone and the exact vector search alone. Index load is timed on a second store opened
on the same database (as after a restart): decrypting every vector into the in-memory index.

Filler memories: ``--unique`` distinct sentences are generated and embedded with the real model,
then each is reused with a distinct suffix and a little Gaussian noise on its vector (renormalised)
to reach ``--items`` rows — realistic vectors and terms without embedding 100,000 texts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from sovereign.memory import Embedder, MemoryStore
from sovereign.store import Database

HERE = Path(__file__).parent
REPO = HERE.parent
SUBJECTS = ["the user", "the team", "the build", "the server", "the client", "our project", "the report", "the budget",
            "the meeting", "the release", "the database", "the invoice", "the garden", "the car", "the recipe"]
VERBS = ["needs", "prefers", "uses", "mentions", "avoids", "requires", "tracks", "schedules", "reviews", "stores"]
OBJECTS = ["weekly backups", "blue folders", "a quiet room", "port 8080", "the staging cluster", "fresh basil",
           "oat milk", "a new invoice template", "the Friday deadline", "rust-proof paint", "two-factor login",
           "a larger screen", "the red notebook", "strict typing", "early mornings", "the night train", "winter tyres"]


def filler(count: int, rng: random.Random) -> list[str]:
    return [f"{rng.choice(SUBJECTS).capitalize()} {rng.choice(VERBS)} {rng.choice(OBJECTS)} "
            f"for task {rng.randint(1, 5000)}." for _ in range(count)]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def _timed(fn, queries: list[str], before=None) -> list[float]:
    out = []
    for query in queries:
        if before is not None:
            before()
        t0 = time.perf_counter()
        fn(query)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def bench_memory(items: int, unique: int, embedder: Embedder, root: Path, reps: int) -> dict:
    rng = random.Random(7)
    labelled = json.loads((HERE / "data" / "memory" / "facts.json").read_text())["items"]
    db = Database(root / "memory.db")
    store = MemoryStore(db, b"k" * 32, embedder)
    base = filler(unique, rng)
    t0 = time.perf_counter()
    base_vectors = embedder.encode(base)
    embed_rate = unique / (time.perf_counter() - t0)
    n_fill = items - len(labelled)
    picks = np.array([i % unique for i in range(n_fill)])
    noise = np.random.default_rng(7).normal(0, 0.02, (n_fill, embedder.dim)).astype(np.float32)
    vectors = base_vectors[picks] + noise
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    texts = [f"{base[p][:-1]} (note {i})." for i, p in enumerate(picks.tolist())]
    t0 = time.perf_counter()
    store.import_items("bench", texts, vectors=vectors)
    store.import_items("bench", [f["fact"] for f in labelled])
    import_rate = items / (time.perf_counter() - t0)
    store = MemoryStore(db, b"k" * 32, embedder)  # as after a restart: the index is not loaded yet
    t0 = time.perf_counter()
    store.search("bench", "warm up")  # builds the index (decrypts every vector)
    index_load = time.perf_counter() - t0
    queries = [f["query"] for f in labelled]
    hits = sum(any(h.item.content == f["fact"] for h in store.search("bench", f["query"], k=5)) for f in labelled)
    keyword_hits = 0
    for f in labelled:
        ns = store._keyword(f["query"], store._scopes("bench", None))[:5]
        keyword_hits += any(store._row_item(r).content == f["fact"] for r in store._rows(ns).values())
    runs: dict[str, list[tuple[float, float]]] = {"incl": [], "excl": [], "embed": [], "bm25": [], "vector": []}
    for _ in range(reps):
        measured = {
            "incl": _timed(lambda q: store.search("bench", q, k=5), queries, before=embedder.clear_cache),
            "excl": _timed(lambda q: store.search("bench", q, k=5), [embedder.encode_one(q) is not None and q
                                                                      for q in queries]),  # vectors cached first
            "embed": _timed(embedder.encode_one, queries, before=embedder.clear_cache),
            "bm25": _timed(lambda q: store._keyword(q, store._scopes("bench", None)), queries),
            "vector": _timed(lambda q: store._index.search(embedder.encode_one(q), 50, store._scopes("bench", None)),
                             queries),  # exact dense part alone (vectors cached)
        }
        for name, values in measured.items():
            runs[name].append((statistics.median(values), percentile(values, 95)))
    db.close()
    size_mb = sum(p.stat().st_size for p in root.glob("memory.db*")) / 1e6
    latency = {f"{name}_{stat}_ms": round(statistics.median(r[i] for r in values), 2)
               for name, values in runs.items() for i, stat in enumerate(("p50", "p95"))}
    return {"items": store_count(root), "embed_per_s": embed_rate, "import_per_s": import_rate,
            "index_load_s": index_load, **latency, "reps": reps, "recall_at_5": hits / len(labelled),
            "bm25_recall_at_5": keyword_hits / len(labelled), "db_mb": size_mb, "labelled": len(labelled)}


def store_count(root: Path) -> int:
    db = Database(root / "memory.db")
    try:
        return db.query_one("SELECT COUNT(*) FROM memory_items")[0]
    finally:
        db.close()


def bench_ingest(embedder: Embedder, root: Path, copies: int) -> dict:
    from sovereign.knowledge import KnowledgeBase

    corpus = REPO / "tests" / "data" / "knowledge" / "corpus"
    folder = root / "corpus"
    folder.mkdir()
    for i in range(copies):
        for path in corpus.iterdir():
            (folder / f"{path.stem}-{i}{path.suffix}").write_text(path.read_text() + f"\n\nCopy {i}.\n")
    kb = KnowledgeBase(Database(root / "kb.db"), embedder)
    report = kb.ingest([folder])
    again = kb.ingest([folder])
    return {"files": len(report.added), "pages": report.pages, "chunks": report.chunks, "seconds": report.seconds,
            "pages_per_s": report.pages / report.seconds, "reingest_unchanged_s": again.seconds}


def bench_writeback(embedder: Embedder, root: Path, real_model: bool) -> dict:
    from sovereign.knowledge import KnowledgeBase
    from sovereign.knowledge.evaluation import evaluate_writeback, load_items

    data = REPO / "tests" / "data" / "knowledge"
    kb = KnowledgeBase(Database(root / "wb.db"), embedder)
    kb.ingest([data / "corpus"])
    if real_model:
        from sovereign.config import DEFAULT_MODEL, load_settings
        from sovereign.kernel.llama_backend import LlamaCppModel, LlamaOptions
        from sovereign.kernel.registry import ModelRegistry

        settings = load_settings(REPO / ".cache" / "bootstrap-home")
        registry = ModelRegistry(list(ModelRegistry.load(settings)), REPO / ".cache" / "models")
        spec = registry.get(DEFAULT_MODEL)
        model = LlamaCppModel(spec, registry.weights_path(spec), LlamaOptions(n_ctx=2048))
        model.load()
    else:
        from sovereign.testing import FunctionModel, text_response

        def extractive(request):
            body = request.messages[-1].content.split("Passages:\n", 1)[1].split(") ", 1)[1]
            return text_response(". ".join(body.split(". ")[:2]))

        model = FunctionModel(extractive, name="extractive")
    results = {}
    for k in (1, 3):
        fresh = KnowledgeBase(Database(root / f"wb{k}.db"), embedder)
        fresh.ingest([data / "corpus"])
        report = asyncio.run(evaluate_writeback(fresh, model, load_items(data / "writeback_questions.json"), k=k))
        results[f"hit@{k}"] = report
    return {"model": model.name, **{key: (r.before_repeated, r.before_paraphrased, r.after_repeated,
                                          r.after_paraphrased, r.units_written) for key, r in results.items()}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--unique", type=int, default=5_000)
    parser.add_argument("--reps", type=int, default=7, help="latency repetitions (medians are reported)")
    parser.add_argument("--copies", type=int, default=25, help="copies of the test corpus to ingest")
    parser.add_argument("--real-model", action="store_true", help="distil write-back units with the embedded model")
    args = parser.parse_args()
    embedder = Embedder()
    embedder.load()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        memory = bench_memory(args.items, args.unique, embedder, root, args.reps)
        print("memory:", json.dumps(memory, indent=1))
        print(f"hybrid vs BM25-only recall@5: {memory['recall_at_5']:.3f} vs {memory['bm25_recall_at_5']:.3f}"
              f" (ratio {memory['recall_at_5'] / max(memory['bm25_recall_at_5'], 1e-9):.2f})")
        print("ingest:", json.dumps(bench_ingest(embedder, root, args.copies), indent=1))
        print("write-back (before repeated, before paraphrased, after repeated, after paraphrased, units):",
              json.dumps(bench_writeback(embedder, root, args.real_model), indent=1))


if __name__ == "__main__":
    main()
