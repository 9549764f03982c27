"""A transcript in the response formats of OpenAI's audio API: json, text, srt, vtt, verbose_json."""

from __future__ import annotations

from typing import Any, Literal

from sovereign.perception.transcribe import Transcript

__all__ = ["TRANSCRIPT_FORMATS", "TranscriptFormat", "render_transcript", "usage_json"]

TranscriptFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]
TRANSCRIPT_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")


def _clock(seconds: float, separator: str) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def srt(transcript: Transcript) -> str:
    blocks = [f"{n}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n{s.text.strip()}\n"
              for n, s in enumerate(transcript.segments, start=1)]
    return "\n".join(blocks)


def vtt(transcript: Transcript) -> str:
    blocks = [f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n{s.text.strip()}\n" for s in transcript.segments]
    return "WEBVTT\n\n" + "\n".join(blocks)


def usage_json(transcript: Transcript) -> dict[str, Any]:
    """OpenAI's duration-based usage, with the token counts the ledger records beside it."""
    return {"type": "duration", "seconds": transcript.duration, "input_tokens": transcript.audio_tokens,
            "output_tokens": transcript.text_tokens}


def verbose(transcript: Transcript) -> dict[str, Any]:
    return {
        "task": transcript.task,
        "language": transcript.language,
        "language_probability": transcript.language_probability,
        "duration": transcript.duration,
        "text": transcript.text,
        "segments": [{"id": s.id, "seek": 0, "start": s.start, "end": s.end, "text": s.text, "tokens": s.tokens,
                      "temperature": s.temperature, "avg_logprob": s.avg_logprob,
                      "compression_ratio": s.compression_ratio, "no_speech_prob": s.no_speech_prob}
                     for s in transcript.segments],
        "usage": usage_json(transcript),
    }


def render_transcript(transcript: Transcript, fmt: TranscriptFormat) -> tuple[str | dict[str, Any], str]:
    """``(body, media type)``: a dict for the JSON formats, text for the others."""
    if fmt == "json":
        return {"text": transcript.text, "usage": usage_json(transcript)}, "application/json"
    if fmt == "verbose_json":
        return verbose(transcript), "application/json"
    if fmt == "srt":
        return srt(transcript), "application/x-subrip"
    if fmt == "vtt":
        return vtt(transcript), "text/vtt"
    return transcript.text + "\n", "text/plain"
