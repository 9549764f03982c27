"""Console routes: page shells, static assets, and HTML fragments of the JSON API.

Page shells hold no data and need no key. A fragment is an API answer rendered as HTML: its
route authenticates like every API route, then calls the very route function the JSON API
serves (so roles, scopes and ownership are checked in one place, on the governed path) and
renders the result. Actions (chat, approve, edit, ingest, start a run) go from the browser
straight to the JSON API with the key kept in the browser session.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from sovereign import __version__
from sovereign.errors import NotFoundError
from sovereign.governance.authz import ROLE_RANK
from sovereign.server import routes_approvals, routes_governance, routes_kb, routes_memory, routes_models
from sovereign.server import routes_costs, routes_runs
from sovereign.server.auth import authenticate
from sovereign.server.console import STATIC, TEMPLATES, VENDORED
from sovereign.server.console.chart import bar_chart, daily_points

__all__ = ["install_console"]

# page -> (title, least role that can use it); the nav shows a key only what its role allows.
PAGES: dict[str, tuple[str, str]] = {
    "chat": ("Chat", "operator"), "runs": ("Runs", "viewer"), "approvals": ("Approvals", "viewer"),
    "spend": ("Spend", "viewer"), "memory": ("Memory", "viewer"), "knowledge": ("Knowledge", "viewer"),
    "audit": ("Audit", "admin"), "models": ("Models", "viewer"),
}
HTMX = next(iter(VENDORED))

templates = Jinja2Templates(directory=str(TEMPLATES))
templates.env.filters["usd"] = lambda v: f"${float(v or 0):.6f}".rstrip("0").rstrip(".") if v else "$0"
templates.env.filters["when"] = lambda v: (v or "")[:19].replace("T", " ")

pages = APIRouter(include_in_schema=False)
fragments = APIRouter(prefix="/console/ui", include_in_schema=False, dependencies=[Depends(authenticate)])


def install_console(app: FastAPI) -> None:
    """Mount the console on ``app``: ``/`` and ``/console/...``."""
    app.mount("/console/static", StaticFiles(directory=str(STATIC)), name="console-static")
    app.include_router(pages)
    app.include_router(fragments)


def _page(request: Request, page: str, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, f"{page}.html", {
        "page": page, "pages": PAGES, "htmx": HTMX, "version": __version__, **context})


@pages.get("/", response_class=HTMLResponse)
async def home(request: Request) -> HTMLResponse:
    return _page(request, "chat")


@pages.get("/console/runs/{run_id}", response_class=HTMLResponse)
async def run_page(request: Request, run_id: str) -> HTMLResponse:
    return _page(request, "run", run_id=run_id)


@pages.get("/console/{page}", response_class=HTMLResponse)
async def page(request: Request, page: str) -> HTMLResponse:
    if page not in PAGES:
        raise NotFoundError(f"no console page '{page}' (pages: {', '.join(PAGES)})")
    return _page(request, page)


# --- fragments -------------------------------------------------------------------------------


def _fragment(request: Request, name: str, **context: Any) -> HTMLResponse:
    principal = request.state.principal
    rank = ROLE_RANK.get(principal.role, -1)
    return templates.TemplateResponse(request, f"fragments/{name}.html", {
        "principal": principal, "can_use": rank >= ROLE_RANK["operator"],
        "is_admin": rank >= ROLE_RANK["admin"], **context})


@fragments.get("/nav", response_class=HTMLResponse)
async def nav(request: Request) -> HTMLResponse:
    """Who is signed in, and the pages their role may use (a bad key is a 401 here)."""
    rank = ROLE_RANK.get(request.state.principal.role, -1)
    allowed = {name: title for name, (title, role) in PAGES.items() if rank >= ROLE_RANK[role]}
    return _fragment(request, "nav", allowed=allowed, current=request.query_params.get("page", ""))


@fragments.get("/models/options", response_class=HTMLResponse)
async def model_options(request: Request) -> HTMLResponse:
    listed = (await routes_models.list_models(request))["data"]
    default = request.app.state.services.settings.model_for("instant")
    models = [m for m in listed if m.get("kind") != "router"]
    return _fragment(request, "model_options", models=models, default=default, auto=len(models) < len(listed))


@fragments.get("/models", response_class=HTMLResponse)
async def models(request: Request) -> HTMLResponse:
    listed = (await routes_models.list_models(request))["data"]
    return _fragment(request, "models", models=[m for m in listed if m.get("kind") != "router"])  # weights only


@fragments.get("/runs", response_class=HTMLResponse)
async def runs(request: Request, status: str | None = None) -> HTMLResponse:
    listed = await routes_runs.list_runs(request, limit=50, status=status or None)
    return _fragment(request, "runs", runs=listed["data"])


@fragments.get("/runs/{run_id}", response_class=HTMLResponse)
async def run_header(request: Request, run_id: str) -> HTMLResponse:
    return _fragment(request, "run_header", run=await routes_runs.get_run(request, run_id, steps=False))


@fragments.get("/approvals", response_class=HTMLResponse)
async def approvals(request: Request, status: str = "pending") -> HTMLResponse:
    status = status if status in ("pending", "approved", "denied", "expired", "cancelled", "all") else "pending"
    listed = await routes_approvals.list_approvals(request, status=status, run_id=None, limit=100)
    principal = request.state.principal
    return _fragment(request, "approvals", approvals=listed["data"], status=status,
                     can_decide=principal.role in ("admin", "operator"))


@fragments.get("/spend", response_class=HTMLResponse)
async def spend(request: Request, days: int = Query(default=14, ge=1, le=366)) -> HTMLResponse:
    """Own spend and caps (``/v1/spend``), costs by day, owner, agent and model (``/v1/costs``)."""
    own = await routes_governance.own_spend(request)
    since = (datetime.now(UTC).date() - timedelta(days=days - 1)).isoformat()
    groups = {by: await routes_costs.costs(request, by=by, since=since, until=None, owner=None, agent=None,
                                           model=None, reprice=None) for by in ("day", "owner", "agent", "model")}
    names = {row["id"]: row["name"] for row in request.app.state.services.keys.list_identities()}
    caps = (await routes_governance.list_caps(request))["data"] if request.state.principal.role == "admin" else None
    chart = bar_chart(daily_points(groups["day"]["rows"], days))
    return _fragment(request, "spend", own=own, groups=groups, caps=caps, chart=chart, days=days, names=names)


@fragments.get("/memory", response_class=HTMLResponse)
async def memory(request: Request, q: str = "", history: bool = False) -> HTMLResponse:
    if q.strip():
        items = (await routes_memory.search_memory(request, q=q, k=20, agent=None))["data"]
    else:
        items = (await routes_memory.list_memory(request, agent=None, kind=None, history=history,
                                                 limit=200, offset=0))["data"]
    return _fragment(request, "memory", items=items, query=q)


@fragments.get("/memory/{memory_id}/history", response_class=HTMLResponse)
async def memory_history(request: Request, memory_id: str) -> HTMLResponse:
    items = (await routes_memory.memory_history(memory_id, request))["data"]
    return _fragment(request, "memory_history", items=items)


@fragments.get("/kb/documents", response_class=HTMLResponse)
async def kb_documents(request: Request) -> HTMLResponse:
    return _fragment(request, "kb_documents", documents=(await routes_kb.list_documents(request))["data"])


@fragments.get("/kb/search", response_class=HTMLResponse)
async def kb_search(request: Request, q: str = Query(min_length=1, max_length=2000)) -> HTMLResponse:
    found = await routes_kb.search(request, q=q, k=8)
    return _fragment(request, "kb_hits", hits=found["data"], query=q)


@fragments.get("/audit", response_class=HTMLResponse)
async def audit(request: Request) -> HTMLResponse:
    verdict = await routes_governance.audit_verify(request)
    since = max(0, int(verdict["entries"]) - 100)
    entries = (await routes_governance.audit_entries(request, since=since, kind=None, limit=100))["data"]
    return _fragment(request, "audit", verdict=verdict, entries=list(reversed(entries)))
