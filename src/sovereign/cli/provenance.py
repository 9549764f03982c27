"""Provenance status of a model for ``sovereign models`` and ``sovereign doctor``."""

from __future__ import annotations

import os

from sovereign.errors import EgressDeniedError, SovereignError, WeightsVerificationError
from sovereign.kernel.registry import ModelSpec
from sovereign.kernel.weights import part_paths, verify_weights
from sovereign.services import Services


def provenance_status(services: Services, spec: ModelSpec) -> str:
    if spec.is_local:
        path = services.registry.weights_path(spec)
        if not path.exists():
            try:
                part_paths(spec)
            except SovereignError:
                return f"[yellow]not installed[/] ({spec.install_hint or 'parts missing'})"
            return "[yellow]parts installed, not assembled[/] (sovereign weights assemble " + spec.name + ")"
        try:
            verify_weights(spec, path)
        except WeightsVerificationError as exc:
            return f"[bold red]REFUSED[/]: {exc.message}"
        return f"[green]verified[/] sha256 {spec.sha256[:12]}…"
    if spec.backend != "openai" or not spec.base_url:
        return "in-process"
    try:
        services.egress.check(spec.base_url, purpose="status check")
    except EgressDeniedError:
        return f"[dim]remote; blocked by egress ({services.egress.mode})[/]"
    if spec.api_key_env and not os.environ.get(spec.api_key_env):
        return f"remote; allowed; no key in ${spec.api_key_env}"
    return "[green]remote; allowed[/]"
