"""Text to speech: Piper (a neural voice, optional extra, GPL-3 engine) and espeak-ng (formant
synthesis, no weights, a Debian package run as a separate process).

Both yield 16-bit mono PCM in pieces so a reply can start playing before it is all spoken: the
text is cut into sentences, and the first sentence is cut again at its first clause (or after a
few words) so the first piece is short — that is what sets the time to first audio.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from sovereign.perception.errors import EngineUnavailableError, PerceptionInputError

__all__ = ["ESPEAK_VOICES", "EspeakEngine", "PiperEngine", "SpeechEngine", "pieces"]

_SENTENCE = re.compile(r"(?<=[.!?;:])\s+|\n+")
_FIRST_WORDS = 4
# A first piece is best cut before one of these words (a new phrase starts there)...
_PHRASE_START = frozenset("and but or so because which who whom whose that where when while if with without to in "
                          "on at for from of by as than about after before into onto over under through during "
                          "is are was were has have had will would can could should".split())
# ...and never just after one of these (it would leave a dangling article or preposition).
_NO_END = frozenset("a an the my your his her its our their this that these those of to in on at for from with by "
                    "and or but as into onto".split())
# OpenAI voice names map onto espeak-ng variants, so clients that send "alloy" get a voice.
ESPEAK_VOICES = {"alloy": "en-us", "echo": "en-us+m3", "fable": "en-gb", "onyx": "en-us+m7", "nova": "en-us+f3",
                 "shimmer": "en-us+f4", "ash": "en-us+m2", "coral": "en-us+f2", "sage": "en-gb+f3",
                 "ballad": "en-gb+m3", "verse": "en-us+m4"}


def pieces(text: str, *, first_words: int = _FIRST_WORDS) -> list[str]:
    """Sentences of ``text``, the first one cut short so it synthesises fast (its time is the time
    to first audio). A first sentence longer than ``first_words + 2`` words is cut at a comma within
    its first ``first_words + 1`` words; else at a phrase boundary 3 to ``first_words + 1`` words in
    (before "with", "which", "is"..., never after "the", "of"...); else after ``first_words`` words.
    The rest of the sentence is the second piece, made while the first one plays."""
    sentences = [s.strip() for s in _SENTENCE.split(text) if s and s.strip()]
    if not sentences:
        return []
    words = sentences[0].split()
    if len(words) > first_words + 2:
        cut = _first_cut(words, first_words)
        sentences[0:1] = [" ".join(words[:cut]), " ".join(words[cut:])]
    return sentences


def _first_cut(words: list[str], first_words: int) -> int:
    """How many words the first piece takes (see ``pieces``)."""
    plain = [word.lower().strip(",;:\"'()") for word in words]
    for n in range(1, first_words + 2):
        if words[n - 1].endswith(","):
            return n
    span = range(min(first_words + 1, len(words) - 1), 2, -1)  # latest first
    for n in span:
        if plain[n] in _PHRASE_START and plain[n - 1] not in _NO_END:
            return n
    for n in span:
        if plain[n - 1] not in _NO_END:
            return n
    return first_words


class SpeechEngine(Protocol):
    rate: int

    def voices(self) -> list[str]: ...

    def stream(self, text: str, *, voice: str | None = None, speed: float = 1.0) -> Iterator[bytes]:
        """16-bit mono PCM at ``rate``, one piece per ``pieces(text)`` item."""
        ...


class PiperEngine:
    """A Piper ONNX voice from the shared weights cache (``piper-tts``, optional extra)."""

    def __init__(self, model: Path, config: Path, *, threads: int = 0) -> None:
        try:
            import onnxruntime
            from piper import PiperVoice
        except ImportError as exc:
            raise EngineUnavailableError("the piper voice needs the optional extra (GPL-3 engine): "
                                         "pip install 'sovereign[voice]'; espeak-ng works without it") from exc
        voice = PiperVoice.load(model, config_path=config)
        if threads:
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = threads
            voice.session = onnxruntime.InferenceSession(str(model), sess_options=options,
                                                         providers=["CPUExecutionProvider"])
        self._voice = voice
        self.rate = voice.config.sample_rate
        self.name = model.stem

    def voices(self) -> list[str]:
        return [self.name]

    def stream(self, text: str, *, voice: str | None = None, speed: float = 1.0) -> Iterator[bytes]:
        from piper import SynthesisConfig

        config = SynthesisConfig(length_scale=1.0 / speed)
        for piece in pieces(text):
            for chunk in self._voice.synthesize(piece, syn_config=config):
                yield chunk.audio_int16_bytes


class EspeakEngine:
    """espeak-ng as a subprocess (GPL-3, kept out of this process); raw 22,050 Hz PCM on stdout."""

    rate = 22_050

    def __init__(self, binary: str | None = None) -> None:
        found = binary or shutil.which("espeak-ng")
        if found is None:
            raise EngineUnavailableError("espeak-ng is not installed: apt-get install espeak-ng")
        self.binary = found

    def voices(self) -> list[str]:
        return sorted(ESPEAK_VOICES)

    def _variant(self, voice: str | None) -> str:
        if voice is None:
            return "en-us"
        if voice in ESPEAK_VOICES:
            return ESPEAK_VOICES[voice]
        if re.fullmatch(r"[a-z]{2,3}(-[a-z0-9]{2,8})*(\+[a-z0-9]{1,8})?", voice):
            return voice
        raise PerceptionInputError(f"unknown voice '{voice}'; use one of {', '.join(sorted(ESPEAK_VOICES))} "
                                   "or an espeak-ng voice such as 'en-gb' or 'en-us+f3'", param="voice")

    def stream(self, text: str, *, voice: str | None = None, speed: float = 1.0) -> Iterator[bytes]:
        variant = self._variant(voice)
        words_per_minute = str(max(80, min(450, round(175 * speed))))
        for piece in pieces(text):
            result = subprocess.run([self.binary, "--stdout", "-v", variant, "-s", words_per_minute, "--", piece],
                                    capture_output=True, timeout=60, check=False)
            if result.returncode != 0:
                message = result.stderr.decode(errors="replace").strip()[:200]
                raise PerceptionInputError(f"espeak-ng refused the voice '{variant}': {message}", param="voice")
            yield _wav_payload(result.stdout)


def _wav_payload(wav: bytes) -> bytes:
    """The PCM after a WAV header (espeak-ng --stdout writes a header with unknown sizes)."""
    at = wav.find(b"data")
    body = wav[at + 8:] if at >= 0 else wav
    return body[: len(body) - len(body) % 2]
