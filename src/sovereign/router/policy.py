"""Policy, the router's first step: which models a request may go to at all.

A model is allowed when every rule holds: ``private`` data stays on this machine (a local
backend, or an endpoint on loopback), offline mode allows only such models too, the model's
jurisdiction is in the residency allowlist, its licence matches the licence allowlist, and the
caller's key is scoped for it. A request no candidate passes is refused with
``RoutingRefusedError`` naming, for each candidate, the rule it broke — never sent elsewhere.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlparse

from sovereign.errors import RoutingRefusedError
from sovereign.governance.authz import can
from sovereign.governance.keys import Principal
from sovereign.kernel.registry import ModelSpec

__all__ = ["DataClass", "Policy", "allowed_models", "stays_on_machine"]

DataClass = Literal["public", "internal", "private"]
DATA_CLASSES: tuple[str, ...] = ("public", "internal", "private")
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True, slots=True)
class Policy:
    """The allowlists (empty: anything) and the offline switch, from ``[router]``."""

    jurisdictions: tuple[str, ...] = ()
    licences: tuple[str, ...] = ()
    offline: bool = True


def stays_on_machine(spec: ModelSpec) -> bool:
    """Whether a call to ``spec`` never leaves this machine (embedded, or served on loopback)."""
    if spec.is_local or spec.backend == "in_process":
        return True
    host = urlparse(spec.base_url or "").hostname or ""
    return host in _LOOPBACK or host.startswith("127.")


def _broken_rule(spec: ModelSpec, policy: Policy, data_class: str, principal: Principal | None) -> str | None:
    """The first rule ``spec`` breaks for this request, in words, or None."""
    on_machine = stays_on_machine(spec)
    if data_class == "private" and not on_machine:
        return "data class 'private' never leaves this machine"
    if policy.offline and not on_machine:
        return "offline mode allows only models on this machine"
    if policy.jurisdictions and spec.jurisdiction not in policy.jurisdictions:
        return f"jurisdiction '{spec.jurisdiction}' is not in the residency allowlist [{', '.join(policy.jurisdictions)}]"
    if policy.licences and not any(fnmatch.fnmatchcase(spec.licence, pattern) for pattern in policy.licences):
        return f"licence '{spec.licence}' is not in the licence allowlist [{', '.join(policy.licences)}]"
    if principal is not None and not can(principal, model=spec.name, action="use"):
        return "the API key is not scoped for it"
    return None


def allowed_models(candidates: list[ModelSpec], policy: Policy, data_class: str,
                   principal: Principal | None) -> list[ModelSpec]:
    """The candidates the policy allows for this request, or ``RoutingRefusedError`` naming why
    each one was excluded."""
    if data_class not in DATA_CLASSES:
        raise RoutingRefusedError(f"unknown data class '{data_class}'; use one of {', '.join(DATA_CLASSES)}",
                                  code="invalid_data_class", param="data_class")
    allowed, reasons = [], []
    for spec in candidates:
        broken = _broken_rule(spec, policy, data_class, principal)
        if broken is None:
            allowed.append(spec)
        else:
            reasons.append(f"{spec.name}: {broken}")
    if not allowed:
        detail = "; ".join(reasons) if reasons else "the router has no candidate models ([router] candidates)"
        raise RoutingRefusedError(f"no allowed model can serve this request (data class '{data_class}'): {detail}",
                                  param="model")
    return allowed
