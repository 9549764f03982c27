"""Transcription: WER and speed (× real time) on a labelled set built here, sovereign's governed
path (``GovernedPerception.transcribe``: decode, caps, engine, ledger, audit) side by side with
faster-whisper called directly on the same weights with the same decoding options, in one run.

The set: ``SENTENCES`` (written for this benchmark) spoken by espeak-ng (three voices, three
speeds: formant synthesis), the Piper voice (two speeds: a neural voice) and three CMU Flite voices
(statistical parametric; Debian ``flite``, left out with a note when absent): 8 sentences x 8
voices = 64 clips, about 4.5 minutes of audio. Then, reported apart, the real public-domain
recording shipped in ``data/perception/`` (JFK, 1961). Each clip is transcribed by both paths,
interleaved, ``--runs`` times; × real time is the mean over runs of compute seconds per second of
audio, and the overhead is the median of the runs' ratios. The decoding options are the product's
(``[perception] beam_size``, default 5, with temperature fallback); ``--beam-size 1`` measures greedy
decoding.

    python benchmarks/bench_transcribe.py [--model whisper-base] [--runs 3] [--sentences 8] [--beam-size 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import make_home  # noqa: E402
from _perception_data import REAL_RECORDINGS, SENTENCES, VOICES, espeak_wav, flite_wav, real_items, wer  # noqa: E402

from sovereign.config import load_settings  # noqa: E402
from sovereign.perception.audio import encode_audio  # noqa: E402
from sovereign.services import Services  # noqa: E402

PATHS = ("sovereign", "faster-whisper")


def build_set(services: Services, folder: Path, count: int) -> list[tuple[str, str, bytes]]:
    """(label, reference text, wav bytes) for each sentence in each voice."""
    clips = []
    piper = None
    for engine, voice, speed in VOICES:
        if engine == "flite" and shutil.which("flite") is None:
            print(f"note: flite is not installed (apt-get install flite): voice {voice} left out")
            continue
        for n, text in enumerate(SENTENCES[:count]):
            label = f"{engine}:{voice or 'joe'}@{speed}"
            if engine == "espeak-ng":
                data = espeak_wav(text, voice, speed, folder / f"{n}-{voice}-{speed}.wav").read_bytes()
            elif engine == "flite":
                data = flite_wav(text, voice, speed, folder / f"{n}-{voice}-{speed}.wav").read_bytes()
            else:
                piper = piper or services.perception.engine("piper-joe", "speech")[1]
                pcm = b"".join(piper.stream(text, speed=speed))
                data = encode_audio(pcm, piper.rate, "wav")
            clips.append((label, text, data))
    for name, text, data in real_items(REAL_RECORDINGS):
        clips.append((f"real:{name}", text, data))
    return clips


class Tally:
    """Word errors and compute seconds per (path, group), audio seconds per group."""

    def __init__(self) -> None:
        self.errors: dict[tuple[str, str], list[int]] = {}
        self.seconds: dict[tuple[str, str], float] = {}
        self.audio: dict[str, float] = {}

    def add(self, path: str, group: str, wrong_total: tuple[int, int] | None, seconds: float) -> None:
        self.seconds[path, group] = self.seconds.get((path, group), 0.0) + seconds
        if wrong_total is not None:
            cell = self.errors.setdefault((path, group), [0, 0])
            cell[0] += wrong_total[0]
            cell[1] += wrong_total[1]

    def wer(self, path: str, groups: list[str]) -> float:
        wrong = sum(self.errors[path, g][0] for g in groups)
        return 100 * wrong / max(1, sum(self.errors[path, g][1] for g in groups))

    def xrt(self, path: str, groups: list[str]) -> float:
        return sum(self.seconds[path, g] for g in groups) / sum(self.audio[g] for g in groups)


def run_once(clips, direct, options: dict, governed, spec_name: str, tmp: Path, tally: Tally, first: bool,
             show: bool) -> None:
    from faster_whisper import decode_audio

    for label, text, data in clips:
        path = tmp / "clip.wav"
        path.write_bytes(data)
        started = time.perf_counter()
        pieces, _ = direct.transcribe(decode_audio(str(path)), **options)
        peer_text = "".join(s.text for s in pieces)
        peer_seconds = time.perf_counter() - started
        started = time.perf_counter()
        ours = asyncio.run(governed.transcribe(data, model=spec_name)).text
        our_seconds = time.perf_counter() - started
        if first:
            tally.audio[label] = tally.audio.get(label, 0.0) + governed.last.usage.prompt_tokens / 50
        for name, hypothesis, seconds in (("sovereign", ours, our_seconds),
                                          ("faster-whisper", peer_text, peer_seconds)):
            scored = wer(text, hypothesis) if first else None
            tally.add(name, label, scored, seconds)
            if scored and scored[0] and show and name == "sovereign":
                print(f"  [{label}] {text!r} -> {hypothesis!r}")


def report(tally: Tally, runs: int, spec_name: str, options: dict, per_run: dict[str, list[float]]) -> None:
    groups = list(tally.audio)
    synthetic = [g for g in groups if not g.startswith("real:")]
    kinds = {"espeak-ng (formant)": [g for g in synthetic if g.startswith("espeak-ng")],
             "piper (neural)": [g for g in synthetic if g.startswith("piper")],
             "flite (parametric)": [g for g in synthetic if g.startswith("flite")],
             "all synthetic": synthetic, "real recordings": [g for g in groups if g.startswith("real:")]}
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"model {spec_name}; beam_size {options['beam_size']}, temperature fallback {options['temperature']}; "
          f"{sum(tally.audio[g] for g in synthetic):.1f} s synthetic audio; {runs} runs (times: mean of the runs)")
    for kind, members in kinds.items():
        if members:
            print(f"  {kind:20s} " + "   ".join(f"{p} WER {tally.wer(p, members):5.2f}% {tally.xrt(p, members):.3f}x RT"
                                                for p in PATHS))
    for group in groups:
        print(f"    {group:34s} WER {tally.wer('sovereign', [group]):5.2f}%  ({tally.audio[group]:.1f} s audio)")
    ratios = [a / b for a, b in zip(per_run["sovereign"], per_run["faster-whisper"], strict=True)]
    print(f"  overhead: sovereign / faster-whisper = {statistics.median(ratios):.3f} (runs: "
          + ", ".join(f"{r:.3f}" for r in ratios) + ")")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="whisper-base")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sentences", type=int, default=len(SENTENCES))
    parser.add_argument("--beam-size", type=int, default=None, help="[perception] beam_size (default: the product's)")
    parser.add_argument("--show", action="store_true", help="print each clip whose transcript has errors")
    args = parser.parse_args()
    extra = f"[perception]\nbeam_size = {args.beam_size}\n" if args.beam_size else ""
    services = Services.open(load_settings(make_home(extra)), progress=False)
    from faster_whisper import WhisperModel

    spec, engine = services.perception.engine(args.model, "transcription")
    direct = WhisperModel(str(services.perception.folder(spec)), device="cpu", compute_type="int8",
                          local_files_only=True)
    options = engine.options()  # the same decoding options as the governed path
    governed = services.governed_perception(services.keys.local_principal())
    tally = Tally()
    per_run: dict[str, list[float]] = {p: [] for p in PATHS}
    with tempfile.TemporaryDirectory() as tmp:
        clips = build_set(services, Path(tmp), args.sentences)
        for run in range(args.runs):
            before = {p: sum(v for (q, _), v in tally.seconds.items() if q == p) for p in PATHS}
            run_once(clips, direct, options, governed, spec.name, Path(tmp), tally, run == 0, args.show)
            for p in PATHS:
                per_run[p].append(sum(v for (q, _), v in tally.seconds.items() if q == p) - before[p])
    for key in tally.seconds:  # seconds per run
        tally.seconds[key] /= args.runs
    report(tally, args.runs, spec.name, options, per_run)
    services.close()


if __name__ == "__main__":
    main()
