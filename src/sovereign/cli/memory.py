"""``sovereign memory add|search|list|edit|history|forget|export`` — the memory store from the command line."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from sovereign.errors import SovereignError

app = typer.Typer(help="Persistent, encrypted agent memory.", no_args_is_help=True)
console = Console()
OWNER = typer.Option(None, "--owner", help="whose memory: an identity name or id (default: the local admin)")
AGENT = typer.Option("default", "--agent", help="which agent's memory")


@contextmanager
def _store(owner: str | None):
    """The memory store and the owner's identity id (memories are keyed by identity id, as in the
    API and in runs)."""
    from sovereign.memory import MemoryStore
    from sovereign.services import Services

    services = Services.open()
    try:
        owner_id = services.keys.identity(owner)["id"] if owner else services.keys.local_principal().identity_id
        yield MemoryStore.open(services.db, services.settings.home), owner_id
    except SovereignError as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from exc
    finally:
        services.close()


@app.command()
def add(content: str, owner: str = OWNER, agent: str = AGENT,
        kind: str = typer.Option("fact", help="fact, episode or summary"),
        session: str = typer.Option(None, help="session id (summaries)"),
        confidence: float = typer.Option(1.0, min=0.0, max=1.0)) -> None:
    """Remember something."""
    with _store(owner) as (store, owner):
        result = store.add(owner, content, agent=agent, kind=kind, source="cli", confidence=confidence, session=session)
        note = f" (replaces {result.replaced.id})" if result.replaced else ""
        console.print(f"{result.action} {result.item.id}{note}")


@app.command()
def search(query: str, owner: str = OWNER, agent: str = typer.Option(None, "--agent"),
           k: int = typer.Option(5, "-k", min=1, max=100)) -> None:
    """Hybrid (keyword + vector) search."""
    with _store(owner) as (store, owner):
        table = Table("id", "kind", "score", "content")
        for hit in store.search(owner, query, agent=agent, k=k):
            table.add_row(hit.item.id, hit.item.kind, f"{hit.similarity:.2f}", hit.item.content)
        console.print(table)


@app.command("list")
def list_(owner: str = OWNER, agent: str = typer.Option(None, "--agent"), kind: str = typer.Option(None),
          history: bool = typer.Option(False, help="include superseded versions"),
          limit: int = typer.Option(50, min=1, max=10_000)) -> None:
    """List memories, newest first."""
    with _store(owner) as (store, owner):
        table = Table("id", "agent", "kind", "status", "updated", "content")
        for item in store.list(owner, agent=agent, kind=kind, include_history=history, limit=limit):
            table.add_row(item.id, item.agent, item.kind, item.status, item.updated_at[:19], item.content)
        console.print(table)


@app.command()
def edit(memory_id: str, content: str, owner: str = OWNER) -> None:
    """Replace a memory's text; the old version stays in its history."""
    with _store(owner) as (store, owner):
        result = store.edit(owner, memory_id, content)
        console.print(f"{result.action} {memory_id} with {result.item.id}")


@app.command()
def history(memory_id: str, owner: str = OWNER) -> None:
    """A memory and the versions it replaced, newest first."""
    with _store(owner) as (store, owner):
        table = Table("id", "status", "updated", "source", "content")
        for item in store.history(owner, memory_id):
            table.add_row(item.id, item.status, item.updated_at[:19], item.source, item.content)
        console.print(table)


@app.command()
def forget(memory_id: str, owner: str = OWNER) -> None:
    """Delete a memory and the versions it replaced."""
    with _store(owner) as (store, owner):
        console.print(f"forgot {memory_id} ({store.forget(owner, memory_id)} rows)")


@app.command()
def export(owner: str = OWNER, output: Path = typer.Option(None, "-o", help="file (default: stdout)")) -> None:
    """Export every memory of an owner (decrypted) as JSON."""
    with _store(owner) as (store, owner):
        data = json.dumps(store.export(owner), indent=2, ensure_ascii=False)
        if output is None:
            typer.echo(data)
        else:
            output.write_text(data + "\n", encoding="utf-8")
            output.chmod(0o600)
            console.print(f"wrote {output}")
