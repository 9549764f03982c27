"""Configuration: ``$SOVEREIGN_HOME/config.toml`` validated by pydantic, with environment overrides.

Precedence, highest first: environment (``SOVEREIGN_<SECTION>__<KEY>``, e.g.
``SOVEREIGN_SERVER__PORT=9000``), then ``config.toml``, then the defaults below.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from sovereign.errors import ConfigError

DEFAULT_MODEL = "qwen2.5-coder-0.5b-instruct"
TOOLS_MODEL = "qwen2.5-coder-1.5b-instruct"
Role = Literal["instant", "tools"]
# The built-in choice of model per role; `[kernel.tiers]` in config.toml overrides it.
DEFAULT_TIERS: dict[str, str] = {"instant": DEFAULT_MODEL, "tools": TOOLS_MODEL}


def resolve_home(home: Path | str | None = None) -> Path:
    """The home directory: the argument, else ``$SOVEREIGN_HOME``, else ``~/.sovereign``."""
    chosen = home or os.environ.get("SOVEREIGN_HOME") or Path.home() / ".sovereign"
    return Path(chosen).expanduser().resolve()


def default_models_dir() -> Path:
    """The machine-wide weights cache every home shares: ``$SOVEREIGN_MODELS_DIR``, else
    ``$XDG_CACHE_HOME/sovereign/models``, else ``~/.cache/sovereign/models``."""
    if chosen := os.environ.get("SOVEREIGN_MODELS_DIR"):
        return Path(chosen).expanduser().resolve()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return (Path(cache).expanduser() / "sovereign" / "models").resolve()


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8088, ge=0, le=65535)
    require_api_key: bool = True
    max_queue: int = Field(default=64, ge=1, description="requests waiting per model before 503")
    metrics_public: bool = Field(default=False, description="serve /metrics without an API key")
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, description="larger request bodies get 413")


class TierSettings(_Section):
    """Which model serves each role when a request names none (the one place tiers are chosen).

    A role left unset falls back to ``kernel.default_model`` when that is set explicitly (the
    older single-model configuration), else to the built-in ``DEFAULT_TIERS``.
    """

    instant: str | None = Field(default=None, description="plain chat: API, `sovereign chat`, MCP chat (0.5B)")
    tools: str | None = Field(default=None, description="agents: tool use and code (1.5B)")


class KernelSettings(_Section):
    default_model: str = Field(default=DEFAULT_MODEL, description="kept for old configs; equals tiers.instant")
    tiers: TierSettings = Field(default_factory=TierSettings)
    n_ctx: int = Field(default=8192, ge=256)
    n_threads: int | None = Field(default=None, ge=1)
    n_batch: int = Field(default=512, ge=8)
    models_dir: Path | None = Field(default=None, description="shared weights cache; default default_models_dir()")
    prefix_cache: bool = True
    prefix_cache_max_mb: int = Field(default=2048, ge=0)
    prefix_cache_min_tokens: int = Field(default=128, ge=1)
    default_max_tokens: int = Field(default=512, ge=1)
    max_tool_calls: int = Field(default=4, ge=1, le=64, description="most tool calls per reply (parallel calls)")
    parallel: int = Field(default=4, ge=1, le=64,
                          description="requests each embedded model decodes at once (continuous batching); 1 = one at a time")

    @model_validator(mode="after")
    def _resolve_tiers(self) -> KernelSettings:
        explicit = "default_model" in self.model_fields_set
        for role, builtin in DEFAULT_TIERS.items():
            if getattr(self.tiers, role) is None:
                setattr(self.tiers, role, self.default_model if explicit else builtin)
        self.default_model = self.tiers.instant  # old readers of default_model see the chat tier
        return self


class EgressSettings(_Section):
    mode: Literal["offline", "allowlist", "open"] = "offline"
    allow_hosts: list[str] = Field(default_factory=list)


class SandboxSettings(_Section):
    """``[sandbox]``: how shell and Python tools are isolated (see ``tools/sandbox.py``)."""

    allow_weak: bool = Field(default=False, description=(
        "run shell/Python tools even where no isolation (bubblewrap, unshare) is available: "
        "resource limits plus Landlock where the kernel has it; see tools/sandbox.py for what that "
        "does not prevent"))
    wall_seconds: float = Field(default=30.0, gt=0)
    cpu_seconds: int = Field(default=20, ge=1)
    memory_mb: int = Field(default=1024, ge=64)
    max_output_bytes: int = Field(default=64_000, ge=1024)
    max_processes: int = Field(default=64, ge=4)
class AuditSettings(_Section):
    """Anchors: signed checkpoints of the audit chain's head kept outside the database."""

    anchor: bool = True
    anchor_every: int = Field(default=1000, ge=0, description="entries between anchors (0: only timer, exit, verify)")
    anchor_interval_s: float = Field(default=300.0, ge=0, description="the server also anchors this often (0: off)")
    anchor_file: Path | None = Field(default=None, description="append-only anchors; default HOME/audit-anchors.jsonl")
    anchor_key: Path | None = Field(default=None, description="Ed25519 signing key; default HOME/audit-anchor.key")

    def anchor_paths(self, home: Path) -> tuple[Path, Path]:
        """``(key, anchor file)`` for a home directory."""
        return self.anchor_key or home / "audit-anchor.key", self.anchor_file or home / "audit-anchors.jsonl"


