"""Configuration: TOML in the home directory, environment overrides, clear validation errors."""

from __future__ import annotations

import pytest

from sovereign.config import ensure_home, load_settings
from sovereign.errors import ConfigError


def test_defaults_and_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SOVEREIGN_HOME", str(tmp_path / "h"))
    settings = load_settings()
    assert settings.home == (tmp_path / "h").resolve()
    assert settings.server.host == "127.0.0.1"
    assert settings.egress.mode == "offline"
    assert settings.database_path == settings.home / "sovereign.db"
    ensure_home(settings)
    assert settings.config_path.exists()
    assert (settings.home.stat().st_mode & 0o777) == 0o700
    assert load_settings().server.port == 8088  # the starter config is all comments


def test_toml_then_environment_override(tmp_path, monkeypatch):
    (tmp_path / "config.toml").write_text('[server]\nport = 9100\n[egress]\nmode = "allowlist"\nallow_hosts = ["api.example.com"]\n')
    settings = load_settings(tmp_path)
    assert settings.server.port == 9100 and settings.egress.allow_hosts == ["api.example.com"]
    monkeypatch.setenv("SOVEREIGN_SERVER__PORT", "9200")
    assert load_settings(tmp_path).server.port == 9200


def test_invalid_values_name_the_field(tmp_path):
    (tmp_path / "config.toml").write_text('[server]\nport = "lots"\n[egress]\nmode = "leaky"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path)
    assert "server.port" in info.value.message and "egress.mode" in info.value.message


def test_unknown_keys_and_bad_toml_are_refused(tmp_path):
    (tmp_path / "config.toml").write_text("[server]\nprot = 1\n")
    with pytest.raises(ConfigError, match="server.prot"):
        load_settings(tmp_path)
    (tmp_path / "config.toml").write_text("[server\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(tmp_path)


def test_user_models_extend_the_registry(tmp_path):
    from sovereign.kernel.registry import ModelRegistry

    (tmp_path / "config.toml").write_text(
        '[[models]]\nname = "my-vllm"\nbackend = "openai"\nbase_url = "http://127.0.0.1:8000/v1"\n'
        'prices = { cached_input = 0.1, input = 1.0, output = 2.0 }\n'
    )
    registry = ModelRegistry.load(load_settings(tmp_path))
    spec = registry.get("my-vllm")
    assert spec.prices.cost(cached_tokens=1_000_000, uncached_tokens=1_000_000, output_tokens=1_000_000) == pytest.approx(3.1)
    assert registry.get("deepseek-v4-flash").prices.cached_input == 0.0028


def test_kernel_parallel_reaches_the_embedded_backend(tmp_path):
    from sovereign.config import DEFAULT_MODEL
    from sovereign.services import Services

    assert load_settings(tmp_path).kernel.parallel == 4
    (tmp_path / "config.toml").write_text("[kernel]\nparallel = 2\n")
    services = Services.open(load_settings(tmp_path), progress=False)
    try:
        model = services.build_model(services.registry.get(DEFAULT_MODEL))
        assert model.options.parallel == 2 and model.engine is None  # the engine starts when the model loads
    finally:
        services.db.close()
    (tmp_path / "config.toml").write_text("[kernel]\nparallel = 0\n")
    with pytest.raises(ConfigError, match="parallel"):
        load_settings(tmp_path)
