"""``sovereign transcribe``, ``sovereign speak``, ``sovereign chat --voice`` and the perception
lines of ``sovereign doctor``. Every call takes the governed path as the local admin."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import typer

from sovereign.cli.common import console, friendly_errors, open_services, run
from sovereign.errors import SovereignError
from sovereign.perception.audio import AUDIO_FORMATS, encode_audio, wav_header
from sovereign.perception.errors import PerceptionInputError
from sovereign.perception.formats import TRANSCRIPT_FORMATS, render_transcript
from sovereign.services import Services

__all__ = ["perception_report", "speak_command", "transcribe_command", "voice_chat"]

_ENGINES = {"faster_whisper": ("module", "faster_whisper", "pip install faster-whisper==1.2.1"),
            "piper": ("module", "piper", "optional extra (GPL-3): pip install 'sovereign[voice]'"),
            "rapidocr": ("module", "rapidocr", "pip install rapidocr==3.10.0"),
            "espeak_ng": ("binary", "espeak-ng", "apt-get install espeak-ng"),
            "tesseract": ("binary", "tesseract", "apt-get install tesseract-ocr tesseract-ocr-eng")}


def _engine_status(backend: str) -> tuple[bool, str]:
    kind, name, hint = _ENGINES[backend]
    found = importlib.util.find_spec(name) is not None if kind == "module" else shutil.which(name) is not None
    return found, "engine installed" if found else f"[yellow]engine missing[/] ({hint})"


def perception_report(services: Services) -> tuple[str, bool, str]:
    """The doctor's ``perception`` check: each model's weights and engine, and whether every
    kind's default (or its fallback) can run."""
    from sovereign.cli.provenance import weights_status

    lines, usable = [], {}
    for spec in services.registry:
        if spec.kind == "chat":
            continue
        engine_ok, engine = _engine_status(spec.backend)
        weights_ok, weights = weights_status(services, spec) if spec.has_weights else (True, "no weights")
        usable[spec.name] = engine_ok and weights_ok
        lines.append(f"{spec.name} ({spec.kind}, {spec.licence}): {weights}; {engine}")
    defaults = services.settings.perception
    fallback = {"speech": "espeak-ng", "ocr": "tesseract"}
    ok = True
    for kind, name in (("transcription", defaults.transcription), ("speech", defaults.speech), ("ocr", defaults.ocr)):
        if not usable.get(name) and not usable.get(fallback.get(kind, "")):
            ok = False
            lines.append(f"[bold red]{kind}: neither {name} nor a fallback can run[/]")
        elif not usable.get(name):
            lines.append(f"{kind}: {name} cannot run; {fallback[kind]} serves instead")
    return "perception", ok, "\n".join(lines)


async def _transcribe(services: Services, path: Path, *, model: str | None, language: str | None,
                      translate: bool, fmt: str) -> str:
    governed = services.governed_perception(services.keys.local_principal())
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PerceptionInputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    transcript = await governed.transcribe(data, model=model, language=language,
                                           task="translate" if translate else "transcribe", what=f"file {path}")
    body, _ = render_transcript(transcript, fmt)  # type: ignore[arg-type]
    return json.dumps(body, ensure_ascii=False, indent=2) if isinstance(body, dict) else body.rstrip("\n")


@friendly_errors
def transcribe_command(
    file: Path = typer.Argument(..., help="audio file (wav, mp3, ogg/opus, flac, m4a, webm...)"),
    model: str = typer.Option(None, help="whisper-base (default, multilingual) or whisper-tiny.en"),
    language: str = typer.Option(None, help="spoken language code (detected when not given)"),
    translate: bool = typer.Option(False, help="translate into English"),
    response_format: str = typer.Option("text", "--format", help=f"one of {', '.join(TRANSCRIPT_FORMATS)}"),
) -> None:
    """Transcribe an audio file with a local Whisper model (ledger and audit like any model call)."""
    if response_format not in TRANSCRIPT_FORMATS:
        raise PerceptionInputError(f"--format must be one of {', '.join(TRANSCRIPT_FORMATS)}")
    services = open_services()
    try:
        text = run(_transcribe(services, file, model=model, language=language, translate=translate,
                               fmt=response_format))
    finally:
        services.close()
    print(text)


