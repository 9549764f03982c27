"""OpenAI's audio API: ``/v1/audio/transcriptions``, ``/v1/audio/translations`` (multipart
upload; json, text, srt, vtt, verbose_json) and ``/v1/audio/speech`` (wav, pcm, mp3, opus, aac,
flac; streamed as it is spoken, or as SSE events with ``stream_format: "sse"``).

The routes only turn the request into a call on ``Services.governed_perception``: authorising,
caps, the ledger and the audit log are the governed path's (``perception/governed.py``).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from typing import Literal

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from sovereign.errors import InvalidRequestError, SovereignError
from sovereign.perception.audio import content_type, encode_audio, wav_header
from sovereign.perception.formats import TRANSCRIPT_FORMATS, render_transcript
from sovereign.perception.governed import SpeechStream
from sovereign.server.errors import error_body, internal_error_body

__all__ = ["router"]

router = APIRouter(tags=["audio"])
_STREAMED = {"wav", "pcm", "mp3", "aac"}  # formats whose pieces can be sent as they are made


async def _upload(file: UploadFile) -> bytes:
    data = await file.read()
    if not data:
        raise InvalidRequestError(f"the uploaded file '{file.filename or 'file'}' is empty", param="file")
    return data


def _format(value: str) -> str:
    if value not in TRANSCRIPT_FORMATS:
        raise InvalidRequestError(f"response_format '{value}' is not supported; use one of "
                                  f"{', '.join(TRANSCRIPT_FORMATS)}", param="response_format")
    return value


async def _transcribe(request: Request, task: Literal["transcribe", "translate"], file: UploadFile, model: str | None,
                      language: str | None, prompt: str | None, response_format: str,
                      temperature: float | None) -> Response:
    fmt = _format(response_format)
    if temperature is not None and not 0 <= temperature <= 1:
        raise InvalidRequestError(f"temperature must be between 0 and 1, not {temperature}", param="temperature")
    services = request.app.state.services
    governed = services.governed_perception(request.state.principal, request_id="audio-" + uuid.uuid4().hex[:24])
    transcript = await governed.transcribe(await _upload(file), model=model or None, language=language or None,
                                           task=task, prompt=prompt or None, temperature=temperature)
    body, media = render_transcript(transcript, fmt)  # type: ignore[arg-type]
    headers = {"X-Sovereign-Model": governed.last.model if governed.last else "",
               "X-Sovereign-Cost-USD": f"{governed.last.cost_usd:.8f}" if governed.last else "0"}
    if isinstance(body, dict):
        return JSONResponse(body, headers=headers)
    return PlainTextResponse(body, media_type=media, headers=headers)


@router.post("/v1/audio/transcriptions")
async def transcriptions(request: Request, file: UploadFile = File(...), model: str | None = Form(None),
                         language: str | None = Form(None), prompt: str | None = Form(None),
                         response_format: str = Form("json"), temperature: float | None = Form(None)) -> Response:
    """Speech to text in the spoken language (detected when ``language`` is not given)."""
    return await _transcribe(request, "transcribe", file, model, language, prompt, response_format, temperature)


@router.post("/v1/audio/translations")
async def translations(request: Request, file: UploadFile = File(...), model: str | None = Form(None),
                       prompt: str | None = Form(None), response_format: str = Form("json"),
                       temperature: float | None = Form(None)) -> Response:
    """Speech in any language Whisper knows, as English text."""
    return await _transcribe(request, "translate", file, model, None, prompt, response_format, temperature)


class SpeechRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    model: str | None = None
    input: str = Field(min_length=1, description="the text to speak")
    voice: str | None = None
    response_format: Literal["wav", "pcm", "mp3", "opus", "aac", "flac"] = "mp3"
    speed: float = Field(default=1.0, ge=0.25, le=4.0)
    stream_format: Literal["audio", "sse"] = "audio"
    instructions: str | None = None


@router.post("/v1/audio/speech")
async def speech(body: SpeechRequest, request: Request) -> Response:
    """Text to speech; the audio streams as it is spoken (wav, pcm, mp3, aac) or comes whole."""
    services = request.app.state.services
    governed = services.governed_perception(request.state.principal, request_id="speech-" + uuid.uuid4().hex[:24])
    stream = await governed.speak(body.input, model=body.model, voice=body.voice, speed=body.speed)
    pieces = stream.pcm()
    try:
        first = await anext(pieces)  # a refused voice is an HTTP error, not a broken stream
    except StopAsyncIteration:
        first = b""
    except BaseException:
        await pieces.aclose()
        raise
    headers = {"X-Sovereign-Model": stream.spec.name, "X-Sovereign-Sample-Rate": str(stream.rate)}
    fmt = body.response_format
    if body.stream_format == "sse":
        return StreamingResponse(_sse(stream, first, pieces, fmt), media_type="text/event-stream", headers=headers)
    if fmt in _STREAMED:
        return StreamingResponse(_audio(stream, first, pieces, fmt), media_type=content_type(fmt), headers=headers)
    pcm = first + b"".join([piece async for piece in pieces])
    return Response(encode_audio(pcm, stream.rate, fmt), media_type=content_type(fmt), headers=headers)


def _encoded(piece: bytes, rate: int, fmt: str) -> bytes:
    return piece if fmt in ("wav", "pcm") else encode_audio(piece, rate, fmt)


async def _audio(stream: SpeechStream, first: bytes, pieces: AsyncIterator[bytes], fmt: str) -> AsyncIterator[bytes]:
    try:
        header = wav_header(stream.rate) if fmt == "wav" else b""
        yield header + _encoded(first, stream.rate, fmt)  # one write: the header and the first audio
        async for piece in pieces:
            yield _encoded(piece, stream.rate, fmt)
    finally:
        await pieces.aclose()  # a client that hangs up releases the reservation


async def _sse(stream: SpeechStream, first: bytes, pieces: AsyncIterator[bytes], fmt: str) -> AsyncIterator[str]:
    def delta(piece: bytes) -> str:
        audio = base64.b64encode(_encoded(piece, stream.rate, "pcm" if fmt == "wav" else fmt)).decode()
        return f"data: {json.dumps({'type': 'speech.audio.delta', 'audio': audio})}\n\n"

    try:
        yield delta(first)
        async for piece in pieces:
            yield delta(piece)
        last = stream.owner.last
        usage = {"input_tokens": last.usage.prompt_tokens, "output_tokens": last.usage.completion_tokens,
                 "total_tokens": last.usage.total_tokens} if last else {}
        yield f"data: {json.dumps({'type': 'speech.audio.done', 'usage': usage})}\n\n"
    except SovereignError as exc:
        yield f"data: {json.dumps(error_body(exc.message, exc.error_type, exc.code, exc.param))}\n\n"
    except Exception:
        yield f"data: {json.dumps(internal_error_body('speech stream'))}\n\n"
    finally:
        await pieces.aclose()

