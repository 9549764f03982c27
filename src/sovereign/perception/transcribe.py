"""Speech to text with faster-whisper (CTranslate2) on verified local Whisper weights.

``WhisperEngine`` loads a model folder from the shared weights cache once and is safe to call
from worker threads (CTranslate2 serialises on its own workers). ``Transcript`` is what every
interface renders (``formats.py``): text, language (detected when not given), segments with
times, and the token counts the ledger records.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sovereign.perception.audio import Audio
from sovereign.perception.errors import EngineUnavailableError, PerceptionInputError

__all__ = ["AUDIO_TOKENS_PER_SECOND", "Segment", "Transcript", "WhisperEngine"]

AUDIO_TOKENS_PER_SECOND = 50  # Whisper's encoder: 1,500 frames per 30 s window
Task = Literal["transcribe", "translate"]
_FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


@dataclass(frozen=True, slots=True)
class Segment:
    id: int
    start: float
    end: float
    text: str
    tokens: list[int]
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    temperature: float


@dataclass(slots=True)
class Transcript:
    text: str
    language: str
    language_probability: float
    duration: float
    task: Task = "transcribe"
    segments: list[Segment] = field(default_factory=list)

    @property
    def audio_tokens(self) -> int:
        return max(1, round(self.duration * AUDIO_TOKENS_PER_SECOND))

    @property
    def text_tokens(self) -> int:
        return sum(len(segment.tokens) for segment in self.segments)


class WhisperEngine:
    """One Whisper model (a CTranslate2 folder: model.bin, config.json, tokenizer, vocabulary)."""

    def __init__(self, folder: Path, *, threads: int = 0, english_only: bool = False, beam_size: int = 5,
                 size_windows: bool = True) -> None:
        try:
            from sovereign.perception.whisper_window import SizedWhisperModel
        except ImportError as exc:
            raise EngineUnavailableError("speech to text needs faster-whisper: pip install faster-whisper==1.2.1") from exc
        self.folder = folder
        self.english_only = english_only
        self.beam_size = beam_size
        self._model = SizedWhisperModel(str(folder), device="cpu", compute_type="int8", cpu_threads=threads,
                                        local_files_only=True, size_windows=size_windows)
        self._lock = threading.Lock()

    def options(self, *, language: str | None = None, task: Task = "transcribe", prompt: str | None = None,
                temperature: float | None = None) -> dict[str, Any]:
        """The keyword arguments given to faster-whisper's ``transcribe`` (the benchmark's direct
        peer uses the same). faster-whisper's own defaults: beam search (``[perception] beam_size``,
        5) with the temperature fallback that re-decodes a window whose output looks degenerate."""
        return {"language": "en" if self.english_only else language, "task": task, "beam_size": self.beam_size,
                "initial_prompt": prompt or None,
                "temperature": [temperature] if temperature is not None else list(_FALLBACK_TEMPERATURES),
                "condition_on_previous_text": False, "vad_filter": False}

    def transcribe(self, audio: Audio, *, language: str | None = None, task: Task = "transcribe",
                   prompt: str | None = None, temperature: float | None = None) -> Transcript:
        if language and self.english_only and language != "en":
            raise PerceptionInputError(f"this model understands English only; language '{language}' needs a "
                                       "multilingual model (whisper-base)", param="language")
        if task == "translate" and self.english_only:
            raise PerceptionInputError("translation needs a multilingual model (whisper-base); this one is "
                                       "English only", param="model")
        try:
            with self._lock:  # one decode at a time per model: the box's cores are few
                try:
                    pieces, info = self._model.transcribe(
                        audio.samples, **self.options(language=language, task=task, prompt=prompt,
                                                      temperature=temperature))
                    segments = [Segment(id=s.id, start=round(s.start, 3), end=round(s.end, 3), text=s.text,
                                        tokens=list(s.tokens), avg_logprob=s.avg_logprob,
                                        compression_ratio=s.compression_ratio, no_speech_prob=s.no_speech_prob,
                                        temperature=s.temperature or 0.0) for s in pieces]
                finally:
                    self._model.forget()
        except ValueError as exc:  # e.g. an unknown language code
            raise PerceptionInputError(f"cannot transcribe: {exc}", param="language") from exc
        text = "".join(s.text for s in segments).strip()
        return Transcript(text=text, language=info.language, language_probability=round(info.language_probability, 4),
                          duration=round(audio.seconds, 3), task=task, segments=segments)
