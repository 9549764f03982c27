"""Streaming speech on the governed path: the first piece is short, the next piece is made while
the first is sent, an early close stops the synthesis and releases the reservation, and engines
stay loaded between requests (and can be loaded before the first one)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from conftest import open_api_services
from sovereign.governance.spend import CapExceededError
from sovereign.perception.speech import pieces

_ARTICLES_AND_PREPOSITIONS = {"a", "an", "the", "of", "to", "in", "on", "at", "for", "from", "with", "by"}


class RecordingVoice:
    """A speech engine whose pieces are made on demand and say when each one starts (a double
    standing in for Piper, so the test sees what is synthesising when)."""

    rate = 16_000

    def __init__(self) -> None:
        self.started: list[threading.Event] = [threading.Event() for _ in range(8)]
        self.closed = threading.Event()
        self.fail_at: int | None = None

    def voices(self) -> list[str]:
        return ["recording"]

    def stream(self, text: str, *, voice: str | None = None, speed: float = 1.0):
        try:
            for n, piece in enumerate(pieces(text)):
                self.started[n].set()
                if n == self.fail_at:
                    raise RuntimeError(f"piece {n} failed")
                yield piece.encode().ljust(320, b"\0")
        finally:
            self.closed.set()


@pytest.fixture
def governed(tmp_path):
    services = open_api_services(tmp_path / "home", '[perception]\nspeech = "espeak-ng"\npreload = []\n')
    voice = RecordingVoice()
    services.perception.engines["espeak-ng"] = voice  # the loaded engine a request finds
    yield services, services.governed_perception(services.keys.local_principal()), voice
    services.close()


@pytest.mark.parametrize("sentence", [
    "The capital of France is Paris, which is also its largest city.",
    "Your meeting with the design team has been moved to Thursday afternoon.",
    "I found three files in the workspace that mention the quarterly budget.",
    "The report is ready and I saved it as summary dot text in your folder.",
])
def test_the_first_piece_is_a_short_phrase(sentence):
    first, *rest = pieces(sentence)
    words = first.split()
    assert 3 <= len(words) <= 5, first
    assert words[-1].lower() not in _ARTICLES_AND_PREPOSITIONS, first  # no dangling "in", "the"
    assert " ".join([first, *rest]) == sentence  # nothing lost or reordered


def test_short_replies_and_comma_clauses_keep_their_shape():
    assert pieces("Hello there. How are you?") == ["Hello there.", "How are you?"]
    assert pieces("Well, I think so.") == ["Well, I think so."]
    assert pieces("Sure, the answer is forty two and a half.") == ["Sure,", "the answer is forty two and a half."]


def test_the_next_piece_is_made_while_the_first_is_sent(governed, run_async):
    _, perception, voice = governed

    async def scenario() -> None:
        stream = await perception.speak("One two three. Four five six. Seven eight nine.")
        chunks = stream.pcm()
        first = await anext(chunks)
        assert first.startswith(b"One two three.")
        # The client has not asked for the second piece yet: it is already being made.
        assert await asyncio.to_thread(voice.started[1].wait, 5)
        rest = [chunk async for chunk in chunks]
        assert [chunk.rstrip(b"\0") for chunk in rest] == [b"Four five six.", b"Seven eight nine."]

    run_async(scenario())
    assert perception.last is not None and perception.last.usage.completion_tokens > 0
    assert voice.closed.wait(5)


def test_an_early_close_stops_synthesis_and_releases_the_reservation(governed, run_async):
    services, perception, voice = governed
    text = "One two three. Four five six. Seven eight nine. Ten eleven twelve."
    worst = len(text) * 11  # characters in + audio tokens out (50 a second, 5 characters a second at worst)
    services.spend.set_cap("global", None, "day", max_tokens=worst + worst // 2)  # room for one reservation

    async def hang_up() -> None:
        stream = await perception.speak(text)
        chunks = stream.pcm()
        await anext(chunks)
        await chunks.aclose()  # the client went away after the first piece

    run_async(hang_up())
    assert voice.closed.wait(5)  # the synthesis thread closed the engine's generator
    assert not voice.started[3].is_set()  # and did not run on to the end
    run_async(hang_up())  # the first reservation was released, so a second one fits
    services.spend.set_cap("global", None, "day", max_tokens=10)
    with pytest.raises(CapExceededError):
        run_async(hang_up())


def test_a_failing_piece_raises_where_it_failed_and_releases(governed, run_async):
    services, perception, voice = governed
    voice.fail_at = 1

    async def scenario() -> list[bytes]:
        stream = await perception.speak("One two three. Four five six.")
        got = []
        with pytest.raises(RuntimeError, match="piece 1 failed"):
            async for chunk in stream.pcm():
                got.append(chunk)
        return got

    assert len(run_async(scenario())) == 1
    assert perception.last is None  # nothing settled: the reservation was released instead


def test_engines_stay_loaded_and_can_be_loaded_before_the_first_request(tmp_path):
    services = open_api_services(tmp_path / "home", '[perception]\nspeech = "espeak-ng"\n')
    try:
        perception = services.perception
        assert services.settings.perception.preload == ["speech"]
        assert perception.loaded(None, "speech") is None
        assert perception.warm(["speech"]) == {"speech": "espeak-ng"}
        spec, engine = perception.loaded(None, "speech")
        assert spec.name == "espeak-ng" and perception.loaded("tts-1", "speech")[1] is engine
        assert perception.engine(None, "speech")[1] is engine  # the same engine on every request
    finally:
        services.close()
