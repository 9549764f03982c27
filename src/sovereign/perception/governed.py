"""Perception calls on the governed path: authorise (role and the key's model scope) → decode
and check the input → reserve the worst case against every cap → the engine (in a worker
thread) → settle with the real usage → ledger row and ``model.call`` audit entry, through the
same ``Governor`` as every language-model call. A call that fails, or a speech stream closed
early, releases its reservation.

Usage units (the ledger's prompt / completion tokens; see ``data/perception.toml``):
transcription counts audio tokens (50 a second) in and text tokens out; speech counts
characters in and audio tokens (50 a second) out; OCR counts 32x32 tiles in and characters out.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from sovereign.config import PerceptionSettings
from sovereign.governance.governor import CallRecord, CallScope, Governor
from sovereign.governance.journal import DirectJournal, Journal
from sovereign.kernel.messages import Timings, Usage
from sovereign.kernel.registry import ModelSpec
from sovereign.perception.ahead import run_ahead
from sovereign.perception.audio import decode_audio
from sovereign.perception.engines import Perception
from sovereign.perception.errors import PerceptionInputError, TooLargeError
from sovereign.perception.ocr import OcrResult, load_image
from sovereign.perception.transcribe import AUDIO_TOKENS_PER_SECOND, Task, Transcript

__all__ = ["GovernedPerception", "SpeechStream"]

_TEXT_TOKENS_PER_WINDOW = 448  # Whisper's decoder limit per 30 s window: the worst case of its output
_SLOWEST_CHARS_PER_SECOND = 5.0  # speech at its slowest, for the worst case of audio out
_PIECES_AHEAD = 2  # pieces synthesised beyond what the client has taken


@dataclass
class GovernedPerception:
    """The perception engines of ``perception`` behind the governed path, for ``scope``."""

    perception: Perception
    governor: Governor
    scope: CallScope
    journal: Journal | None = None
    last: CallRecord | None = None

    def __post_init__(self) -> None:
        if self.journal is None:
            self.journal = DirectJournal(self.governor.spend.db)

    @property
    def limits(self) -> PerceptionSettings:
        return self.perception.settings

    def _authorised(self, name: str | None, kind) -> ModelSpec:
        spec = self.perception.spec(name, kind)
        self.governor.authorize(self.scope, spec.name)
        return spec

    def _governed(self, spec: ModelSpec, units_in: int, worst_out: int, work, measure) -> object:
        """Reserve, run ``work`` (blocking), settle with ``measure(result)`` output units."""
        assert self.journal is not None
        reservation = self.governor.reserve_units(self.scope, spec.name, units_in, worst_out, self.journal)
        started = time.perf_counter()
        try:
            result = work()
        except BaseException:
            self.governor.release(reservation)
            raise
        elapsed = (time.perf_counter() - started) * 1000
        usage = Usage(prompt_tokens=units_in, completion_tokens=measure(result), requests=1)
        self.last = self.governor.settle(self.scope, reservation, spec.name, usage,
                                         Timings(ttft_ms=elapsed, latency_ms=elapsed), self.journal)
        return result

    def transcribe_now(self, data: bytes, *, model: str | None = None, language: str | None = None,
                       task: Task = "transcribe", prompt: str | None = None, temperature: float | None = None,
                       what: str = "file") -> Transcript:
        """The transcript (or English translation) of the audio in ``data`` (blocking)."""
        spec = self._authorised(model, "transcription")
        audio = decode_audio(data, max_seconds=self.limits.max_audio_seconds, what=what)
        _, engine = self.perception.engine(spec.name, "transcription")
        units = max(1, round(audio.seconds * AUDIO_TOKENS_PER_SECOND))
        worst = math.ceil(audio.seconds / 30) * _TEXT_TOKENS_PER_WINDOW
        return self._governed(
            spec, units, worst,
            lambda: engine.transcribe(audio, language=language, task=task, prompt=prompt, temperature=temperature),
            lambda transcript: transcript.text_tokens)

    async def transcribe(self, data: bytes, *, model: str | None = None, language: str | None = None,
                         task: Task = "transcribe", prompt: str | None = None, temperature: float | None = None,
                         what: str = "file") -> Transcript:
        """``transcribe_now`` in a worker thread."""
        return await asyncio.to_thread(lambda: self.transcribe_now(
            data, model=model, language=language, task=task, prompt=prompt, temperature=temperature, what=what))

    def read_image_now(self, data: bytes, *, model: str | None = None, what: str = "image") -> OcrResult:
        """The text in the image ``data``, with its layout (blocking)."""
        self._authorised(model, "ocr")
        image = load_image(data, max_pixels=self.limits.max_image_pixels, what=what)
        spec, engine = self.perception.engine(model, "ocr")
        self.governor.authorize(self.scope, spec.name)  # the fallback engine, when the default is missing
        tiles = max(1, math.ceil(image.width / 32) * math.ceil(image.height / 32))
        return self._governed(spec, tiles, tiles * 32, lambda: engine.read(image), lambda result: len(result.text))

    async def read_image(self, data: bytes, *, model: str | None = None, what: str = "image") -> OcrResult:
        """``read_image_now`` in a worker thread."""
        return await asyncio.to_thread(lambda: self.read_image_now(data, model=model, what=what))

    async def speak(self, text: str, *, model: str | None = None, voice: str | None = None,
                    speed: float = 1.0) -> SpeechStream:
        """A stream of 16-bit mono PCM pieces speaking ``text``; reserved now, settled when it ends."""
        if not text.strip():
            raise PerceptionInputError("the input text is empty: nothing to speak", param="input")
        if len(text) > self.limits.max_speech_chars:
            raise TooLargeError(f"the input text is too long: {len(text)} characters, the limit is "
                                f"{self.limits.max_speech_chars} ([perception] max_speech_chars)", param="input")
        if not 0.25 <= speed <= 4.0:
            raise PerceptionInputError(f"speed must be between 0.25 and 4.0, not {speed}", param="speed")
        self._authorised(model, "speech")
        loaded = self.perception.loaded(model, "speech")  # no thread hop before the first piece when loaded
        spec, engine = loaded or await asyncio.to_thread(self.perception.engine, model, "speech")
        self.governor.authorize(self.scope, spec.name)  # the fallback engine, when the default is missing
        assert self.journal is not None
        worst = math.ceil(len(text) / _SLOWEST_CHARS_PER_SECOND / speed * AUDIO_TOKENS_PER_SECOND)
        reservation = self.governor.reserve_units(self.scope, spec.name, len(text), worst, self.journal)
        return SpeechStream(self, spec, engine.rate, engine.stream(text, voice=voice, speed=speed), reservation,
                            len(text))


@dataclass
class SpeechStream:
    """PCM pieces of one speech call; ``pcm()`` yields them and settles the call after the last
    (or releases the reservation if it fails or is closed first)."""

    owner: GovernedPerception
    spec: ModelSpec
    rate: int
    pieces: object
    reservation: object
    characters: int
    first_ms: float | None = None
    samples: int = 0
    _started: float = field(default_factory=time.perf_counter)

    async def pcm(self) -> AsyncIterator[bytes]:
        owner, settled = self.owner, False
        # The next piece synthesises in a worker thread while this one is sent.
        ahead = run_ahead(iter(self.pieces), depth=_PIECES_AHEAD, name="speech")
        try:
            async for piece in ahead:
                if self.first_ms is None:
                    self.first_ms = (time.perf_counter() - self._started) * 1000
                self.samples += len(piece) // 2
                yield piece
            elapsed = (time.perf_counter() - self._started) * 1000
            audio_tokens = round(self.samples / self.rate * AUDIO_TOKENS_PER_SECOND)
            usage = Usage(prompt_tokens=self.characters, completion_tokens=audio_tokens, requests=1)
            owner.last = owner.governor.settle(owner.scope, self.reservation, self.spec.name, usage,
                                               Timings(ttft_ms=self.first_ms or elapsed, latency_ms=elapsed),
                                               owner.journal)
            settled = True
        finally:
            await ahead.aclose()
            if not settled:
                owner.governor.release(self.reservation)

    async def collect(self) -> bytes:
        return b"".join([piece async for piece in self.pcm()])
