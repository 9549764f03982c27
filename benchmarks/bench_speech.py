"""Speech: time to first audio for a one-sentence reply, streamed (sovereign cuts the first
sentence at a clause so the first piece is short) vs Piper called directly (one piece per
sentence), and a spoken question -> spoken answer loop on the embedded model, timed end to end.

    python benchmarks/bench_speech.py [--runs 5] [--loop 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import make_home  # noqa: E402

from sovereign.config import load_settings  # noqa: E402
from sovereign.kernel.messages import ChatRequest, Message  # noqa: E402
from sovereign.perception.audio import encode_audio  # noqa: E402
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


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--loop", type=int, default=3)
    args = parser.parse_args()
    services = Services.open(load_settings(make_home()), progress=False)
    governed = services.governed_perception(services.keys.local_principal())
    piper = services.perception.engine("piper-joe", "speech")[1]
    await first_audio(governed, "Warm up.", "piper-joe")
    piper_direct(piper._voice, "Warm up.")
    rows: dict[str, list[float]] = {"sovereign piper (streamed)": [], "piper direct": [], "sovereign espeak-ng": []}
    totals: dict[str, list[float]] = {name: [] for name in rows}
    audio = 0.0
    for _ in range(args.runs):
        for text in REPLIES:
            first, total, seconds = await first_audio(governed, text, "piper-joe")
            rows["sovereign piper (streamed)"].append(first)
            totals["sovereign piper (streamed)"].append(total)
            audio += seconds
            first, total = piper_direct(piper._voice, text)
            rows["piper direct"].append(first)
            totals["piper direct"].append(total)
            first, total, _ = await first_audio(governed, text, "espeak-ng")
            rows["sovereign espeak-ng"].append(first)
            totals["sovereign espeak-ng"].append(total)
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"time to first audio, one-sentence replies ({len(REPLIES)} replies x {args.runs} runs, medians):")
    for name in rows:
        print(f"  {name:28s} first audio {statistics.median(rows[name]):7.1f} ms   whole reply "
              f"{statistics.median(totals[name]):7.1f} ms")
    mean_audio = audio / (len(REPLIES) * args.runs)
    print(f"  piper real-time factor: {statistics.median(totals['piper direct']) / 1000 / mean_audio:.3f} "
          f"(replies of {mean_audio:.1f} s)")
    ratio = statistics.median(rows["sovereign piper (streamed)"]) / statistics.median(rows["piper direct"])
    print(f"  first audio, sovereign streamed / piper direct = {ratio:.3f}")
    await voice_loop(services, governed, "Hello.")  # loads Whisper and the language model: not timed
    loops = [await voice_loop(services, governed, question) for question in QUESTIONS[:args.loop]]
    print(f"spoken question -> spoken answer on {services.settings.model_for('instant')} "
          f"(whisper-base, piper-joe; {len(loops)} questions, medians):")
    for key in loops[0]:
        print(f"  {key:24s} {statistics.median(loop[key] for loop in loops):8.1f}")
    services.close()


if __name__ == "__main__":
    asyncio.run(main())
