"""Transcription: WER and speed (× real time) on a labelled set built here, sovereign's governed
path (``GovernedPerception.transcribe``: decode, caps, engine, ledger, audit) side by side with
faster-whisper called directly on the same weights with the same options, in one run.

The set: ``SENTENCES`` (written for this benchmark) spoken by espeak-ng (three voices, three
speeds) and the Piper voice (two speeds): 8 sentences x 5 voices = 40 clips, about 3 minutes of
audio. Each clip is transcribed by both paths, interleaved, ``--runs`` times; times are medians.

    python benchmarks/bench_transcribe.py [--model whisper-base] [--runs 3] [--sentences 8]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import make_home  # noqa: E402
from _perception_data import SENTENCES, VOICES, espeak_wav, wer  # noqa: E402

from sovereign.config import load_settings  # noqa: E402
from sovereign.perception.audio import encode_audio  # noqa: E402
from sovereign.services import Services  # noqa: E402


def build_set(services: Services, folder: Path, count: int) -> list[tuple[str, str, bytes]]:
    """(label, reference text, wav bytes) for each sentence in each voice."""
    clips = []
    piper = None
    for engine, voice, speed in VOICES:
        for n, text in enumerate(SENTENCES[:count]):
            label = f"{engine}:{voice or 'joe'}@{speed}"
            if engine == "espeak-ng":
                data = espeak_wav(text, voice, speed, folder / f"{n}-{voice}-{speed}.wav").read_bytes()
            else:
                piper = piper or services.perception.engine("piper-joe", "speech")[1]
                pcm = b"".join(piper.stream(text, speed=speed))
                data = encode_audio(pcm, piper.rate, "wav")
            clips.append((label, text, data))
    return clips


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="whisper-base")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sentences", type=int, default=len(SENTENCES))
    parser.add_argument("--show", action="store_true", help="print each clip whose transcript has errors")
    args = parser.parse_args()
    services = Services.open(load_settings(make_home()), progress=False)
    from faster_whisper import WhisperModel, decode_audio

    spec, engine = services.perception.engine(args.model, "transcription")
    folder = services.perception.folder(spec)
    direct = WhisperModel(str(folder), device="cpu", compute_type="int8", local_files_only=True)
    governed = services.governed_perception(services.keys.local_principal())
    language = "en" if spec.name.endswith(".en") else None
    with tempfile.TemporaryDirectory() as tmp:
        clips = build_set(services, Path(tmp), args.sentences)
        audio_seconds = 0.0
        times = {"sovereign": [], "faster-whisper": []}
        errors = {"sovereign": [0, 0], "faster-whisper": [0, 0]}
        by_voice: dict[str, list[int]] = {}
        for run in range(args.runs):
            run_times = {"sovereign": 0.0, "faster-whisper": 0.0}
            for label, text, data in clips:
                path = Path(tmp) / "clip.wav"
                path.write_bytes(data)
                started = time.perf_counter()
                pieces, _ = direct.transcribe(decode_audio(str(path)), language=language, beam_size=1,
                                              condition_on_previous_text=False, vad_filter=False)
                peer_text = "".join(s.text for s in pieces)
                run_times["faster-whisper"] += time.perf_counter() - started
                started = time.perf_counter()
                ours = asyncio.run(governed.transcribe(data, model=spec.name)).text
                run_times["sovereign"] += time.perf_counter() - started
                if run == 0:
                    audio_seconds += governed.last.usage.prompt_tokens / 50
                    for name, hypothesis in (("sovereign", ours), ("faster-whisper", peer_text)):
                        wrong, total = wer(text, hypothesis)
                        errors[name][0] += wrong
                        errors[name][1] += total
                        if name == "sovereign" and args.show and wrong:
                            print(f"  [{label}] {text!r} -> {hypothesis!r}")
                        if name == "sovereign":
                            by_voice.setdefault(label, [0, 0])
                            by_voice[label][0] += wrong
                            by_voice[label][1] += total
            for name in times:
                times[name].append(run_times[name])
    import os

    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"model {spec.name}; {len(clips)} clips, {audio_seconds:.1f} s of audio; {args.runs} runs (medians)")
    for name in ("sovereign", "faster-whisper"):
        seconds = statistics.median(times[name])
        print(f"  {name:15s} WER {100 * errors[name][0] / errors[name][1]:5.2f}%  "
              f"{seconds:7.2f} s  {seconds / audio_seconds:.3f}x real time")
    ratio = statistics.median(times["sovereign"]) / statistics.median(times["faster-whisper"])
    print(f"  overhead: sovereign / faster-whisper = {ratio:.3f} (runs: "
          + ", ".join(f"{a / b:.3f}" for a, b in zip(times["sovereign"], times["faster-whisper"], strict=True)) + ")")
    for label, (wrong, total) in by_voice.items():
        print(f"  {label:22s} WER {100 * wrong / total:5.2f}%")
    services.close()


if __name__ == "__main__":
    main()
