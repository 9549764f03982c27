"""Authorisation: may this principal do this? Roles first, then the key's scopes.

Roles are ordered ``viewer < operator < admin``:

- ``read``  (viewer and up): list models, read own spend, own keys, health;
- ``use``   (operator and up): call models, run agents and tools;
- ``admin`` (admin only): keys of others, identities, caps, the audit log, egress settings.

Scopes narrow a key further: ``models``, ``tools`` and ``agents`` (exact names or globs; ``None``
is unrestricted). A refusal raises ``PermissionDeniedError`` (403) naming the missing role or scope.

Call it from every route (``authorize(request.state.principal, action="admin")``), from the chat
endpoint with ``model=``, and from the agent runtime before each tool call with ``tool=``.
"""

from __future__ import annotations

from typing import Literal

from sovereign.errors import PermissionDeniedError
from sovereign.governance.keys import Principal

__all__ = ["Action", "ROLE_RANK", "authorize", "can", "required_role"]

Action = Literal["read", "use", "admin"]
ROLE_RANK = {"viewer": 0, "operator": 1, "admin": 2}
_NEEDS: dict[str, str] = {"read": "viewer", "use": "operator", "admin": "admin"}


def required_role(action: Action) -> str:
    if action not in _NEEDS:
        raise ValueError(f"unknown action '{action}' (read, use or admin)")
    return _NEEDS[action]


def authorize(
    principal: Principal | None, *, model: str | None = None, tool: str | None = None,
    agent: str | None = None, action: Action = "use",
) -> Principal:
    """Return ``principal`` if it may do ``action`` (on ``model``/``tool``/``agent``); else raise."""
    if principal is None:
        raise PermissionDeniedError("no authenticated caller", code="unauthenticated")
    needed = required_role(action)
    if ROLE_RANK.get(principal.role, -1) < ROLE_RANK[needed]:
        raise PermissionDeniedError(
            f"'{principal.identity_name}' has role '{principal.role}'; this needs role '{needed}' or higher",
            code="insufficient_role", param="role",
        )
    scopes = principal.scopes
    if model is not None and not scopes.allows_model(model):
        raise PermissionDeniedError(
            f"API key {principal.key_id} is not scoped for model '{model}' (allowed: {', '.join(scopes.models or [])})",
            code="model_not_in_scope", param="model",
        )
    if tool is not None and not scopes.allows_tool(tool):
        raise PermissionDeniedError(
            f"API key {principal.key_id} is not scoped for tool '{tool}' (allowed: {', '.join(scopes.tools or [])})",
            code="tool_not_in_scope", param="tool",
        )
    if agent is not None and not scopes.allows_agent(agent):
        raise PermissionDeniedError(
            f"API key {principal.key_id} is not scoped for agent '{agent}' (allowed: {', '.join(scopes.agents or [])})",
            code="agent_not_in_scope", param="agent",
        )
    return principal


def can(principal: Principal | None, **what) -> bool:
    """``authorize`` as a yes/no (for filtering lists, e.g. models a key may see)."""
    try:
        authorize(principal, **what)
    except PermissionDeniedError:
        return False
    return True
