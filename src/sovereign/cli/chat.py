"""``sovereign chat``: an interactive, streaming conversation with a model."""

from __future__ import annotations

import asyncio

from sovereign.cli.common import console
from sovereign.errors import SovereignError
from sovereign.kernel.messages import ChatRequest, Message, Thinking
from sovereign.kernel.thinking import DEFAULT_BUDGET
from sovereign.services import Services


async def _read_line(prompt: str) -> str | None:
    try:
        return await asyncio.to_thread(console.input, prompt)
    except EOFError:
        return None


async def chat_loop(services: Services, *, model: str | None, think: bool, max_tokens: int,
                    data_class: str | None = None) -> None:
    """Chat as the local admin; every answer takes the governed path (caps, ledger, audit).
    ``model="auto"``: each turn is routed (policy, difficulty, cost) and the decision shown."""
    if model == "auto":
        return await _routed_loop(services, think=think, max_tokens=max_tokens, data_class=data_class)
    backend = await services.governed_model(services.keys.local_principal(), model)
    history: list[Message] = []
    console.print(f"[dim]chatting with {backend.name} — /think, /instant, /reset, /exit[/]")
    while True:
        line = await _read_line("[bold cyan]you>[/] ")
        if line is None or line.strip() in ("/exit", "/quit"):
            return
        command = line.strip()
        if command in ("/think", "/instant"):
            think = command == "/think"
            console.print(f"[dim]{'thinking' if think else 'instant'} mode[/]")
            continue
        if command == "/reset":
            history.clear()
            continue
        if not command:
            continue
        history.append(Message(role="user", content=line))
        request = ChatRequest(model=backend.name, messages=list(history), max_tokens=max_tokens,
                              thinking=Thinking(enabled=think, budget_tokens=DEFAULT_BUDGET if think else None))
        answer: list[str] = []
        console.print("[bold green]model>[/] ", end="")
        try:
            async for event in backend.stream(request):
                if event.reasoning_content:
                    console.print(event.reasoning_content, style="dim", end="")
                if event.content:
                    answer.append(event.content)
                    console.print(event.content, end="", markup=False, highlight=False)
                for call in event.tool_calls:
                    console.print(f"[tool call {call.name}({call.arguments})]", end="")
        except SovereignError as exc:  # a spend cap, the model's own errors: say so, keep chatting
            console.print(f"\n[red]error:[/] {exc.message}")
            history.pop()
            continue
        console.print()
        if backend.last is not None:
            usage = backend.last.usage
            console.print(f"[dim]{usage.prompt_tokens} prompt ({usage.cached_tokens} cached) · "
                          f"{usage.completion_tokens} completion tokens · ${backend.last.cost_usd:.6f}[/]")
        history.append(Message(role="assistant", content="".join(answer)))


async def _routed_loop(services: Services, *, think: bool, max_tokens: int, data_class: str | None) -> None:
    """``--model auto``: the router picks each turn's model and effort (``--think`` forces thinking)."""
    principal = services.keys.local_principal()
    history: list[Message] = []
    console.print("[dim]chatting with the router (model auto) — /reset, /exit[/]")
    while True:
        line = await _read_line("[bold cyan]you>[/] ")
        if line is None or line.strip() in ("/exit", "/quit"):
            return
        if line.strip() == "/reset":
            history.clear()
            continue
        if not line.strip():
            continue
        history.append(Message(role="user", content=line))
        request = ChatRequest(model="auto", messages=list(history), max_tokens=max_tokens,
                              thinking=Thinking(enabled=think, budget_tokens=DEFAULT_BUDGET if think else None))
        answer: list[str] = []
        try:
            routed = await services.router.stream(request, principal, data_class=data_class, explicit_thinking=think)
            decision = routed.decision
            console.print(f"[dim]→ {decision.model}, effort {decision.effort}: {decision.reason}[/]")
            console.print("[bold green]model>[/] ", end="")
            event = routed.first
            while event is not None:
                if event.reasoning_content:
                    console.print(event.reasoning_content, style="dim", end="")
                if event.content:
                    answer.append(event.content)
                    console.print(event.content, end="", markup=False, highlight=False)
                event = await anext(routed.events, None)
        except SovereignError as exc:
            console.print(f"\n[red]error:[/] {exc.message}")
            history.pop()
            continue
        console.print()
        if routed.model.last is not None:
            usage = routed.model.last.usage
            console.print(f"[dim]{usage.prompt_tokens} prompt · {usage.completion_tokens} completion tokens "
                          f"({usage.reasoning_tokens} reasoning) · ${routed.model.last.cost_usd:.6f}[/]")
        history.append(Message(role="assistant", content="".join(answer)))
