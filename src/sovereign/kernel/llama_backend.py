"""The embedded backend: a verified GGUF run in-process by llama.cpp.

With ``parallel`` > 1 (the default, 4) up to that many requests run at once, each on its own
worker thread, and every decoding pass goes through one ``BatchEngine`` (``kernel/batching.py``):
continuous batching, the requests' sequences decoded together in one llama.cpp context, each
sampled with its own chain (temperature, top-p, seed, repetition penalty and grammar: free
text, JSON schema and tool calls are all served batched). Its slots keep their KV cache, so a
prompt sharing a prefix with an earlier one reads only the rest. The on-disk prefix cache
(state saved across restarts) works on one context and serves only ``parallel`` = 1.

With ``parallel`` = 1, one context serves requests one at a time on a dedicated worker thread
(llama.cpp contexts are not thread-safe). Either way, requests beyond the limit wait on an
asyncio semaphore. Each request is planned (template, tokens, context check), then decoded in
one or two passes: an optional reasoning pass (thinking scaffold), then the answer — free text,
JSON constrained by a grammar, or tool calls constrained by a grammar built from the tools'
schemas.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sovereign.errors import ContextOverflowError, ModelUnavailableError
from sovereign.kernel.chat_template import CHATML_TEMPLATE, ChatTemplate
from sovereign.kernel.messages import ChatRequest, ChatResponse, StreamEvent, Timings, ToolCall, Usage
from sovereign.kernel.prefix_cache import PrefixCache, common_prefix
from sovereign.kernel.protocol import collect_stream
from sovereign.kernel.registry import ModelSpec
from sovereign.kernel.tool_markup import TOOL_CALL_OPEN, MarkupGuard
from sovereign.kernel.thinking import (
    THINK_CLOSE,
    THINK_OPEN,
    MarkerStripper,
    ThinkSplitter,
    with_scaffold_instruction,
)
from sovereign.kernel.tool_calls import json_grammar, validate_tools
from sovereign.kernel.tool_pass import ToolPlan
from sovereign.kernel.weights import verify_weights

if TYPE_CHECKING:
    from sovereign.kernel.batching import BatchEngine
    from sovereign.kernel.logprobs import LogprobRecorder

_DONE = object()


@dataclass(slots=True)
class LlamaOptions:
    n_ctx: int = 8192
    n_threads: int | None = None
    n_batch: int = 512
    default_max_tokens: int = 512
    # Most tool calls in one turn when the request allows parallel calls and sets no max.
    max_tool_calls: int = 4
    # Requests decoded at once by continuous batching (sequence slots); 1 = one at a time.
    parallel: int = 4


class LlamaCppModel:
    """``Model`` backed by llama-cpp-python; call ``start()`` (or ``load()``) before use."""

    # Without max_tokens it still stops at default_max_tokens (or the context's end).
    bounds_output = True

    def __init__(
        self,
        spec: ModelSpec,
        weights_path: Path,
        options: LlamaOptions | None = None,
        prefix_cache_dir: Path | None = None,
        prefix_cache_max_bytes: int = 2 << 30,
        prefix_cache_min_tokens: int = 128,
        max_queue: int = 64,
    ) -> None:
        self.name = spec.name
        self.spec = spec
        self.weights_path = weights_path
        self.options = options or LlamaOptions()
        self._cache_dir = prefix_cache_dir
        self._cache_max = prefix_cache_max_bytes
        self._cache_min = prefix_cache_min_tokens
        self._max_queue = max_queue
        self._waiting = 0
        self._llm = None
        self._template: ChatTemplate | None = None
        self.prefix_cache: PrefixCache | None = None
        self._executor = ThreadPoolExecutor(max_workers=max(1, self.options.parallel),
                                            thread_name_prefix=f"llama-{spec.name}")
        self.engine: BatchEngine | None = None
        self._turn: asyncio.Semaphore | None = None
        self._turn_loop: asyncio.AbstractEventLoop | None = None
        self.load_error: Exception | None = None
        self._opener_ban: dict[int, float] | None = None

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._llm is not None

    @property
    def queue_depth(self) -> int:
        return self._waiting

    def load(self) -> None:
        """Verify the weights by SHA-256, then load them. Raises on any mismatch."""
        import llama_cpp

        verify_weights(self.spec, self.weights_path)
        batched = self.options.parallel > 1
        threads = self.options.n_threads or os.cpu_count() or 1
        llm = llama_cpp.Llama(
            model_path=str(self.weights_path),
            # Batched, the engine's context decodes; this one only holds the model and tokenizer.
            n_ctx=min(self.options.n_ctx, 512) if batched else self.options.n_ctx,
            n_threads=threads,
            n_batch=self.options.n_batch,
            verbose=False,
        )
        source = llm.metadata.get("tokenizer.chat_template") or CHATML_TEMPLATE
        self._template = ChatTemplate(source, eos_token="<|im_end|>")
        if batched:
            from sovereign.kernel.batching import BatchEngine

            self.engine = BatchEngine(llm, slots=self.options.parallel, n_ctx_per_slot=self.options.n_ctx,
                                      n_batch=self.options.n_batch, n_threads=threads)
        elif self._cache_dir is not None:
            directory = self._cache_dir / (self.spec.sha256 or "unverified")[:16]
            self.prefix_cache = PrefixCache(directory, max_bytes=self._cache_max, min_tokens=self._cache_min)
        self._llm = llm

    async def start(self) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self.load)
        except Exception as exc:
            self.load_error = exc
            raise

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        if self.engine is not None:
            self.engine.close()
            self.engine = None
        if self._llm is not None:
            self._llm.close()
            self._llm = None

    def count_tokens(self, text: str) -> int:
        return len(self._tokenize(text))

    # --- Model protocol ------------------------------------------------------------------

    async def complete(self, request: ChatRequest) -> ChatResponse:
        return await collect_stream(self.name, self.stream(request))

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        if not self.ready:
            raise ModelUnavailableError(f"model '{self.name}' is still loading" if self.load_error is None
                                        else f"model '{self.name}' failed to load: {self.load_error}")
        if request.tools:
            validate_tools(request.tools)
        if self._waiting >= self._max_queue:
            raise ModelUnavailableError(f"model '{self.name}' has {self._waiting} requests queued; try again shortly")
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        stop_flag = threading.Event()

        def emit(event: object) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, event)

        if self._turn_loop is not loop:  # one semaphore per event loop (tests run several)
            self._turn, self._turn_loop = asyncio.Semaphore(max(1, self.options.parallel)), loop
        turn = self._turn
        self._waiting += 1
        try:
            await turn.acquire()
        finally:
            self._waiting -= 1
        try:
            job = loop.run_in_executor(
                self._executor, self._run_safely, request, emit, stop_flag.is_set, started
            )
            while (event := await queue.get()) is not _DONE:
                if isinstance(event, BaseException):
                    raise event
                yield event
            await job
        finally:
            stop_flag.set()
            turn.release()

    # --- the worker thread -----------------------------------------------------------------

    def _run_safely(self, request, emit, cancelled, started) -> None:
        try:
            _Run(self, request, emit, cancelled, started).execute()
        except BaseException as exc:  # handed to the event loop, which re-raises it
            emit(exc)
        finally:
            emit(_DONE)

    def _tokenize(self, text: str) -> list[int]:
        return self._llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)

    def call_opener_ban(self) -> dict[int, float]:
        """A logit bias that bans the token opening a tool call, when the vocabulary has one."""
        if self._opener_ban is None:
            opener = self._llm.tokenize(TOOL_CALL_OPEN.encode(), add_bos=False, special=True)
            self._opener_ban = {opener[0]: float("-inf")} if len(opener) == 1 else {}
        return self._opener_ban

    def _count_plain(self, text: str) -> int:
        """Tokens of generated ``text`` (no BOS)."""
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)) if text else 0


class _Run:
    """One request on the worker thread: plan, reason (optional), answer, account."""

    def __init__(self, model: LlamaCppModel, request: ChatRequest, emit: Callable, cancelled: Callable, started: float):
        self.model, self.request, self.emit, self.cancelled = model, request, emit, cancelled
        self.started = started
        self.llm = model._llm
        self.first_token_at: float | None = None
        self.usage = Usage(requests=1)
        self.passes = 0
        self.recorder: LogprobRecorder | None = None  # the answer pass's, when logprobs are asked for
        self.logprobs_sent = 0

    def _clock(self) -> float:
        now = time.perf_counter()
        if self.first_token_at is None:
            self.first_token_at = now
        return now

    def _text_event(self, *, content: str | None = None, reasoning: str | None = None) -> None:
        self._clock()
        self.emit(StreamEvent(content=content or None, reasoning_content=reasoning or None,
                              logprobs=self._new_logprobs() if content else []))

    def _new_logprobs(self) -> list:
        """The answer's token log probabilities not yet sent (with the text they complete)."""
        if self.recorder is None:
            return []
        fresh = self.recorder.consumed[self.logprobs_sent:]
        self.logprobs_sent += len(fresh)
        return fresh

    def execute(self) -> None:
        from sovereign.kernel.decoding import Sampling

        req = self.request
        # tool_choice "none": the tools leave the prompt (shown them, a small model writes a call
        # as JSON text) and the call opener cannot be sampled (the history may hold calls).
        withheld = bool(req.tools) and req.tool_choice.mode == "none"
        tools = [] if withheld else req.tools
        native = self.model.spec.native_thinking
        scaffold = req.thinking.enabled and not native
        messages = with_scaffold_instruction(req) if scaffold else req.messages
        prompt = self.model._template.render(messages, tools or None)
        opened = prompt.rstrip().endswith(THINK_OPEN)  # some templates open the block themselves
        if req.thinking.enabled and not opened:
            prompt += THINK_OPEN + "\n"  # native or scaffolded: the reasoning pass is budgeted the same way
        elif native and not req.thinking.enabled:
            prompt += ("" if opened else THINK_OPEN) + f"\n\n{THINK_CLOSE}\n\n"  # instant: an empty block (Qwen3)
        tokens = self.model._tokenize(prompt)
        budget = (req.thinking.budget_tokens or 0) if req.thinking.enabled else 0
        max_tokens = self._check_context(len(tokens), budget)
        self.usage.prompt_tokens = len(tokens)
        self.usage.cached_tokens = self._reuse_prefix(tokens) if self.model.engine is None else 0
        sampling = Sampling(seed=req.seed)
        if req.temperature is not None:
            sampling.temperature = req.temperature
        if req.top_p is not None:
            sampling.top_p = req.top_p
        if withheld:
            sampling.logit_bias = self.model.call_opener_ban()

        answer_prompt = prompt
        if req.thinking.enabled and budget > 0:
            reasoning = self._pass(tokens, budget, sampling, [THINK_CLOSE], None, lambda t: self._text_event(reasoning=t))
            self.usage.reasoning_tokens = reasoning.completion_tokens
            answer_prompt = prompt + reasoning.text.rstrip() + f"\n{THINK_CLOSE}\n\n"
        elif req.thinking.enabled:
            answer_prompt = prompt + f"\n{THINK_CLOSE}\n\n"

        finish, calls = self._answer(answer_prompt, tools, max_tokens, sampling)
        self._finish(finish, calls)

    def _check_context(self, prompt_tokens: int, reasoning_budget: int) -> int:
        n_ctx = self.model.options.n_ctx
        wanted = self.request.max_tokens
        room = n_ctx - prompt_tokens - reasoning_budget
        if wanted is not None and wanted > room or room <= 0:
            asked = wanted if wanted is not None else 1
            raise ContextOverflowError(
                f"This model's maximum context length is {n_ctx} tokens. However, you requested "
                f"{prompt_tokens + reasoning_budget + asked} tokens ({prompt_tokens} in the messages, "
                f"{reasoning_budget} for reasoning, {asked} in the completion). Please reduce the "
                "length of the messages or the completion.",
                param="messages",
            )
        return wanted if wanted is not None else min(self.model.options.default_max_tokens, room)

    def _reuse_prefix(self, tokens: list[int]) -> int:
        """Serial path: the prompt's prefix already in the context (or restored from disk)."""
        import numpy as np

        llm = self.llm
        in_memory = common_prefix(np.asarray(llm.input_ids[: llm.n_tokens]), np.asarray(tokens))
        restored = 0
        if self.model.prefix_cache is not None:
            restored = self.model.prefix_cache.restore(llm, tokens, in_memory)
        return min(max(in_memory, restored), len(tokens) - 1)

    def _pass(self, tokens, max_tokens, sampling, stop, grammar, on_text, text_filter=None, recorder=None):
        from sovereign.kernel.decoding import decode_pass
        from sovereign.kernel.sampler_chain import build_sampler

        source = None
        if (engine := self.model.engine) is not None:
            source = engine.submit(tokens, sampler=build_sampler(self.llm, sampling, grammar), max_tokens=max_tokens,
                                   recorder=recorder)
        result = decode_pass(
            self.llm, tokens, max_tokens=max_tokens, sampling=sampling, stop=stop, grammar=grammar,
            on_text=on_text, cancelled=self.cancelled, clock=time.perf_counter, text_filter=text_filter,
            source=source, recorder=recorder,
        )
        if source is not None and not self.passes:
            self.usage.cached_tokens = source.reused  # the first pass reads the request's prompt
        self.passes += 1
        self.usage.completion_tokens += result.completion_tokens
        if self.first_token_at is None:
            self.first_token_at = result.first_token_at
        return result

    def _answer(self, prompt: str, tools, max_tokens: int, sampling) -> tuple[str, list[ToolCall]]:
        import llama_cpp

        req = self.request
        if tools and req.tool_choice.mode in ("required", "function"):
            chosen = [t for t in tools if req.tool_choice.mode == "required" or t.name == req.tool_choice.function]
            return self._tool_pass(prompt, chosen, max_tokens, sampling)

        grammar = None
        if req.response_format.type != "text":
            schema = req.response_format.schema if req.response_format.type == "json_schema" else None
            grammar = llama_cpp.LlamaGrammar.from_string(json_grammar(schema), verbose=False)
        splitter = ThinkSplitter() if self.model.spec.native_thinking else None
        stripper = MarkerStripper() if req.thinking.enabled and splitter is None else None

        def on_text(text: str) -> None:
            if splitter is not None:
                reasoning, content = splitter.feed(text)
                self._text_event(content=content, reasoning=reasoning)
            else:
                self._text_event(content=stripper.feed(text) if stripper else text)

        # Free text with tools offered: a call may start anywhere; the guard keeps it out of content.
        guard = MarkupGuard(tools) if tools and grammar is None else None
        if req.logprobs:
            from sovereign.kernel.logprobs import LogprobRecorder

            self.recorder = LogprobRecorder(lambda token: self.llm.detokenize([token]), req.top_logprobs)
        result = self._pass(self.model._tokenize(prompt), max_tokens, sampling, list(req.stop), grammar, on_text, guard,
                            self.recorder)
        if splitter is not None:
            reasoning, content = splitter.flush()
            if reasoning or content:
                self._text_event(content=content, reasoning=reasoning)
        if stripper is not None and (rest := stripper.flush()):
            self._text_event(content=rest)
        if rest_logprobs := self._new_logprobs():  # tokens whose text was held back or was not content
            self.emit(StreamEvent(logprobs=rest_logprobs))
        if result.finish == "diverted":
            # The prose before the call stays; the call's first tokens are redone under the grammar.
            prose_tokens = self.model._count_plain(result.text)
            self.usage.completion_tokens += prose_tokens - result.completion_tokens
            return self._tool_pass(prompt + result.text, tools, max_tokens - prose_tokens, sampling)
        return ("length" if result.finish == "length" else "stop"), []

    def _tool_pass(self, prompt: str, tools, max_tokens: int, sampling) -> tuple[str, list[ToolCall]]:
        """Calls under the tools' grammar; every call that closed is kept, even if a later one was cut."""
        import llama_cpp

        req = self.request
        limit = (req.max_tool_calls or self.model.options.max_tool_calls) if req.parallel_tool_calls else 1
        plan = ToolPlan.make(tools, max_tokens=max_tokens, max_calls=limit, count=self.model._count_plain)
        if plan is None:  # not even the smallest valid call fits in max_tokens: nothing to decode
            return "length", []
        grammar = llama_cpp.LlamaGrammar.from_string(plan.grammar, verbose=False)
        collector = plan.collector()
        self._pass(self.model._tokenize(prompt + plan.steer), max_tokens, sampling, [], grammar,
                   lambda _t: None, collector)
        if collector.calls:
            return "tool_calls", collector.calls
        return "length", []  # cut off by max_tokens before the first call closed

    def _finish(self, finish: str, calls: list[ToolCall]) -> None:
        now = time.perf_counter()
        timings = Timings(
            ttft_ms=((self.first_token_at or now) - self.started) * 1000,
            latency_ms=(now - self.started) * 1000,
        )
        if calls:
            self.emit(StreamEvent(tool_calls=calls))
        self.emit(StreamEvent(finish_reason=finish, usage=self.usage, timings=timings))
        if self.model.prefix_cache is not None:
            self.model.prefix_cache.save(self.llm)
