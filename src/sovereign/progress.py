"""The progress bar shown while model weights are assembled (on stderr by default).

stderr keeps stdout clean for what commands print there: MCP over stdio, ``--json`` output.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from sovereign.kernel.registry import ModelSpec

ProgressCallback = Callable[[int, int], None]
WeightsProgress = Callable[[ModelSpec], AbstractContextManager[ProgressCallback]]


def weights_bar(console: Console | None = None) -> WeightsProgress:
    """A factory of rich progress bars, one per model being assembled, drawn on ``console``."""
    target = console or Console(stderr=True)

    @contextmanager
    def bar(spec: ModelSpec) -> Iterator[ProgressCallback]:
        columns = (TextColumn(f"assembling {spec.name}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                   TimeRemainingColumn())
        with Progress(*columns, console=target, transient=False) as progress:
            task = progress.add_task("weights", total=spec.weights_size or None)
            yield lambda done, total: progress.update(task, completed=done, total=total)

    return bar
