"""``sovereign kb ingest|search|list`` — the knowledge base from the command line."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sovereign.errors import SovereignError

app = typer.Typer(help="Knowledge base: ingest documents, search with citations.", no_args_is_help=True)
console = Console()


@contextmanager
def _kb():
    from sovereign.knowledge import KnowledgeBase
    from sovereign.services import Services

    services = Services.open()
    try:
        from sovereign.perception.ingest import ocr_function

        yield KnowledgeBase(services.db, ocr=ocr_function(services))  # images and scanned PDFs are OCR'd
    except SovereignError as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from exc
    finally:
        services.close()


@app.command()
def ingest(paths: list[Path] = typer.Argument(..., help="files or folders (md, txt, html, pdf; images and scanned PDFs are read by OCR)")) -> None:
    """Ingest documents; unchanged files are skipped, changed ones replaced, broken ones reported."""
    from sovereign.knowledge.base import expand_paths

    files = expand_paths(paths)
    with _kb() as kb, Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                               TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("ingesting", total=len(files))

        def step(path: Path, outcome: str) -> None:
            progress.update(task, advance=1, description=f"{outcome:9} {path.name}")

        report = kb.ingest(files, progress=step)
    console.print(f"added {len(report.added)}, updated {len(report.updated)}, unchanged {len(report.unchanged)},"
                  f" failed {len(report.failed)}; {report.chunks} chunks, {report.pages} pages in {report.seconds:.1f}s")
    for path, message in report.failed:
        console.print(f"[red]failed:[/red] {message}")
    if report.failed:
        raise typer.Exit(1)


@app.command()
def search(query: str, k: int = typer.Option(5, "-k", min=1, max=100)) -> None:
    """Retrieve passages with citations (file, section, chunk)."""
    with _kb() as kb:
        for hit in kb.search(query, k=k):
            label = str(hit.citation) if hit.kind == "chunk" else \
                f"knowledge unit {hit.n} (from {'; '.join(str(s) for s in hit.sources)})"
            console.print(f"[bold]{label}[/bold]  [dim]{hit.similarity:.2f}[/dim]\n{hit.text}\n")


@app.command("list")
def list_() -> None:
    """Ingested documents."""
    with _kb() as kb:
        table = Table("path", "format", "pages", "chunks", "ingested")
        for doc in kb.documents():
            table.add_row(doc["path"], doc["format"], str(doc["pages"]), str(doc["chunks"]), doc["ingested_at"][:19])
        console.print(table)
