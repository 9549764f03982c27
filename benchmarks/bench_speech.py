"""Speech: time to first audio (TTFA) for a one-sentence reply, and a spoken question -> spoken
answer loop on the embedded model, timed end to end.

TTFA is measured three ways in one run, each against Piper's own synthesis in the same run:
- over HTTP: ``POST /v1/audio/speech`` (wav, streamed) on a ``sovereign serve`` process, the time
  to the first audio bytes after the WAV header (the voice is preloaded at start-up), beside an
  authorised ``GET /v1/models`` (the HTTP stack's own cost);
- in process: ``GovernedPerception.speak`` (authorise, reserve, the first piece);
- Piper alone: ``synthesize`` of the same first piece (sovereign cuts the first sentence at a
  phrase boundary, see ``perception.speech.pieces``), and of the whole sentence (one piece a
  sentence, what Piper does by itself).
The request path's own cost is TTFA minus Piper's time for the same first piece.

    python benchmarks/bench_speech.py [--runs 5] [--loop 3] [--no-http]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import API_KEY, Server, make_home  # noqa: E402

from sovereign.config import load_settings  # noqa: E402
from sovereign.kernel.messages import ChatRequest, Message  # noqa: E402
from sovereign.perception.audio import encode_audio  # noqa: E402
from sovereign.perception.speech import pieces  # noqa: E402
from sovereign.services import Services  # noqa: E402

REPLIES = [
    "The capital of France is Paris, which is also its largest city.",
    "Your meeting with the design team has been moved to Thursday afternoon.",
    "I found three files in the workspace that mention the quarterly budget.",
    "It will be sunny tomorrow morning with a light breeze from the west.",
    "The report is ready and I saved it as summary dot text in your folder.",
]
QUESTIONS = ["What is the capital of France?", "How many days are there in a week?",
             "What colour is the sky on a clear day?"]


async def first_audio(governed, text: str, model: str) -> tuple[float, float, float]:
    """(ms to the first piece, ms in all, seconds of audio) of one governed, streamed reply."""
    started = time.perf_counter()
    stream = await governed.speak(text, model=model)
    first, samples = None, 0
    async for piece in stream.pcm():
        if first is None:
            first = (time.perf_counter() - started) * 1000
        samples += len(piece) // 2
    return first or 0.0, (time.perf_counter() - started) * 1000, samples / stream.rate


def piper_direct(voice, text: str) -> tuple[float, float]:
    """(ms to the first chunk, ms in all) of piper-tts's own ``synthesize`` (a chunk a sentence)."""
    started = time.perf_counter()
    first = None
    for _chunk in voice.synthesize(text):
        if first is None:
            first = (time.perf_counter() - started) * 1000
    return first or 0.0, (time.perf_counter() - started) * 1000


async def voice_loop(services: Services, governed, question: str) -> dict[str, float]:
    """Speak ``question`` (Piper), then time: transcribe -> model answer (streamed) -> first audio."""
    piper = services.perception.engine("piper-joe", "speech")[1]
    wav = encode_audio(b"".join(piper.stream(question)), piper.rate, "wav")
    started = time.perf_counter()
    heard = (await governed.transcribe(wav)).text
    heard_at = time.perf_counter()
    model = await services.governed_model(services.keys.local_principal())
    request = ChatRequest(model=model.name, max_tokens=48, temperature=0.0,
                          messages=[Message(role="system", content="Answer in one short sentence."),
                                    Message(role="user", content=heard)])
    words, first_token = [], None
    async for event in model.stream(request):
        if event.content:
            first_token = first_token or time.perf_counter()
            words.append(event.content)
    answered = time.perf_counter()
    first_ms, _, seconds = await first_audio(governed, "".join(words).strip() or "I do not know.", "piper-joe")
    return {"transcribe_ms": (heard_at - started) * 1000, "first_token_ms": ((first_token or answered) - heard_at) * 1000,
            "answer_ms": (answered - heard_at) * 1000, "first_audio_ms": first_ms,
            "end_to_first_audio_ms": (answered - started) * 1000 + first_ms, "answer_audio_s": seconds}


def http_first_audio(server: Server, text: str) -> tuple[float, float]:
    """(ms to the first audio bytes after the 44-byte WAV header, ms in all) over HTTP."""
    started, first, received = time.perf_counter(), None, 0
    with httpx.stream("POST", f"{server.url}/v1/audio/speech", timeout=120,
                      headers={"Authorization": f"Bearer {API_KEY}"},
                      json={"model": "piper-joe", "input": text, "response_format": "wav"}) as response:
        response.raise_for_status()
        for chunk in response.iter_raw():
            received += len(chunk)
            if first is None and received > 44:
                first = (time.perf_counter() - started) * 1000
    return first or 0.0, (time.perf_counter() - started) * 1000


