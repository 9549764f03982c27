"""The perception engines of one OS: each is built on first use from weights assembled into the
shared cache and verified by SHA-256 (``kernel.weights.ensure_model_files``), then kept.

``Perception`` resolves a model name (or the ``[perception]`` default of a kind) to its registry
entry and its engine. When the default voice (piper, an optional extra) is not installed, speech
falls back to espeak-ng and says so in ``fallback``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sovereign.config import PerceptionSettings
from sovereign.errors import InvalidRequestError, WeightsError, WeightsVerificationError
from sovereign.kernel.registry import Kind, ModelRegistry, ModelSpec
from sovereign.kernel.weights import ensure_model_files
from sovereign.perception.errors import EngineUnavailableError

__all__ = ["Perception"]

_FALLBACK = {"speech": "espeak-ng", "ocr": "tesseract"}
# OpenAI's model names, which clients send by habit, stand for the default model of their kind.
ALIASES = {"whisper-1": "transcription", "gpt-4o-transcribe": "transcription", "gpt-4o-mini-transcribe": "transcription",
           "tts-1": "speech", "tts-1-hd": "speech", "gpt-4o-mini-tts": "speech"}


@dataclass
class Perception:
    registry: ModelRegistry
    settings: PerceptionSettings
    prepare: Callable[[ModelSpec], Path] | None = None
    """Assembles a model's weights with a progress bar (``Services.prepare_weights``); else silently."""
    engines: dict[str, Any] = field(default_factory=dict)
    fallback: dict[str, str] = field(default_factory=dict)
    """Kind -> why the default model was replaced by its fallback (shown by ``sovereign doctor``)."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def default(self, kind: Kind) -> str:
        return {"transcription": self.settings.transcription, "speech": self.settings.speech,
                "ocr": self.settings.ocr}[kind]

    def spec(self, name: str | None, kind: Kind) -> ModelSpec:
        """The registry entry of ``name`` (the kind's default if None); a model of another kind is
        a 400 naming what it is. OpenAI's names (``whisper-1``, ``tts-1``...) mean the default."""
        if name in ALIASES and ALIASES[name] == kind and name not in self.registry:
            name = None
        spec = self.registry.get(name or self.default(kind))
        if spec.kind != kind:
            raise InvalidRequestError(f"model '{spec.name}' is a {spec.kind} model, not a {kind} model; "
                                      f"{kind} models: {', '.join(self.names(kind))}", param="model")
        return spec

    def names(self, kind: Kind) -> list[str]:
        return [spec.name for spec in self.registry if spec.kind == kind]

    def engine(self, name: str | None, kind: Kind) -> tuple[ModelSpec, Any]:
        """``(spec, engine)`` for ``name``; the engine loads (and its weights verify) once. The
        default of a kind falls back (speech to espeak-ng, OCR to tesseract) when its engine or
        weights are not installed; a named model never does, and a hash mismatch never does."""
        spec = self.spec(name, kind)
        explicit = name is not None and name not in ALIASES
        with self._lock:
            if not explicit and kind in self.fallback:
                spec = self.registry.get(_FALLBACK[kind])
            if spec.name in self.engines:
                return spec, self.engines[spec.name]
            try:
                engine = self._build(spec)
            except (EngineUnavailableError, WeightsError) as exc:
                fallback = _FALLBACK.get(kind)
                if explicit or fallback is None or spec.name == fallback or isinstance(exc, WeightsVerificationError):
                    raise
                self.fallback[kind] = f"{spec.name} unavailable ({exc.message}); using {fallback}"
                spec = self.registry.get(fallback)
                engine = self._build(spec)
            self.engines[spec.name] = engine
            return spec, engine

    def loaded(self, name: str | None, kind: Kind) -> tuple[ModelSpec, Any] | None:
        """``engine(name, kind)`` when that engine is already built, else None (never loads, never
        blocks: a request on the hot path skips the worker thread a load would need)."""
        spec = self.spec(name, kind)
        if (name is None or name in ALIASES) and kind in self.fallback:
            spec = self.registry.get(_FALLBACK[kind])
        engine = self.engines.get(spec.name)
        return (spec, engine) if engine is not None else None

    def warm(self, kinds: list[Kind]) -> dict[str, str]:
        """Build the default engine of each kind in ``kinds`` now (the server does this at start-up,
        so the first request does not wait for a load); kind -> the model loaded, or why not."""
        done: dict[str, str] = {}
        for kind in kinds:
            try:
                done[kind] = self.engine(None, kind)[0].name
            except (EngineUnavailableError, WeightsError) as exc:
                done[kind] = f"not loaded: {exc.message}"
        return done

    def folder(self, spec: ModelSpec) -> Path:
        """The verified folder of ``spec``'s files in the shared cache (assembled if missing)."""
        path = self.registry.weights_path(spec)
        if self.prepare is not None:
            self.prepare(spec)
        ensure_model_files(spec, path)
        return path.parent

    def _build(self, spec: ModelSpec) -> Any:
        threads = self.settings.threads
        if spec.backend == "faster_whisper":
            from sovereign.perception.transcribe import WhisperEngine

            self._importable("faster_whisper", "speech to text needs faster-whisper: pip install faster-whisper==1.2.1")
            return WhisperEngine(self.folder(spec), threads=threads, english_only=spec.name.endswith(".en"),
                                 beam_size=self.settings.beam_size, size_windows=self.settings.size_windows)
        if spec.backend == "piper":
            from sovereign.perception.speech import PiperEngine

            self._importable("piper", "the piper voice needs the optional extra (GPL-3 engine): "
                                      "pip install 'sovereign[voice]'")
            folder = self.folder(spec)
            weights = folder / Path(spec.weights_file or "").name
            return PiperEngine(weights, folder / f"{weights.name}.json", threads=threads)
        if spec.backend == "espeak_ng":
            from sovereign.perception.speech import EspeakEngine

            return EspeakEngine()
        if spec.backend == "rapidocr":
            from sovereign.perception.ocr import RapidOcrEngine

            self._importable("rapidocr", "OCR needs rapidocr: pip install rapidocr==3.10.0")
            folder = self.folder(spec)
            det = folder / Path(spec.weights_file or "").name
            rec, cls = (folder / file.name for file in spec.files)
            return RapidOcrEngine(det, rec, cls, threads=threads)
        if spec.backend == "tesseract":
            from sovereign.perception.ocr import TesseractEngine

            return TesseractEngine()
        raise InvalidRequestError(f"model '{spec.name}' has no perception engine (backend {spec.backend})")

    @staticmethod
    def _importable(module: str, hint: str) -> None:
        import importlib.util

        if importlib.util.find_spec(module) is None:
            raise EngineUnavailableError(hint)
