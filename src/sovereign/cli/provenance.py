"""Provenance status of a model for ``sovereign models`` and ``sovereign doctor``."""

from __future__ import annotations

import os

from sovereign.config import DEFAULT_TIERS, Settings
from sovereign.errors import EgressDeniedError, SovereignError, WeightsVerificationError
from sovereign.kernel.registry import ModelSpec
from sovereign.kernel.weights import part_paths, verify_model_files
from sovereign.services import Services


def tier_roles(settings: Settings) -> dict[str, list[str]]:
    """Model name -> the roles (``[kernel.tiers]``) it serves."""
    roles: dict[str, list[str]] = {}
    for role in DEFAULT_TIERS:
        roles.setdefault(settings.model_for(role), []).append(role)
    return roles


def weights_status(services: Services, spec: ModelSpec) -> tuple[bool, str]:
    """(usable, description) of a local model's weights in the shared cache."""
    path = services.registry.weights_path(spec)
    if not path.exists() or not all((path.parent / f.name).exists() for f in spec.files):
        try:
            part_paths(spec)
        except SovereignError:
            return False, f"[yellow]not installed[/] ({spec.install_hint or 'parts missing'})"
        return True, "[yellow]parts installed; assembled on first use[/] (or `sovereign weights assemble " + spec.name + "`)"
    try:
        hashed = verify_model_files(spec, path)
    except WeightsVerificationError as exc:
        return False, f"[bold red]REFUSED[/]: {exc.message}"
    how = "" if hashed else " (unchanged since last full hash)"
    return True, f"[green]verified[/] sha256 {spec.sha256[:12]}…{how}"


def provenance_status(services: Services, spec: ModelSpec) -> str:
    if spec.has_weights:
        return weights_status(services, spec)[1]
    if spec.kind != "chat":
        return spec.provenance
    if spec.backend != "openai" or not spec.base_url:
        return "in-process"
    try:
        services.egress.check(spec.base_url, purpose="status check")
    except EgressDeniedError:
        return f"[dim]remote; blocked by egress ({services.egress.mode})[/]"
    if spec.api_key_env and not os.environ.get(spec.api_key_env):
        return f"remote; allowed; no key in ${spec.api_key_env}"
    return "[green]remote; allowed[/]"
