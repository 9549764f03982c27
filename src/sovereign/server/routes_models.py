"""``/v1/models``: the models the caller's key may use (its ``models`` scope), and one of them by id;
``auto`` (the router) is listed first when the key may use at least one model it routes to."""

from __future__ import annotations

from fastapi import APIRouter, Request

from sovereign.errors import UnknownModelError
from sovereign.governance.authz import authorize, can
from sovereign.kernel.registry import ModelSpec

__all__ = ["router"]

router = APIRouter(tags=["models"])


def _model_json(spec: ModelSpec) -> dict:
    return {
        "id": spec.name, "object": "model", "created": 0, "owned_by": "sovereign",
        "backend": spec.backend, "kind": spec.kind, "context_size": spec.context_size, "tier": spec.tier,
        "jurisdiction": spec.jurisdiction, "licence": spec.licence,
        "pricing": {"cached_input": spec.prices.cached_input, "input": spec.prices.input, "output": spec.prices.output},
        "provenance": _provenance(spec),
    }


def _provenance(spec: ModelSpec) -> dict:
    """Where the model comes from: local weights (file, SHA-256 checked before loading, the
    package its parts ship in) or a remote endpoint."""
    if spec.is_local or spec.has_weights:
        return {"kind": "local", "weights_file": spec.weights_file, "sha256": spec.sha256,
                "size_bytes": spec.weights_size, "package": spec.parts.package if spec.parts else None,
                "parts": spec.parts.count if spec.parts else None, "source": spec.provenance or None,
                "files": [{"name": f.name, "sha256": f.sha256, "size_bytes": f.size} for f in spec.files]}
    if spec.kind != "chat":  # an engine without weights (a Debian package run as a process)
        return {"kind": "local", "engine": spec.backend, "source": spec.provenance}
    return {"kind": "remote" if spec.base_url else "in-process", "base_url": spec.base_url,
            "remote_name": spec.remote_name}


def _auto_json(request: Request, principal) -> dict | None:
    """The router's entry, or None when policy and the key's scopes leave it no model."""
    routable = request.app.state.services.router.routable(principal)
    if not routable:
        return None
    return {"id": "auto", "object": "model", "created": 0, "owned_by": "sovereign", "kind": "router",
            "backend": "router", "tier": None, "provenance": {"kind": "router"},
            "description": "routed per request: policy, then difficulty, then cost, with fallbacks",
            "candidates": routable}


@router.get("/v1/models")
async def list_models(request: Request) -> dict:
    """Every model in the registry that this key's scopes allow (all of them for an unscoped key)."""
    principal = authorize(request.state.principal, action="read")
    services = request.app.state.services
    data = [_model_json(spec) for spec in services.registry if can(principal, model=spec.name, action="read")]
    auto = _auto_json(request, principal)
    return {"object": "list", "data": ([auto] if auto is not None else []) + data}


@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, request: Request) -> dict:
    """One model; a model outside the key's scopes is answered as unknown (its name is not confirmed)."""
    principal = authorize(request.state.principal, action="read")
    services = request.app.state.services
    known = {spec.name: spec for spec in services.registry}
    if model_id == "auto" and model_id not in known and (auto := _auto_json(request, principal)) is not None:
        return auto
    if model_id not in known or not can(principal, model=model_id, action="read"):
        raise UnknownModelError(f"model '{model_id}' does not exist or this key may not use it", param="model")
    return _model_json(known[model_id])