async def _speak(services: Services, text: str, *, model: str | None, voice: str | None, speed: float) -> tuple[bytes, int, str]:
    governed = services.governed_perception(services.keys.local_principal())
    stream = await governed.speak(text, model=model, voice=voice, speed=speed)
    return await stream.collect(), stream.rate, stream.spec.name


async def _speak_to_stdout(services: Services, text: str, *, model: str | None, voice: str | None,
                           speed: float) -> None:
    """A streamed WAV (header with the 'unknown length' sizes) on stdout, each piece flushed as made."""
    governed = services.governed_perception(services.keys.local_principal())
    stream = await governed.speak(text, model=model, voice=voice, speed=speed)
    out = sys.stdout.buffer
    header = wav_header(stream.rate)
    async for piece in stream.pcm():
        out.write(header + piece)
        out.flush()
        header = b""


@friendly_errors
def speak_command(
    text: str = typer.Argument(..., help="what to say"),
    output: Path = typer.Option(..., "-o", "--output",
                                help="audio file to write; its suffix picks the format; - streams WAV to stdout"),
    model: str = typer.Option(None, help="piper-joe (default, optional extra) or espeak-ng"),
    voice: str = typer.Option(None, help="espeak-ng voice (alloy, nova, en-gb...)"),
    speed: float = typer.Option(1.0, help="0.25 to 4.0"),
) -> None:
    """Speak ``text`` into an audio file (wav, mp3, opus, aac, flac, pcm) with a local voice;
    ``-o -`` streams WAV to standard output as it is spoken (``| aplay`` starts at the first clause)."""
    if str(output) == "-":
        services = open_services()
        try:
            run(_speak_to_stdout(services, text, model=model, voice=voice, speed=speed))
        finally:
            services.close()
        return
    fmt = output.suffix.lower().lstrip(".") or "wav"
    fmt = {"ogg": "opus"}.get(fmt, fmt)
    if fmt not in AUDIO_FORMATS:
        raise PerceptionInputError(f"cannot write '{output.suffix}' audio; use one of {', '.join(AUDIO_FORMATS)}")
    services = open_services()
    try:
        pcm, rate, used = run(_speak(services, text, model=model, voice=voice, speed=speed))
    finally:
        services.close()
    output.write_bytes(encode_audio(pcm, rate, fmt))
    console.print(f"[green]wrote[/] {output} ({len(pcm) / 2 / rate:.1f} s, {used})")


async def voice_chat(services: Services, question: Path, answer: Path | None, *, model: str | None,
                     max_tokens: int) -> None:
    """One spoken turn: transcribe ``question``, answer it (streamed as text), speak the answer."""
    from sovereign.kernel.messages import ChatRequest, Message

    principal = services.keys.local_principal()
    heard = await _transcribe(services, question, model=None, language=None, translate=False, fmt="text")
    console.print(f"[bold cyan]you (heard)>[/] {heard}")
    backend = await services.governed_model(principal, model)
    request = ChatRequest(model=backend.name, messages=[Message(role="user", content=heard)], max_tokens=max_tokens)
    words: list[str] = []
    console.print("[bold green]model>[/] ", end="")
    async for event in backend.stream(request):
        if event.content:
            words.append(event.content)
            console.print(event.content, end="", markup=False, highlight=False)
    console.print()
    reply = "".join(words).strip()
    target = answer or question.with_name(question.stem + ".answer.wav")
    try:
        pcm, rate, used = await _speak(services, reply, model=None, voice=None, speed=1.0)
    except SovereignError as exc:
        console.print(f"[red]could not speak the answer:[/] {exc.message}")
        return
    fmt = target.suffix.lower().lstrip(".") or "wav"
    target.write_bytes(encode_audio(pcm, rate, fmt if fmt in AUDIO_FORMATS else "wav"))
    console.print(f"[dim]spoken answer: {target} ({len(pcm) / 2 / rate:.1f} s, {used})[/]")