class TracingSettings(_Section):
    """OpenTelemetry spans on the governed path (GenAI semantic conventions)."""

    enabled: bool = False
    otlp_endpoint: str | None = Field(default=None, description="OTLP/HTTP traces URL, e.g. http://127.0.0.1:4318/v1/traces")
    capture_content: bool = Field(default=False, description="record messages, tool arguments and results in spans")
    service_name: str = "sovereign"


class FinopsSettings(_Section):
    """``[finops]``: what local compute costs (see ``finops/energy.py``). Defaults: a desktop-class
    machine (65 W package power under load, $1,500 hardware over 3 years, busy a quarter of the
    time) at $0.17/kWh (about the 2025 US residential average). Set your own figures."""

    local_cost: bool = Field(default=True, description="price local calls by energy and hardware (false: $0)")
    power_watts: float = Field(default=65.0, ge=0, description="power draw while computing, when RAPL is unreadable")
    electricity_usd_per_kwh: float = Field(default=0.17, ge=0)
    hardware_usd: float = Field(default=1500.0, ge=0, description="purchase price of the machine")
    amortisation_years: float = Field(default=3.0, gt=0)
    utilisation: float = Field(default=0.25, gt=0, le=1, description="share of the time the machine computes")
    rapl: bool = Field(default=True, description="measure energy with /sys/class/powercap counters when readable")
    powercap_dir: Path = Field(default=Path("/sys/class/powercap"))


