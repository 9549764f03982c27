"""Whisper's encoder sized to the audio it hears, and run once per window.

faster-whisper pads every window to 30 s (3,000 mel frames) before the encoder, whose cost grows
faster than linearly with its input: a 4 s question pays for 30 s (~0.42 s of the ~0.8 s it takes
on two cores). CTranslate2's Whisper encoder accepts shorter inputs, so ``SizedWhisperModel``
cuts the zero padding that ``pad_or_trim`` added before encoding (the same idea as whisper.cpp's
``audio_ctx``), keeping 5 s of it after the audio and never going below a 10 s window. Both
matter: with 2 s of padding and no floor, two of 48 synthetic clips in the benchmark had their
language misdetected (Latvian, Maori) and were transcribed as gibberish; with the floor and the
margin the set's WER is that of the full window (``BENCHMARKS.md``, issue 14).

faster-whisper also encodes the first window twice when it detects the language (once to detect,
once to decode); the last encoding is kept and reused when the same features come again.

The engine calls ``forget()`` after each transcription, so nothing leaks between requests.
"""

from __future__ import annotations

import numpy as np
from faster_whisper import WhisperModel

__all__ = ["SizedWhisperModel", "sized_frames"]

FULL_WINDOW_FRAMES = 3000  # 30 s of 10 ms mel frames: what Whisper was trained on
MARGIN_FRAMES = 500  # 5 s of padding kept after the audio
MINIMUM_FRAMES = 1000  # never a window shorter than 10 s
STEP_FRAMES = 100  # sizes are rounded up to whole seconds, so few distinct shapes occur


def sized_frames(content_frames: int, *, margin: int = MARGIN_FRAMES, minimum: int = MINIMUM_FRAMES,
                 step: int = STEP_FRAMES) -> int:
    """Encoder input frames for a window holding ``content_frames`` of audio: the audio and a
    margin of padding, rounded up to ``step``, at least ``minimum``, at most the full window."""
    wanted = max(minimum, content_frames + margin)
    return min(FULL_WINDOW_FRAMES, -(-wanted // step) * step)


def _content_frames(features: np.ndarray) -> int:
    """Frames up to the last one that is not zero padding (log-mel of real audio, silence
    included, is never all zeros: silence is about -1 after Whisper's normalisation)."""
    used = np.flatnonzero(np.any(features != 0, axis=-2).reshape(-1))
    return int(used[-1]) + 1 if used.size else 0


class SizedWhisperModel(WhisperModel):
    """A ``WhisperModel`` whose ``encode`` trims padding and reuses the last encoding."""

    def __init__(self, *args, size_windows: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.size_windows = size_windows
        self._last_features: np.ndarray | None = None
        self._last_output = None

    def forget(self) -> None:
        self._last_features = None
        self._last_output = None

    def encode(self, features: np.ndarray):
        if self._last_features is not None and np.array_equal(features, self._last_features):
            return self._last_output
        window = features
        if self.size_windows and features.shape[-1] == FULL_WINDOW_FRAMES:
            window = features[..., :sized_frames(_content_frames(features))]
        output = super().encode(np.ascontiguousarray(window))
        self._last_features, self._last_output = features, output
        return output
