"""``sovereign transcribe``, ``sovereign speak`` and ``sovereign chat --voice`` as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
import wave

import pytest

from conftest import make_home
from perception_fixtures import LIGHT, spoken, words

pytestmark = pytest.mark.integration  # real Whisper tiny.en, espeak-ng and the 0.5B model


def sovereign(*args: str, home, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "SOVEREIGN_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "sovereign.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def light_home(tmp_path, models_dir):
    return make_home(tmp_path / "home", models_dir, LIGHT)


def test_speak_then_transcribe_round_trip(light_home, tmp_path):
    out = tmp_path / "hello.wav"
    said = sovereign("speak", "Please open the window.", "-o", str(out), home=light_home)
    assert said.returncode == 0, said.stderr
    assert "espeak-ng" in said.stdout
    with wave.open(str(out)) as reader:
        assert reader.getnframes() / reader.getframerate() > 1.0
    heard = sovereign("transcribe", str(out), "--format", "vtt", home=light_home)
    assert heard.returncode == 0, heard.stderr
    assert heard.stdout.startswith("WEBVTT") and {"open", "window"} <= set(words(heard.stdout))
    wrong = sovereign("transcribe", str(tmp_path), home=light_home)
    assert wrong.returncode == 1 and "cannot read" in wrong.stderr
    bad = sovereign("speak", "x", "-o", str(tmp_path / "x.docx"), home=light_home)
    assert bad.returncode == 1 and "cannot write '.docx' audio" in bad.stderr


def test_chat_voice_answers_in_text_and_speech(light_home, tmp_path):
    question = spoken("What is the capital city of France?", tmp_path / "question.wav")
    answer = tmp_path / "answer.wav"
    result = sovereign("chat", "--voice", str(question), "--answer", str(answer), "--max-tokens", "24",
                       home=light_home)
    assert result.returncode == 0, result.stderr
    assert "you (heard)>" in result.stdout and "france" in result.stdout.lower()
    assert "model>" in result.stdout and "paris" in result.stdout.lower()
    with wave.open(str(answer)) as reader:
        assert reader.getnframes() / reader.getframerate() > 0.5


def test_speak_streams_wav_to_stdout(light_home):
    env = {**os.environ, "SOVEREIGN_HOME": str(light_home)}
    result = subprocess.run([sys.executable, "-m", "sovereign.cli.main", "speak", "One moment please. Here it is.",
                             "-o", "-"], env=env, capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr
    data = result.stdout
    assert data[:4] == b"RIFF" and data[8:16] == b"WAVEfmt " and data[36:40] == b"data"
    assert int.from_bytes(data[24:28], "little") == 22050  # espeak-ng's rate, written before the audio
    assert len(data) - 44 > 22050 * 2  # over a second of 16-bit audio, header written once
    assert data.count(b"RIFF") == 1