class RouterSettings(_Section):
    """``[router]``: how ``model: "auto"`` picks a model (see ``router/``). Policy first: a model
    must pass every allowlist (empty = any); ``private`` data never leaves the machine."""

    candidates: list[str] = Field(default_factory=list, description="models auto may use; empty: the local tiers")
    jurisdictions: list[str] = Field(default_factory=list, description="allowed jurisdictions, e.g. ['local', 'EU']")
    licences: list[str] = Field(default_factory=list, description="allowed licences (globs), e.g. ['Apache-2.0', 'MIT*']")
    default_data_class: Literal["public", "internal", "private"] = "private"
    offline: bool | None = Field(default=None, description="only local models; default: egress mode is offline")
    escalate: bool = Field(default=True, description="retry on a bigger model when an answer check fails")
    verifier: str = Field(default="", description="model asked yes/no whether an answer is right ('' : no verifier)")
    min_confidence: float = Field(
        default=0.0, ge=0, le=1, description="escalate an answer whose mean token probability is below this (0: off)")
    use_reasoning_profiles: bool = Field(
        default=True, description="skip reasoning where a model's measured profile says it does not pay")
    reasoning_profile: str = Field(
        default="", description="a profiles file (bench_router.py --calibrate) replacing the shipped entries")
    profile_z: float = Field(
        default=1.96, ge=0, le=10, description="where several models were measured on a kind: the quickest "
        "(model, reasoning) whose accuracy is below the best one's by at most this many standard errors "
        "(1.96: not significantly worse at 95%; 0: only the most accurate)")
    probe: bool = Field(default=True, description="a cheap health probe is a cooled-down breaker's trial")
    probe_interval_s: float = Field(default=15.0, ge=0, description="the server probes due breakers this often (0: off)")
    probe_timeout_s: float = Field(default=10.0, gt=0, description="a probe slower than this counts as a failure")
    timeout_s: float = Field(default=120.0, gt=0, description="a candidate slower than this is failed over")
    failures_to_open: int = Field(default=3, ge=1, description="consecutive failures that open a breaker")
    cooldown_s: float = Field(default=30.0, ge=0, description="how long an open breaker keeps a model out")


class PerceptionSettings(_Section):
    """Speech and image models (``data/perception.toml``) and the limits on what they are given."""

    transcription: str = Field(default="whisper-base", description="speech-to-text model (or whisper-tiny.en)")
    speech: str = Field(default="piper-joe", description="text-to-speech model; espeak-ng when piper is not installed")
    ocr: str = Field(default="rapidocr", description="OCR model (or tesseract)")
    max_audio_seconds: float = Field(default=1800.0, gt=0, description="longer audio is refused (413)")
    max_speech_chars: int = Field(default=4096, ge=1, description="longer text to speak is refused (413)")
    max_image_pixels: int = Field(default=40_000_000, ge=1, description="larger images are refused (413)")
    threads: int = Field(default=0, ge=0, description="CPU threads per engine (0: the engine's default)")
    beam_size: int = Field(default=5, ge=1, le=10, description="Whisper beam search width (1: greedy, faster)")
    size_windows: bool = Field(default=True, description="encode only the audio a Whisper window holds (plus 5 s, at "
                                                         "least 10 s), not 30 s of padding: short clips several times faster")
    preload: list[Literal["transcription", "speech", "ocr"]] = Field(
        default_factory=lambda: ["speech"], description="engines the server loads at start-up")


class PriceSheetConfig(_Section):
    cached_input: float = Field(default=0.0, ge=0)
    input: float = Field(default=0.0, ge=0)
    output: float = Field(default=0.0, ge=0)


class ModelConfig(_Section):
    """A model added by the user on top of the built-in catalogue."""

    name: str = Field(min_length=1)
    backend: Literal["llama_cpp", "openai"]
    base_url: str | None = None
    api_key_env: str | None = None
    remote_name: str | None = None
    weights_path: Path | None = None
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    licence: str = "unknown"
    jurisdiction: str = "unknown"
    context_size: int = Field(default=8192, ge=256)
    tier: Literal["small", "medium", "large", "frontier"] = "medium"
    native_thinking: bool = False
    vision: bool = Field(default=False, description="reads image_url parts natively (passed through, not OCR'd)")
    prices: PriceSheetConfig = Field(default_factory=PriceSheetConfig)


