"""``/v1/approvals``: list pending tool-call approvals and approve or deny them.

Reading needs any valid key; deciding needs the ``admin`` or ``operator`` role. A decision is
seen by the waiting run at its next poll (about 100 ms), in this process or another.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from sovereign.errors import PermissionDeniedError
from sovereign.tools.approvals import ApprovalQueue

__all__ = ["router"]

router = APIRouter(prefix="/v1/approvals", tags=["approvals"])


class Decision(BaseModel):
    reason: str | None = Field(default=None, max_length=2000)


def _queue(request: Request) -> ApprovalQueue:
    return ApprovalQueue(request.app.state.services.db)


def _decider(request: Request) -> str:
    principal = getattr(request.state, "principal", None)
    if principal is None:
        return "api"
    if principal.role not in ("admin", "operator"):
        raise PermissionDeniedError(
            f"identity '{principal.identity_name}' (role {principal.role}) may not decide approvals; "
            "an admin or operator must"
        )
    return principal.identity_name


@router.get("")
async def list_approvals(
    request: Request,
    status: Literal["pending", "approved", "denied", "expired", "cancelled", "all"] = "pending",
    run_id: str | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
) -> dict:
    items = _queue(request).list(None if status == "all" else status, run_id=run_id, limit=limit)
    return {"object": "list", "data": [item.to_dict() for item in items]}


@router.get("/{approval_id}")
async def get_approval(request: Request, approval_id: str) -> dict:
    return _queue(request).get(approval_id).to_dict()


@router.post("/{approval_id}/approve")
async def approve(request: Request, approval_id: str, body: Decision | None = None) -> dict:
    who = _decider(request)
    return _queue(request).approve(approval_id, decided_by=who, reason=body.reason if body else None).to_dict()


@router.post("/{approval_id}/deny")
async def deny(request: Request, approval_id: str, body: Decision | None = None) -> dict:
    who = _decider(request)
    return _queue(request).deny(approval_id, decided_by=who, reason=body.reason if body else None).to_dict()
