"""Audio in and out: decode any container PyAV reads to 16 kHz mono float32 (what Whisper
takes), and encode 16-bit PCM to wav, mp3, opus, aac, flac or raw pcm for the speech endpoint.

Decoding checks what it is given: bytes that no demuxer recognises, or a file with no audio
stream (an image, a text file), are a ``PerceptionInputError`` naming the problem; audio longer
than ``max_seconds`` is a ``TooLargeError`` before it is transcribed.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import numpy as np

from sovereign.perception.errors import PerceptionInputError, TooLargeError, UnsupportedFormatError

__all__ = ["SAMPLE_RATE", "AUDIO_FORMATS", "Audio", "decode_audio", "encode_audio", "wav_header", "content_type"]

SAMPLE_RATE = 16_000
# response_format of /v1/audio/speech -> (PyAV container, codec); wav and pcm are written directly.
_CODECS = {"mp3": ("mp3", "libmp3lame"), "opus": ("ogg", "libopus"), "aac": ("adts", "aac"), "flac": ("flac", "flac")}
AUDIO_FORMATS = ("wav", "pcm", *_CODECS)
_TYPES = {"wav": "audio/wav", "pcm": "audio/pcm", "mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac",
          "flac": "audio/flac"}


@dataclass(frozen=True, slots=True)
class Audio:
    """Mono float32 samples in [-1, 1] at ``rate`` Hz."""

    samples: np.ndarray
    rate: int = SAMPLE_RATE

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate


def content_type(fmt: str) -> str:
    return _TYPES[fmt]


def decode_audio(data: bytes, *, max_seconds: float, what: str = "file") -> Audio:
    """Decode ``data`` (any format PyAV/FFmpeg reads) to 16 kHz mono; raises naming the problem."""
    import av

    if not data:
        raise PerceptionInputError(f"the {what} is empty: no audio to transcribe", param=what)
    chunks: list[np.ndarray] = []
    total = 0
    limit = int(max_seconds * SAMPLE_RATE)
    try:
        with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                kinds = " and ".join(sorted({s.type for s in container.streams})) or "nothing"
                raise PerceptionInputError(f"the {what} is not audio: it has no audio stream (it holds {kinds}; "
                                           "an image or a silent video?)", param=what)
            declared = _declared_seconds(container)
            if declared is not None and declared > max_seconds + 1:
                raise _too_long(what, declared, max_seconds)
            resampler = av.audio.resampler.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    array = out.to_ndarray().reshape(-1)
                    chunks.append(array)
                    total += len(array)
                    if total > limit + SAMPLE_RATE:
                        raise _too_long(what, total / SAMPLE_RATE, max_seconds)
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except av.error.FFmpegError as exc:
        raise PerceptionInputError(f"the {what} is not audio in a format this server reads ({_short(exc)})",
                                   param=what) from exc
    samples = np.concatenate(chunks).astype(np.float32) / 32768.0 if chunks else np.zeros(0, np.float32)
    if len(samples) == 0:
        raise PerceptionInputError(f"the {what} holds no audio samples", param=what)
    if len(samples) > limit + SAMPLE_RATE // 10:
        raise _too_long(what, len(samples) / SAMPLE_RATE, max_seconds)
    return Audio(samples)


def _declared_seconds(container) -> float | None:
    if container.duration is None:
        return None
    return container.duration / 1_000_000


def _too_long(what: str, seconds: float, limit: float) -> TooLargeError:
    return TooLargeError(f"the {what} is too long: {seconds:.0f} s of audio, the limit is {limit:.0f} s "
                         "([perception] max_audio_seconds)", param=what)


def _short(exc: Exception) -> str:
    return str(exc).split(": '<")[0][:160]


def wav_header(rate: int, frames: int | None = None) -> bytes:
    """A 16-bit mono WAV header; ``frames=None`` writes the 'unknown length' sizes a stream uses."""
    data_size = 0xFFFFFFFF - 36 if frames is None else frames * 2
    return (b"RIFF" + struct.pack("<I", min(36 + data_size, 0xFFFFFFFF)) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16) + b"data" + struct.pack("<I", data_size))


def encode_audio(pcm: bytes, rate: int, fmt: str) -> bytes:
    """16-bit mono PCM at ``rate`` as a whole file in ``fmt`` (see ``AUDIO_FORMATS``)."""
    if fmt == "pcm":
        return pcm
    if fmt == "wav":
        return wav_header(rate, len(pcm) // 2) + pcm
    if fmt not in _CODECS:
        raise UnsupportedFormatError(f"response_format '{fmt}' is not supported; use one of {', '.join(AUDIO_FORMATS)}",
                                     param="response_format")
    import av

    container_name, codec = _CODECS[fmt]
    out = io.BytesIO()
    out_rate = 48_000 if codec == "libopus" else rate
    with av.open(out, mode="w", format=container_name) as container:
        stream = container.add_stream(codec, rate=out_rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.frombuffer(pcm, np.int16).reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        resampler = av.audio.resampler.AudioResampler(format=stream.codec_context.format.name, layout="mono",
                                                      rate=out_rate, frame_size=stream.codec_context.frame_size or None)
        for piece in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(piece):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()
