"""``sovereign run --swarm "task"`` and the swarm tree in ``sovereign runs show``: the plan's
nodes with their status, tokens, cost and time (a tool node's task names its tool), live node
events, the critical path."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sovereign.agent.hooks import RunEvent

__all__ = ["node_progress", "print_tree"]

def node_progress(console: Console):
    """A listener printing each node's status changes, and how the swarm ended."""

    def listener(event: RunEvent) -> None:
        if event.type == "status" and event.data.get("status") != "running" and event.run_id.startswith("swarm_"):
            console.print(f"[bold]swarm {event.data['status']}[/]: {event.data.get('stop_reason')}")
        if event.type == "node":
            n = event.data
            extra = f" ({n['stop_reason']})" if n["status"] not in ("pending", "running", "completed") else ""
            console.print(f"[cyan]node {n['id']}[/] {n['status']}{extra}: {n['task'][:70]}", highlight=False)

    return listener


def _task(node: dict[str, Any]) -> str:
    call = node.get("call")
    return f"[{call['tool']}] {node['task']}" if call else node["task"]


def print_tree(console: Console, tree: dict[str, Any]) -> None:
    table = Table("node", "status", "depends on", "steps", "tools", "tokens", "cost", "time", "task",
                  title=f"swarm {tree['id']} ({tree['executor']}, {tree['phase']})")
    for n in tree["nodes"]:
        name = ("  " * (n["depth"] - 1)) + n["id"]
        table.add_row(name, n["status"] + (f" x{n['attempts']}" if n["attempts"] > 1 else ""),
                      ", ".join(n["depends_on"]), str(n["steps"]), str(n["tool_calls"]),
                      f"{n['prompt_tokens']}/{n['completion_tokens']}", f"${n['cost_usd']:.5f}", f"{n['time_s']:.2f}s",
                      escape(_task(n)[:50]))
    console.print(table)
    c = tree.get("critical_path") or {}
    if c:
        console.print(f"critical path: {' -> '.join(c['critical_path']) or '-'}; CriticalSteps {c['critical_steps']} "
                      f"of {c['total_steps']} steps; critical-path time {c['critical_path_s']:.2f}s; wall "
                      f"{c['wall_s']:.2f}s; sum of parts {c['sum_of_parts_s']:.2f}s; speed-up "
                      f"{c['speedup'] if c['speedup'] is not None else '-'}x", highlight=False)
