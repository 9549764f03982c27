"""The command line as a user runs it: serve prints URL and key, chat streams, models, doctor."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest

from conftest import free_port

pytestmark = pytest.mark.integration


def sovereign(*args: str, home, stdin: str | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "SOVEREIGN_HOME": str(home), "COLUMNS": "200"}
    env.pop("SOVEREIGN_API_KEY", None)
    return subprocess.run([sys.executable, "-m", "sovereign.cli.main", *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=timeout)


def test_models_lists_provenance(home):
    result = sovereign("models", home=home)
    assert result.returncode == 0, result.stderr
    assert "qwen2.5-coder-0.5b-instruct" in result.stdout and "verified" in result.stdout
    assert "deepseek-v4-flash" in result.stdout and "blocked by egress" in result.stdout


def test_doctor_checks_weights_config_and_port(home):
    result = sovereign("doctor", home=home)
    assert "weights" in result.stdout and "verified" in result.stdout
    assert "config" in result.stdout and "port" in result.stdout and "sandbox" in result.stdout


def test_chat_streams_an_answer(home):
    result = sovereign("chat", "--max-tokens", "12", home=home, stdin="What is the capital of France? One word.\n/exit\n")
    assert result.returncode == 0, result.stderr
    assert "model>" in result.stdout and "Paris" in result.stdout
    assert "prompt" in result.stdout and "completion tokens" in result.stdout


def start_serve(home, port: int) -> tuple[subprocess.Popen, str]:
    """Start ``sovereign serve`` and read its banner up to the API-key line."""
    env = {**os.environ, "SOVEREIGN_HOME": str(home), "COLUMNS": "200"}
    env.pop("SOVEREIGN_API_KEY", None)
    process = subprocess.Popen([sys.executable, "-m", "sovereign.cli.main", "serve", "--port", str(port)],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any("API key" in line for line in lines):
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        lines.append(line)
    return process, "".join(lines)


def test_serve_prints_url_and_a_key_shown_once(home):
    port = free_port()
    process, banner = start_serve(home, port)
    try:
        assert f"http://127.0.0.1:{port}/v1" in banner
        key = next(word for word in banner.split() if word.startswith("sk-sov-"))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models").status_code == 401
    finally:
        process.terminate()
        process.wait(timeout=20)
    process, banner = start_serve(home, free_port())
    process.terminate()
    process.wait(timeout=20)
    assert "sk-sov-" not in banner and "created at first start" in banner
