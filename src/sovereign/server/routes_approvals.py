"""``/v1/approvals``: list pending tool-call approvals and approve or deny them.

A request belongs to its run's owner: callers see only their own (admins see all); deciding
needs the ``admin`` or ``operator`` role and is for the owner or an admin (403 otherwise). A
decision is seen by the waiting run at its next poll (about 100 ms), in this process or another.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from sovereign.errors import NotFoundError, PermissionDeniedError
from sovereign.governance.keys import Principal
from sovereign.tools.approvals import Approval, ApprovalQueue

__all__ = ["router"]

router = APIRouter(prefix="/v1/approvals", tags=["approvals"])


class Decision(BaseModel):
    reason: str | None = Field(default=None, max_length=2000)


def _queue(request: Request) -> ApprovalQueue:
    return ApprovalQueue(request.app.state.services.db)


def _principal(request: Request) -> Principal:
    return request.state.principal


def _visible(request: Request, approval: Approval) -> Approval:
    principal = _principal(request)
    if not approval.visible_to(principal.identity_id, principal.role):
        raise NotFoundError(f"no approval request with id '{approval.id}'")
    return approval


def _decider(request: Request, approval_id: str) -> str:
    """The deciding identity's name, if it may decide ``approval_id``; else 403."""
    principal = _principal(request)
    if principal.role not in ("admin", "operator"):
        raise PermissionDeniedError(
            f"identity '{principal.identity_name}' (role {principal.role}) may not decide approvals; "
            "an admin or operator must", code="insufficient_role", param="role")
    approval = _queue(request).get(approval_id)
    if not approval.visible_to(principal.identity_id, principal.role):
        raise PermissionDeniedError(
            f"approval '{approval_id}' belongs to another identity's run; only its owner or an admin may "
            "decide it", code="not_owner")
    return principal.identity_name


@router.get("")
async def list_approvals(
    request: Request,
    status: Literal["pending", "approved", "denied", "expired", "cancelled", "all"] = "pending",
    run_id: str | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
) -> dict:
    principal = _principal(request)
    owner = None if principal.role == "admin" else principal.identity_id
    items = _queue(request).list(None if status == "all" else status, run_id=run_id, owner=owner, limit=limit)
    return {"object": "list", "data": [item.to_dict() for item in items]}


@router.get("/{approval_id}")
async def get_approval(request: Request, approval_id: str) -> dict:
    return _visible(request, _queue(request).get(approval_id)).to_dict()


@router.post("/{approval_id}/approve")
async def approve(request: Request, approval_id: str, body: Decision | None = None) -> dict:
    who = _decider(request, approval_id)
    return _queue(request).approve(approval_id, decided_by=who, reason=body.reason if body else None).to_dict()


@router.post("/{approval_id}/deny")
async def deny(request: Request, approval_id: str, body: Decision | None = None) -> dict:
    who = _decider(request, approval_id)
    return _queue(request).deny(approval_id, decided_by=who, reason=body.reason if body else None).to_dict()
