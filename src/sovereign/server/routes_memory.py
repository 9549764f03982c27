"""``/v1/memory``: add, search, list, edit, forget memories of the calling identity (its owner
scope), and one memory's history (the versions it superseded)."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

router = APIRouter(prefix="/v1/memory", tags=["memory"])


class MemoryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: str = Field(min_length=1, max_length=20_000)
    agent: str = Field(default="default", min_length=1, max_length=200)
    kind: Literal["fact", "episode", "summary"] = "fact"
    session: str | None = None
    source: str = Field(default="api", min_length=1, max_length=200)
    confidence: float = Field(default=1.0, ge=0.0, le=1.0)


def _store(request: Request):
    """One store per app (its vector index is cached in memory)."""
    from sovereign.memory import MemoryStore

    state = request.app.state
    store = getattr(state, "memory_store", None)
    if store is None:
        services = state.services
        store = MemoryStore.open(services.db, services.settings.home)
        state.memory_store = store
    return store


def _owner(request: Request) -> str:
    """Memories belong to the caller's identity id (the owner id its runs recall with)."""
    return request.state.principal.identity_id


@router.post("")
async def add_memory(body: MemoryIn, request: Request) -> dict:
    store, owner = _store(request), _owner(request)
    result = await asyncio.to_thread(store.add, owner, body.content, agent=body.agent, kind=body.kind,
                                     source=body.source, confidence=body.confidence, session=body.session)
    return {"object": "memory.write", "action": result.action, "item": result.item.to_dict(),
            "replaced": result.replaced.to_dict() if result.replaced else None}


class MemoryEdit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: str = Field(min_length=1, max_length=20_000)


@router.get("/search")
async def search_memory(request: Request, q: str = Query(min_length=1), k: int = Query(5, ge=1, le=100),
                        agent: str | None = None) -> dict:
    store, owner = _store(request), _owner(request)
    hits = await asyncio.to_thread(store.search, owner, q, agent=agent, k=k)
    return {"object": "list", "data": [{**h.item.to_dict(), "score": h.score, "similarity": h.similarity}
                                        for h in hits]}


@router.get("")
async def list_memory(request: Request, agent: str | None = None, kind: str | None = None,
                      history: bool = False, limit: int = Query(100, ge=1, le=10_000),
                      offset: int = Query(0, ge=0)) -> dict:
    store, owner = _store(request), _owner(request)
    items = await asyncio.to_thread(store.list, owner, agent=agent, kind=kind, include_history=history,
                                    limit=limit, offset=offset)
    return {"object": "list", "data": [i.to_dict() for i in items]}


@router.delete("/{memory_id}")
async def forget_memory(memory_id: str, request: Request) -> dict:
    store, owner = _store(request), _owner(request)
    removed = await asyncio.to_thread(store.forget, owner, memory_id)
    return {"object": "memory.deleted", "id": memory_id, "deleted": True, "rows": removed}


@router.put("/{memory_id}")
async def edit_memory(memory_id: str, body: MemoryEdit, request: Request) -> dict:
    """A new version of the memory replaces it; the old one stays in its history."""
    store, owner = _store(request), _owner(request)
    result = await asyncio.to_thread(store.edit, owner, memory_id, body.content)
    return {"object": "memory.write", "action": result.action, "item": result.item.to_dict(),
            "replaced": result.replaced.to_dict() if result.replaced else None}


@router.get("/{memory_id}/history")
async def memory_history(memory_id: str, request: Request) -> dict:
    """The memory and the versions it superseded, newest first."""
    store, owner = _store(request), _owner(request)
    items = await asyncio.to_thread(store.history, owner, memory_id)
    return {"object": "list", "data": [i.to_dict() for i in items]}
