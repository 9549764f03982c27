"""``sovereign doctor``: check the install, config, tiers, shared weights, database, port and sandbox."""

from __future__ import annotations

import importlib
import socket
import sys
from collections.abc import Callable

import typer
from rich.table import Table

from sovereign.cli.common import console, open_services
from sovereign.errors import SovereignError

Check = tuple[str, bool, str]


def _python() -> Check:
    ok = sys.version_info >= (3, 11)
    return "python", ok, sys.version.split()[0]


def _llama() -> Check:
    try:
        import llama_cpp
    except ImportError as exc:
        return "llama-cpp-python", False, f"not importable: {exc}"
    return "llama-cpp-python", True, llama_cpp.__version__


def _config() -> Check:
    from sovereign.config import load_settings

    try:
        settings = load_settings()
    except SovereignError as exc:
        return "config", False, exc.message
    return "config", True, f"{settings.config_path} (egress: {settings.egress.mode})"


def _tiers() -> Check:
    from sovereign.config import DEFAULT_TIERS, load_settings

    settings = load_settings()
    chosen = ", ".join(f"{role} → {settings.model_for(role)}" for role in DEFAULT_TIERS)
    return "tiers", True, f"{chosen} (set in \\[kernel.tiers])"


def _weights() -> Check:
    from sovereign.cli.provenance import tier_roles, weights_status

    services = open_services()
    try:
        lines, ok = [f"shared cache {services.settings.models_dir}"], True
        for name, roles in tier_roles(services.settings).items():
            spec = services.registry.get(name)
            label = f"{name} ({', '.join(roles)})"
            if not spec.is_local:
                lines.append(f"{label}: remote")
                continue
            usable, detail = weights_status(services, spec)
            ok &= usable
            lines.append(f"{label}: {detail}")
        legacy = sorted((services.settings.home / "models").glob("*.gguf"))
        if legacy and services.settings.home / "models" != services.settings.models_dir:
            size = sum(path.stat().st_size for path in legacy) // 2**20
            lines.append(f"{services.settings.home / 'models'} holds {size} MB of per-home weights from an older "
                         "version; they are no longer used and can be deleted")
    finally:
        services.close()
    return "weights", ok, "\n".join(lines)


def _perception() -> Check:
    from sovereign.cli.perception import perception_report

    services = open_services()
    try:
        return perception_report(services)
    finally:
        services.close()


def _database() -> Check:
    try:
        services = open_services()
        services.db.query_one("SELECT 1")
    except Exception as exc:  # report any failure as a failed check
        return "database", False, str(exc)
    return "database", True, str(services.settings.database_path)


def _port() -> Check:
    from sovereign.config import load_settings

    settings = load_settings()
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((settings.server.host, settings.server.port))
        except OSError as exc:
            return "port", False, f"{settings.server.host}:{settings.server.port} is busy ({exc.strerror})"
    return "port", True, f"{settings.server.host}:{settings.server.port} is free"


def _sandbox() -> Check:
    try:
        module = importlib.import_module("sovereign.tools.sandbox")
    except ModuleNotFoundError:
        return "sandbox", False, "sandbox module not installed"
    return "sandbox", True, module.sandbox_status()


CHECKS: list[Callable[[], Check]] = [_python, _llama, _config, _tiers, _weights, _perception, _database, _port, _sandbox]


def doctor() -> None:
    """Check the install, weights, config, database, port and sandbox; exit 1 if any fails."""
    table = Table(title="sovereign doctor")
    for column in ("check", "status", "detail"):
        table.add_column(column)
    failed = 0
    for check in CHECKS:
        try:
            name, ok, detail = check()
        except SovereignError as exc:
            name, ok, detail = check.__name__.strip("_"), False, exc.message
        failed += not ok
        table.add_row(name, "[green]ok[/]" if ok else "[bold red]FAIL[/]", detail)
    console.print(table)
    if failed:
        raise typer.Exit(1)
