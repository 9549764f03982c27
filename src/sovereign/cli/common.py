"""Helpers every CLI command shares: open the OS, print errors clearly, run coroutines."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from functools import wraps
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from sovereign.errors import SovereignError

console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")


def friendly_errors(func: Callable[..., T]) -> Callable[..., T]:
    """Turn a ``SovereignError`` into a one-line message and exit code 1 (no traceback)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return func(*args, **kwargs)
        except SovereignError as exc:
            err_console.print(f"[bold red]error:[/] {escape(exc.message)}")  # "[a]" is text, not a style
            raise typer.Exit(1) from None

    return wrapper


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def open_services():
    """The OS for this command; missing weights are assembled on first use, with a bar on stderr."""
    from sovereign.services import Services

    return Services.open()


def ensure_tier_weights(services) -> None:
    """Assemble (with the progress bar) any missing weights of the models the tiers use.

    The instant tier must succeed; another tier that cannot be assembled is reported and left to
    fail, with the same error, when something first asks for it.
    """
    from sovereign.cli.weights import tier_specs

    instant = services.settings.model_for("instant")
    for spec in tier_specs(services.settings, services.registry):
        try:
            services.prepare_weights(spec)
        except SovereignError as exc:
            if spec.name == instant:
                raise
            err_console.print(f"[yellow]warning:[/] {exc.message}")