class SwarmSettings(_Section):
    """``[swarm]``: defaults of ``sovereign run --swarm`` and ``POST /v1/runs`` with ``swarm``
    (one budget for a swarm's whole tree; see ``swarm/budget.py``)."""

    executor: Literal["asyncio", "ray"] = Field(default="asyncio", description="where sub-agents run")
    ray_address: str | None = Field(default=None, description="join this Ray cluster; unset: start a local one")
    ray_num_cpus: int = Field(default=2, ge=1)
    ray_workers: int = Field(default=2, ge=1, description="Ray actors, each driving many sub-agents")
    max_agents: int = Field(default=32, ge=1)
    max_depth: int = Field(default=2, ge=1)
    max_concurrency: int = Field(default=8, ge=1)
    max_input_tokens: int | None = Field(default=None, ge=0)
    max_output_tokens: int | None = Field(default=None, ge=0)
    max_cost_usd: float | None = Field(default=None, ge=0)
    max_tool_calls: int | None = Field(default=500, ge=0)
    max_wall_s: float | None = Field(default=None, ge=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SOVEREIGN_", env_nested_delimiter="__", extra="forbid"
    )

    home: Path
    api_key: SecretStr | None = Field(default=None, description="admin key instead of a generated one")
    server: ServerSettings = Field(default_factory=ServerSettings)
    kernel: KernelSettings = Field(default_factory=KernelSettings)
    egress: EgressSettings = Field(default_factory=EgressSettings)
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    finops: FinopsSettings = Field(default_factory=FinopsSettings)
    router: RouterSettings = Field(default_factory=RouterSettings)
    swarm: SwarmSettings = Field(default_factory=SwarmSettings)
    perception: PerceptionSettings = Field(default_factory=PerceptionSettings)
    models: list[ModelConfig] = Field(default_factory=list)
    # Validated by the layers that own them (tools/mcp_client.py, agent/), which know their shape.
    mcp_servers: list[dict[str, Any]] = Field(default_factory=list)
    agents: list[dict[str, Any]] = Field(default_factory=list)
    channels: dict[str, Any] = Field(default_factory=dict, description="[[channels.irc]]: see channels/config.py")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the TOML file, which arrives as init arguments.
        return (env_settings, init_settings)

    # --- derived paths -------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.home / "config.toml"

    @property
    def database_path(self) -> Path:
        return self.home / "sovereign.db"

    @property
    def models_dir(self) -> Path:
        """The shared weights cache: ``kernel.models_dir`` if set, else ``default_models_dir()``."""
        return self.kernel.models_dir.expanduser() if self.kernel.models_dir else default_models_dir()

    def model_for(self, role: Role = "instant") -> str:
        """The model name that serves ``role`` when a request names no model.

        ``"instant"``: plain chat (API, ``sovereign chat``, MCP chat). ``"tools"``: agents (tool use
        and code). Chosen in ``[kernel.tiers]``; see ``TierSettings`` for the fall-backs.
        """
        if role not in DEFAULT_TIERS:
            raise ConfigError(f"unknown model role '{role}'; roles: {', '.join(DEFAULT_TIERS)}")
        return getattr(self.kernel.tiers, role)

    @property
    def prefix_cache_dir(self) -> Path:
        return self.home / "cache" / "prefix"


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc


def _describe(exc: ValidationError, source: Path) -> str:
    problems = []
    for err in exc.errors():
        where = ".".join(str(part) for part in err["loc"]) or "(top level)"
        problems.append(f"{where}: {err['msg']}")
    return f"invalid configuration (from {source} and SOVEREIGN_* environment): " + "; ".join(problems)


def load_settings(home: Path | str | None = None) -> Settings:
    """Load and validate settings for ``home``; raises ``ConfigError`` naming each bad field."""
    root = resolve_home(home)
    data = _read_toml(root / "config.toml")
    data.pop("home", None)
    try:
        settings = Settings(home=root, **data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, root / "config.toml")) from exc
    settings.home = root
    return settings


def ensure_home(settings: Settings) -> None:
    """Create the home directory (private to the user) and a commented starter config."""
    settings.home.mkdir(parents=True, exist_ok=True)
    os.chmod(settings.home, 0o700)
    if not settings.config_path.exists():
        starter = (Path(__file__).parent / "data" / "config.example.toml").read_text(encoding="utf-8")
        settings.config_path.write_text(starter, encoding="utf-8")
