"""The FastAPI application: OpenAI-compatible API, health, metrics, and the native routers."""

from __future__ import annotations

import asyncio
import importlib
import logging
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from sovereign import __version__
from sovereign.governance.audit_anchor import anchor_periodically
from sovereign.governance.authz import authorize
from sovereign.server.auth import authenticate
from sovereign.server.console.routes import install_console
from sovereign.server.errors import install_error_handlers
from sovereign.server.limits import RequestLimits
from sovereign.server.metrics import Metrics
from sovereign.services import Services

log = logging.getLogger("sovereign.server")

# Native routers, mounted when their layer is installed: (module, attribute).
_ROUTERS = [
    ("sovereign.server.routes_models", "router"),
    ("sovereign.server.routes_chat", "router"),
    ("sovereign.server.routes_embeddings", "router"),
    ("sovereign.server.routes_responses", "router"),
    ("sovereign.server.routes_audio", "router"),
    ("sovereign.server.routes_memory", "router"),
    ("sovereign.server.routes_runs", "router"),
    ("sovereign.server.routes_approvals", "router"),
    ("sovereign.server.routes_governance", "router"),
    ("sovereign.server.routes_costs", "router"),
    ("sovereign.server.routes_route", "router"),
    ("sovereign.server.routes_kb", "router"),
]


def _mount_routers(app: FastAPI) -> None:
    for module_name, attribute in _ROUTERS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # that layer is not part of this build
            raise
        app.include_router(getattr(module, attribute), dependencies=[Depends(authenticate)])


def create_app(services: Services, *, preload: bool = True) -> FastAPI:
    """Build the app around ``services``; with ``preload`` the default model loads at start-up."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from sovereign.tools.mcp_client import mount_configured

        task = warming = None
        if preload:
            task = asyncio.ensure_future(_preload(app))
            if services.settings.perception.preload:
                warming = asyncio.ensure_future(_preload_perception(services))
        anchoring = _anchor_timer(services)
        probing = _probe_timer(services)  # [router] probe_interval_s: health probes of cooled-down breakers
        from sovereign.channels.service import channels_running

        async with mount_configured(app.state.services), channels_running(app.state.services):  # [[channels.irc]]
            yield
        for pending in (task, warming):
            if pending is not None and not pending.done():
                pending.cancel()
        if anchoring is not None:
            anchoring.cancel()
        if probing is not None:
            probing.cancel()
        # Before uvicorn re-raises a stop signal (no ``finally`` after it runs): anchor, flush.
        services.audit.checkpoint()
        if services.tracing is not None:
            services.tracing.provider.force_flush()

    app = FastAPI(title="sovereign", version=__version__, lifespan=lifespan)
    app.state.services = services
    app.state.metrics = Metrics(services)
    services.governor.observers.append(app.state.metrics.observe_call)
    app.state.load_error = None
    app.add_middleware(RequestLimits, max_body_bytes=services.settings.server.max_body_bytes)
    install_error_handlers(app)  # its guard wraps everything above, the limits included
    _mount_routers(app)
    install_console(app)  # the web console at / (its pages' data comes through the API's routes)

    @app.get("/health")
    async def health(request: Request):
        services: Services = request.app.state.services
        name = services.settings.kernel.default_model
        model = services.models.get(name)
        if model is not None and getattr(model, "ready", True):
            return {"status": "ok", "model": name}
        if request.app.state.load_error is not None:
            return JSONResponse({"status": "error", "model": name, "error": str(request.app.state.load_error)}, status_code=503)
        return JSONResponse({"status": "loading", "model": name}, status_code=503)

    @app.get("/metrics")
    async def metrics(request: Request):
        """Prometheus metrics; any valid key with read access, unless ``[server] metrics_public``."""
        if not request.app.state.services.settings.server.metrics_public:
            authorize(await authenticate(request), action="read")
        app_metrics: Metrics = request.app.state.metrics
        for name, model in request.app.state.services.models.items():
            app_metrics.model_ready.labels(name).set(1 if getattr(model, "ready", True) else 0)
        return Response(app_metrics.render(), media_type="text/plain; version=0.0.4")

    return app


def _anchor_timer(services: Services) -> asyncio.Task | None:
    """The audit chain's head is anchored on a timer while the server runs (``[audit]``)."""
    interval = services.settings.audit.anchor_interval_s
    if services.audit.anchor is None or not interval:
        return None
    return asyncio.ensure_future(anchor_periodically(services.audit, interval))


def _probe_timer(services: Services) -> asyncio.Task | None:
    interval = services.settings.router.probe_interval_s
    if not interval or not services.settings.router.probe:
        return None
    return asyncio.ensure_future(services.router.prober.run(interval))


async def _preload(app: FastAPI) -> None:
    services: Services = app.state.services
    try:
        await services.model()
    except Exception as exc:  # reported by /health; the server keeps answering
        app.state.load_error = exc
        log.error("default model failed to load: %s", exc)


async def _preload_perception(services: Services) -> None:
    """``[perception] preload``: the voice is loaded before the first request, not by it."""
    try:
        loaded = await asyncio.to_thread(services.perception.warm, services.settings.perception.preload)
        log.info("perception engines loaded: %s", loaded)
    except Exception as exc:  # a request loads (and reports) it instead
        log.error("perception engines failed to load: %s", exc)