def http_round_trip(server: Server) -> float:
    """ms of an authorised ``GET /v1/models``: the HTTP stack's own cost, the baseline for TTFA."""
    started = time.perf_counter()
    httpx.get(f"{server.url}/v1/models", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60).raise_for_status()
    return (time.perf_counter() - started) * 1000


def ttfa(services: Services, governed, piper, runs: int, server: Server | None) -> dict[str, list[float]]:
    """TTFA rows (ms) over ``runs`` passes of ``REPLIES``, the paths interleaved."""
    rows: dict[str, list[float]] = {"http /v1/audio/speech (wav)": [], "http GET /v1/models": [],
                                    "sovereign in process": [],
                                    "piper: same first piece": [], "piper: whole sentence": [],
                                    "sovereign espeak-ng": [], "_audio_s": [], "_reply_ms": []}
    for _ in range(runs):
        for text in REPLIES:
            if server is not None:
                rows["http /v1/audio/speech (wav)"].append(http_first_audio(server, text)[0])
                rows["http GET /v1/models"].append(http_round_trip(server))
            first, total, seconds = asyncio.run(first_audio(governed, text, "piper-joe"))
            rows["sovereign in process"].append(first)
            rows["_audio_s"].append(seconds)
            rows["_reply_ms"].append(total)
            rows["piper: same first piece"].append(piper_direct(piper._voice, pieces(text)[0])[0])
            rows["piper: whole sentence"].append(piper_direct(piper._voice, text)[0])
            rows["sovereign espeak-ng"].append(asyncio.run(first_audio(governed, text, "espeak-ng"))[0])
    return {name: values for name, values in rows.items() if values}


def print_ttfa(rows: dict[str, list[float]], runs: int) -> None:
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"time to first audio, one-sentence replies ({len(REPLIES)} replies x {runs} runs, medians):")
    for name, values in rows.items():
        if not name.startswith("_"):
            print(f"  {name:30s} {statistics.median(values):7.1f} ms")
    piece = statistics.median(rows["piper: same first piece"])
    for name in ("http /v1/audio/speech (wav)", "sovereign in process"):
        if name in rows:
            cost = statistics.median(a - b for a, b in zip(rows[name], rows["piper: same first piece"], strict=True))
            print(f"  {name} / piper same first piece = {statistics.median(rows[name]) / piece:.3f}"
                  f"  (request path's own cost, median of pairs: {cost:.1f} ms)")
    ratio = statistics.median(rows["sovereign in process"]) / statistics.median(rows["piper: whole sentence"])
    print(f"  sovereign in process / piper whole sentence = {ratio:.3f}")
    mean_audio = statistics.mean(rows["_audio_s"])
    print(f"  piper real-time factor (whole replies through sovereign): "
          f"{statistics.median(rows['_reply_ms']) / 1000 / mean_audio:.3f} (replies of {mean_audio:.1f} s)")


async def loops(services: Services, governed, count: int) -> None:
    await voice_loop(services, governed, "Hello.")  # loads Whisper and the language model: not timed
    timed = [await voice_loop(services, governed, question) for question in QUESTIONS[:count]]
    print(f"spoken question -> spoken answer on {services.settings.model_for('instant')} "
          f"(whisper-base, piper-joe; {len(timed)} questions, medians):")
    for key in timed[0]:
        print(f"  {key:24s} {statistics.median(loop[key] for loop in timed):8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--loop", type=int, default=3, help="spoken questions to time (0: none)")
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP server (it loads the language model)")
    args = parser.parse_args()
    home = make_home()
    services = Services.open(load_settings(home), progress=False)
    governed = services.governed_perception(services.keys.local_principal())
    piper = services.perception.engine("piper-joe", "speech")[1]
    asyncio.run(first_audio(governed, "Warm up.", "piper-joe"))
    piper_direct(piper._voice, "Warm up.")
    if args.no_http:
        print_ttfa(ttfa(services, governed, piper, args.runs, None), args.runs)
    else:
        with Server(make_home()) as server:
            http_first_audio(server, "Warm up.")
            print_ttfa(ttfa(services, governed, piper, args.runs, server), args.runs)
    if args.loop:
        asyncio.run(loops(services, governed, args.loop))
    services.close()


if __name__ == "__main__":
    main()
