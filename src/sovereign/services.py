"""The running OS: one object holding settings, the database and the services built on it.

Interfaces (server, CLI, MCP) build one ``Services`` and pass it down; nothing is global.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sovereign.config import Settings, ensure_home, load_settings
from sovereign.errors import InvalidRequestError, ModelUnavailableError
from sovereign.finops.energy import energy_model
from sovereign.finops.ledger import UsageLedger
from sovereign.governance.audit import AuditLog, audit_egress
from sovereign.governance.audit_anchor import AuditAnchor
from sovereign.governance.egress import EgressGate
from sovereign.governance.governed_model import GovernedModel
from sovereign.governance.governor import CallObserver, CallScope, Governor
from sovereign.governance.journal import Journal
from sovereign.governance.keys import KeyStore, Principal
from sovereign.governance.spend import SpendGuard
from sovereign.governance.visibility import VisibilityStore
from sovereign.kernel.protocol import Model
from sovereign.kernel.registry import ModelRegistry, ModelSpec, PriceSheet
from sovereign.kernel.weights import ensure_model_files
from sovereign.progress import WeightsProgress, weights_bar
from sovereign.store import Database

if TYPE_CHECKING:
    from sovereign.governance.tracing import Tracing
    from sovereign.perception.engines import Perception
    from sovereign.perception.governed import GovernedPerception


@dataclass
class Services:
    settings: Settings
    db: Database
    registry: ModelRegistry
    ledger: UsageLedger
    keys: KeyStore
    egress: EgressGate
    audit: AuditLog
    spend: SpendGuard
    visibility: VisibilityStore
    tracing: Tracing | None = None
    """OpenTelemetry spans (``[tracing]``); every model served from here is traced when on."""
    models: dict[str, Model] = field(default_factory=dict)
    mounted_tools: list[Any] = field(default_factory=list)
    """Tools mounted at start (the ``[[mcp_servers]]``, see ``tools.mcp_client.mount_configured``)."""
    # Drawn while missing weights are assembled on first use; None assembles silently.
    weights_progress: WeightsProgress | None = None
    _loading: dict[str, asyncio.Task] = field(default_factory=dict)
    _governor: Governor | None = None
    _router: Any = None
    _embedder: Any = None
    _perception: Perception | None = None

    @classmethod
    def open(cls, settings: Settings | None = None, *, progress: bool = True) -> Services:
        """Open the OS for ``settings``; ``progress`` draws a bar on stderr while weights assemble."""
        settings = settings or load_settings()
        ensure_home(settings)
        db = Database(settings.database_path)
        os.chmod(settings.database_path, 0o600)
        anchor = None
        if settings.audit.anchor:
            key_path, anchor_path = settings.audit.anchor_paths(settings.home)
            anchor = AuditAnchor(key_path, anchor_path, every=settings.audit.anchor_every)
        audit = AuditLog(db, anchor=anchor)
        egress = EgressGate(mode=settings.egress.mode, allow_hosts=list(settings.egress.allow_hosts),
                            on_decision=audit_egress(audit))
        tracing = None
        if settings.tracing.enabled:
            from sovereign.governance.tracing import Tracing

            try:
                tracing = Tracing.from_settings(settings.tracing, egress)
            except BaseException:
                db.close()
                raise
        return cls(
            settings=settings,
            db=db,
            registry=ModelRegistry.load(settings),
            ledger=UsageLedger(db),
            keys=KeyStore(db, audit=audit),
            egress=egress,
            audit=audit,
            spend=SpendGuard(db, audit=audit),
            visibility=VisibilityStore(db, audit=audit),
            weights_progress=weights_bar() if progress else None,
            tracing=tracing,
        )

    @property
    def governor(self) -> Governor:
        """The governed path of this OS (caps, ledger, audit, prices): see ``governance.governor``."""
        if self._governor is None:
            self._governor = Governor(spend=self.spend, ledger=self.ledger, audit=self.audit,
                                      prices=self._prices, default_max_tokens=self.settings.kernel.default_max_tokens,
                                      energy=energy_model(self.settings.finops), is_local=self._is_local)
        return self._governor

    @property
    def router(self) -> Any:
        """The ``model: "auto"`` router of this OS (``router.router.Router``), built on first use."""
        if self._router is None:
            from sovereign.router.router import Router

            self._router = Router(self)
        return self._router

    def _is_local(self, name: str) -> bool:
        if name not in self.registry:
            return False
        spec = self.registry.get(name)
        return spec.is_local or spec.kind != "chat"  # perception models run on this machine too

    @property
    def embedder(self) -> Any:
        """The embedding model the memory uses (``memory.embeddings.Embedder``), for the API's
        ``/v1/embeddings``; verified and loaded on first use. Callers govern it
        (``governance.governed_embedder``)."""
        if self._embedder is None:
            from sovereign.memory.embeddings import Embedder

            self._embedder = Embedder()
        return self._embedder

    def _prices(self, name: str) -> PriceSheet:
        return self.registry.get(name).prices if name in self.registry else PriceSheet()

    async def governed_model(self, principal: Principal, name: str | None = None, *, request_id: str | None = None,
                             run_id: str | None = None, agent_id: str | None = None,
                             journal: Journal | None = None,
                             observers: list[CallObserver] | None = None) -> GovernedModel:
        """The model ``name`` (the ``instant`` tier if None) behind the governed path, for ``principal``.
        The principal's model scope is checked before the model is loaded."""
        name = name or self.settings.model_for("instant")
        scope = CallScope(principal, agent_id=agent_id, run_id=run_id, request_id=request_id)
        self.governor.authorize(scope, name)  # before the name is even looked up
        return GovernedModel(await self.model(name), self.governor, scope, journal=journal, observers=observers)

    @property
    def perception(self) -> Perception:
        """Speech and image engines (``[perception]``), built on first use from verified weights."""
        if self._perception is None:
            from sovereign.perception.engines import Perception

            self._perception = Perception(self.registry, self.settings.perception, prepare=self.prepare_weights)
        return self._perception

    def governed_perception(self, principal: Principal, *, request_id: str | None = None, run_id: str | None = None,
                            agent_id: str | None = None) -> GovernedPerception:
        """Transcription, speech and OCR behind the governed path, for ``principal``."""
        from sovereign.perception.governed import GovernedPerception

        scope = CallScope(principal, agent_id=agent_id, run_id=run_id, request_id=request_id)
        return GovernedPerception(self.perception, self.governor, scope)

    def prepare_weights(self, spec: ModelSpec) -> Path:
        """Assemble ``spec``'s weights (and the files beside them) into the shared cache if they are
        missing (with the progress bar); returns their path. Loading verifies the SHA-256 either way."""
        path = self.registry.weights_path(spec)
        if spec.parts is None or (path.exists() and all((path.parent / f.name).exists() for f in spec.files)):
            return path
        if self.weights_progress is None:
            ensure_model_files(spec, path)
        else:
            with self.weights_progress(spec) as update:
                ensure_model_files(spec, path, update)
        return path

    def build_model(self, spec: ModelSpec) -> Model:
        """A backend for ``spec`` (not yet loaded, for local models)."""
        if spec.is_local:
            from sovereign.kernel.llama_backend import LlamaCppModel, LlamaOptions

            kernel = self.settings.kernel
            return LlamaCppModel(
                spec,
                self.registry.weights_path(spec),
                LlamaOptions(n_ctx=min(kernel.n_ctx, spec.context_size), n_threads=kernel.n_threads,
                             n_batch=kernel.n_batch, default_max_tokens=kernel.default_max_tokens,
                             max_tool_calls=kernel.max_tool_calls, parallel=kernel.parallel),
                prefix_cache_dir=self.settings.prefix_cache_dir if kernel.prefix_cache else None,
                prefix_cache_max_bytes=kernel.prefix_cache_max_mb * 1024 * 1024,
                prefix_cache_min_tokens=kernel.prefix_cache_min_tokens,
                max_queue=self.settings.server.max_queue,
            )
        from sovereign.config import DEFAULT_MODEL
        from sovereign.kernel.openai_backend import OpenAICompatibleModel
        from sovereign.kernel.token_estimate import VocabCounter

        # Replies without usage are counted with the embedded model's tokenizer (flagged estimated).
        vocab = self.registry.weights_path(self.registry.get(DEFAULT_MODEL))
        return OpenAICompatibleModel(spec, self.egress, token_counter=VocabCounter(vocab))

    def register(self, spec: ModelSpec, model: Model) -> None:
        """Serve ``model`` under ``spec.name`` (in-process backends: tests, benchmarks)."""
        self.registry.add(spec)
        self.models[spec.name] = self.tracing.wrap(model) if self.tracing is not None else model

    async def model(self, name: str | None = None) -> Model:
        """The backend serving ``name`` (the ``instant`` tier if None), loading it on first use;
        missing local weights are assembled first."""
        spec = self.registry.get(name or self.settings.model_for("instant"))
        if spec.kind != "chat" and spec.name not in self.models:
            raise InvalidRequestError(f"model '{spec.name}' is a {spec.kind} model, not a language model; "
                                      "use it through /v1/audio or image content parts", param="model")
        if spec.name in self.models:
            model = self.models[spec.name]
            if getattr(model, "ready", True):
                return model
        task = self._loading.get(spec.name)
        if task is None:
            task = asyncio.ensure_future(self._load(spec))
            self._loading[spec.name] = task
        try:
            return await task
        except ModelUnavailableError:
            raise
        except Exception as exc:
            self._loading.pop(spec.name, None)
            raise ModelUnavailableError(f"model '{spec.name}' could not be loaded: {exc}") from exc

    async def _load(self, spec: ModelSpec) -> Model:
        if spec.is_local:
            await asyncio.to_thread(self.prepare_weights, spec)
        model = self.build_model(spec)
        start = getattr(model, "start", None)
        if start is not None:
            await start()
        if self.tracing is not None:
            model = self.tracing.wrap(model)
        self.models[spec.name] = model
        return model

    def close(self) -> None:
        for model in self.models.values():
            close = getattr(model, "close", None)
            if close is not None:
                close()
        self.audit.checkpoint()  # the head at exit is anchored outside the database
        if self.tracing is not None:
            self.tracing.shutdown()
        self.db.close()
