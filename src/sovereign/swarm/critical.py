"""A swarm's critical path: the chain of dependent nodes that bounds its wall time.

``CriticalSteps`` (Kimi's measure) counts steps along that chain instead of the total work: the
orchestrator's own steps plus, over the dependency graph, the longest chain of node steps
(for a plan in stages, the slowest node of each stage, summed). A sub-agent's steps are its model
turns; a tool node (one direct call, no model turn) is one step. The critical-path time is
the same chain weighted by each node's time; the speed-up compares the sum of the parts (every
sub-agent's time and the orchestrator's) with the swarm's wall time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sovereign.swarm.store import NodeRecord

__all__ = ["critical_path"]


def _longest(nodes: Sequence[NodeRecord], weight: Callable[[NodeRecord], float]) -> tuple[float, list[str]]:
    by_id = {n.node_id: n for n in nodes}
    best: dict[str, tuple[float, list[str]]] = {}

    def visit(node_id: str, trail: frozenset[str]) -> tuple[float, list[str]]:
        if node_id in best:
            return best[node_id]
        node = by_id[node_id]
        before = [visit(d, trail | {node_id}) for d in node.depends_on if d in by_id and d not in trail]
        if node.parent in by_id and node.parent not in trail:  # a delegated child runs inside its parent
            before.append(visit(node.parent, trail | {node_id}))
        head = max(before, key=lambda x: x[0], default=(0.0, []))
        best[node_id] = (head[0] + weight(node), [*head[1], node_id])
        return best[node_id]

    found = max((visit(n.node_id, frozenset()) for n in nodes), key=lambda x: x[0], default=(0.0, []))
    return found


def _steps(node: NodeRecord) -> int:
    return node.spent.steps if node.call is None else max(node.spent.steps, 1)


def critical_path(nodes: Sequence[NodeRecord], *, orchestrator_steps: int, orchestrator_s: float,
                  wall_s: float) -> dict[str, Any]:
    """CriticalSteps, critical-path time, the chain itself and the speed-up over the sum of parts."""
    ran = [n for n in nodes if n.started_at is not None]
    steps, step_chain = _longest(ran, lambda n: float(_steps(n)))
    seconds, time_chain = _longest(ran, lambda n: n.duration_s)
    total_steps = orchestrator_steps + sum(_steps(n) for n in ran)
    sum_of_parts = orchestrator_s + sum(n.duration_s for n in ran)
    return {
        "critical_steps": orchestrator_steps + int(steps),
        "total_steps": total_steps,
        "critical_path_s": round(orchestrator_s + seconds, 3),
        "critical_path": time_chain,
        "critical_steps_path": step_chain,
        "sum_of_parts_s": round(sum_of_parts, 3),
        "wall_s": round(wall_s, 3),
        "speedup": round(sum_of_parts / wall_s, 2) if wall_s > 0 else None,
    }
